//! The boot sequence after the descriptor tables: boot information, page tables, CPU and ACPI
//! discovery, the summary line `cargo xtask test` checks, then memory, interrupts and the root
//! task, and finally the scheduler.

use crate::physical::IdentityMap;
use crate::platform::{self, Outcome};
use kernel_core::acpi::{self, Signature, Tables};
use kernel_core::cmdline::Options;
use kernel_core::cpu_features::CpuFeatures;
use kernel_core::frames::{self as free_memory, Range};
use kernel_core::multiboot2::{BootInfo, Region, RegionKind, Rsdp};

/// Room for the copied boot information (GRUB's is a few KiB).
const MBI_CAPACITY: usize = 64 * 1024;
static mut MBI_COPY: [u8; MBI_CAPACITY] = [0; MBI_CAPACITY];
/// Room for one ACPI table at a time.
static mut TABLE_BUFFER: [u8; 64 * 1024] = [0; 64 * 1024];

/// Kernel memory kept back from init for page tables and kernel objects.
const KERNEL_POOL_MIN: u64 = 8 << 20;
const KERNEL_POOL_MAX: u64 = 64 << 20;

/// What ACPI told the kernel.
#[derive(Default)]
struct Platform {
    rsdp_text: heapless::String<48>,
    ecam: Option<(u64, u8, u8)>,
    dmar_unit: Option<u64>,
    dmar_table: Option<(u64, u32)>,
    lapic: Option<u64>,
    ioapic: Option<u64>,
    cpus: heapless::Vec<u32, 64>,
}

/// Copies the boot information out of loader memory (which the kernel will reuse).
fn copy_boot_information(mbi: u64) -> &'static [u8] {
    // SAFETY: GRUB passed `mbi` as the address of the boot information, identity-mapped by the
    // boot stub; its first word is the total size, which is clamped to the copy's capacity and
    // then checked again by the parser. MBI_COPY is written once, here, on the boot CPU.
    unsafe {
        let total = core::ptr::read_unaligned(mbi as *const u32) as usize;
        let length = total.min(MBI_CAPACITY);
        let copy = &raw mut MBI_COPY;
        core::ptr::copy_nonoverlapping(mbi as *const u8, (*copy).as_mut_ptr(), length);
        let copy: &'static [u8; MBI_CAPACITY] = &*copy;
        &copy[..length]
    }
}

fn table_buffer() -> &'static mut [u8] {
    let buffer = &raw mut TABLE_BUFFER;
    // SAFETY: used only by the boot CPU during `start`, one table at a time.
    unsafe { &mut *buffer }
}

/// Runs the boot sequence; ends in the scheduler.
pub fn start(magic: u64, mbi: u64) -> ! {
    let bytes = copy_boot_information(mbi);
    let info = match BootInfo::parse(magic as u32, bytes) {
        Ok(info) => info,
        Err(error) => {
            kprintln!("sluice: boot information refused: {error}");
            platform::stop(Outcome::Failure("bad boot information"))
        }
    };
    let options = Options::parse(info.cmdline);
    platform::set_exit_device(options.exit);
    kprintln!(
        "sluice: loader \"{}\" cmdline \"{}\"",
        info.bootloader,
        info.cmdline
    );
    for unknown in &options.unknown {
        if !unknown.starts_with("init.") {
            kprintln!("sluice: warning: unknown command-line flag \"{unknown}\" ignored");
        }
    }
    let mapped = crate::paging::init(&info);
    kprintln!(
        "sluice: paging: direct map of {} GiB at {:#x}, kernel pages only executable",
        mapped >> 30,
        crate::paging::DIRECT_MAP
    );

    for (index, module) in info.modules.iter().enumerate() {
        kprintln!(
            "sluice: module {index} {} at {:#x}-{:#x} ({} KiB) \"{}\"",
            module.name(),
            module.start,
            module.end,
            (module.end - module.start).div_ceil(1024),
            module.cmdline
        );
    }

    let cpu = CpuFeatures::decode(&crate::cpu::raw());
    crate::virtualization::set_backend(
        match cpu.virtualization {
            kernel_core::cpu_features::Virtualization::Svm(svm) if svm.nested_paging => {
                crate::virtualization::Backend::Svm
            }
            kernel_core::cpu_features::Virtualization::Vmx(vmx)
                if vmx.ept && vmx.unrestricted_guest =>
            {
                crate::virtualization::Backend::Vmx
            }
            _ => crate::virtualization::Backend::None,
        },
        cpu.largest_nested_page_shift(),
    );
    let platform_info = discover_acpi(&info);
    kprintln!(
        "sluice: cpu {cpu} | mem {} MiB | modules {} | acpi {}",
        info.available_bytes() >> 20,
        info.modules.len(),
        platform_info.rsdp_text
    );

    if let Some(fault) = options.test_fault {
        crate::test_fault::trigger(fault);
        platform::stop(Outcome::Failure("test fault did not fault"));
    }

    // Interrupts and system calls.
    crate::apic::mask_legacy_pic();
    crate::apic::enable(platform_info.lapic.unwrap_or(crate::apic::DEFAULT_BASE));
    let apic_id = crate::apic::id();
    crate::percpu::init(0, apic_id);
    crate::smp::set_online(0, apic_id);
    crate::trap::init_syscall();
    if let Some(ioapic) = platform_info.ioapic {
        crate::interrupt_routing::init(ioapic);
    }

    // Memory: the kernel keeps a pool, init gets the rest as RAM capabilities.
    let (kernel_pool, user_ram) = split_memory(&info);
    let frames = crate::frames::init(kernel_pool);
    let user_bytes: u64 = user_ram.iter().map(Range::len).sum();
    kprintln!(
        "sluice: memory: kernel pool {} MiB, {} MiB for init in {} ranges",
        (frames * 4096) >> 20,
        user_bytes >> 20,
        user_ram.len()
    );
    let mmio = device_ranges(&info, &platform_info);

    let cpus = crate::ap::start_application_processors(&platform_info.cpus, apic_id);
    let modules: heapless::Vec<crate::execution::BootModule<'_>, 16> = info
        .modules
        .iter()
        .map(|m| crate::execution::BootModule {
            start: m.start,
            end: m.end,
            cmdline: m.cmdline,
        })
        .collect();
    let resources = crate::execution::RootResources {
        modules: &modules,
        ram: &user_ram,
        mmio: &mmio,
        cpus,
        ecam: platform_info.ecam,
        dmar_unit: platform_info.dmar_unit,
        dmar_table: platform_info.dmar_table,
        gsi_count: crate::interrupt_routing::gsi_count(),
        cmdline: info.cmdline,
    };
    let started = crate::execution::with_kernel(|kernel| {
        for region in info
            .regions
            .iter()
            .filter(|r| r.kind == RegionKind::Available)
        {
            let _ = kernel.ram.push((region.base, region.end()));
        }
        crate::execution::start_root_task(kernel, &resources)
    });
    if let Err(error) = started {
        kprintln!("sluice: cannot start init: {error}");
        platform::stop(Outcome::Failure("no root task"));
    }
    crate::ap::release_application_processors();
    crate::apic::start_timer();
    crate::execution::idle(0)
}

/// Splits free RAM into the kernel's pool and init's RAM ranges.
fn split_memory(
    info: &BootInfo<'_>,
) -> (
    heapless::Vec<Range, { free_memory::MAX_RANGES }>,
    heapless::Vec<Range, 16>,
) {
    let (kernel_start, kernel_end) = crate::paging::kernel_image();
    let mut reserved: heapless::Vec<Range, 24> = heapless::Vec::new();
    let _ = reserved.push(Range {
        start: kernel_start,
        end: kernel_end,
    });
    for module in &info.modules {
        let _ = reserved.push(Range {
            start: module.start,
            end: module.end,
        });
    }
    let free = free_memory::free_ranges(&info.regions, &reserved, crate::paging::mapped_end());
    let total: u64 = free.iter().map(Range::len).sum();
    let pool_size = ((total / 8)
        .clamp(KERNEL_POOL_MIN, KERNEL_POOL_MAX)
        .min(total))
        & !0xfff;
    let mut kernel = heapless::Vec::new();
    let mut user = heapless::Vec::new();
    let mut remaining = pool_size;
    for range in free {
        let take = remaining.min(range.len());
        if take > 0 {
            let _ = kernel.push(Range {
                start: range.start,
                end: range.start + take,
            });
            remaining -= take;
        }
        if take < range.len()
            && user
                .push(Range {
                    start: range.start + take,
                    end: range.end,
                })
                .is_err()
        {
            break;
        }
    }
    (kernel, user)
}

/// Device MMIO init may hand out: non-RAM space below 4 GiB, minus the interrupt controllers
/// (LAPIC window and IOAPIC page), which stay the kernel's.
fn device_ranges(
    info: &BootInfo<'_>,
    platform: &Platform,
) -> heapless::Vec<Range, { free_memory::MAX_RANGES }> {
    let top_of_low_ram = info
        .regions
        .iter()
        .filter(|r| r.kind == RegionKind::Available && r.base < (4 << 30))
        .map(|r| r.end())
        .max()
        .unwrap_or(0)
        .next_multiple_of(1 << 20);
    let hole = [Region {
        base: top_of_low_ram,
        length: (4u64 << 30).saturating_sub(top_of_low_ram),
        kind: RegionKind::Available,
    }];
    let mut reserved: heapless::Vec<Range, 4> = heapless::Vec::new();
    let lapic = platform.lapic.unwrap_or(crate::apic::DEFAULT_BASE);
    let _ = reserved.push(Range {
        start: lapic,
        end: lapic + (1 << 20),
    });
    if let Some(ioapic) = platform.ioapic {
        let _ = reserved.push(Range {
            start: ioapic,
            end: ioapic + 4096,
        });
    }
    // Firmware ROM and reserved areas just below 4 GiB stay out too.
    let _ = reserved.push(Range {
        start: 0xff00_0000,
        end: 4 << 30,
    });
    free_memory::free_ranges(&hole, &reserved, 4 << 30)
}

/// Discovers ACPI, prints its lines, and returns what the kernel needs.
fn discover_acpi(info: &BootInfo<'_>) -> Platform {
    use core::fmt::Write;
    let mut platform = Platform::default();
    let Some(rsdp) = info.rsdp else {
        let _ = platform.rsdp_text.push_str("none");
        return platform;
    };
    let memory = IdentityMap;
    match acpi::scan_bios_for_rsdp(&memory) {
        Some(phys) => drop(write!(platform.rsdp_text, "rsdp {phys:#x}")),
        None => drop(write!(platform.rsdp_text, "rsdp (loader copy)")),
    }
    if let Rsdp::V2(_) = rsdp {
        let _ = platform.rsdp_text.push_str(" v2");
    }
    let tables = match Tables::discover(rsdp.bytes(), &memory, table_buffer()) {
        Ok(tables) => tables,
        Err(error) => {
            kprintln!("sluice: acpi: {error}");
            return platform;
        }
    };
    kprint!("sluice: acpi revision {} tables", tables.revision);
    for table in &tables.tables {
        kprint!(" {}", Signature(table.signature));
    }
    kprintln!();
    if let Some(mcfg) = tables.find(b"MCFG") {
        match acpi::read_table(&memory, mcfg.phys, table_buffer()) {
            Ok(bytes) => {
                for window in acpi::parse_mcfg(bytes) {
                    kprintln!(
                        "sluice: pci ecam {:#x} segment {} buses {}-{}",
                        window.base,
                        window.segment,
                        window.start_bus,
                        window.end_bus
                    );
                    if window.segment == 0 && platform.ecam.is_none() {
                        platform.ecam = Some((window.base, window.start_bus, window.end_bus));
                    }
                }
            }
            Err(error) => kprintln!("sluice: acpi: MCFG: {error}"),
        }
    }
    if let Some(dmar) = tables.find(b"DMAR") {
        match acpi::read_table(&memory, dmar.phys, table_buffer()) {
            Ok(bytes) => {
                let units = acpi::dmar_unit_bases(bytes);
                kprint!("sluice: iommu dmar units {}", units.len());
                for base in &units {
                    kprint!(" {base:#x}");
                }
                kprintln!();
                platform.dmar_unit = units.first().copied();
                platform.dmar_table = Some((dmar.phys, dmar.length));
            }
            Err(error) => kprintln!("sluice: acpi: DMAR: {error}"),
        }
    } else {
        kprintln!("sluice: iommu none (no DMAR): passthrough unavailable");
    }
    if let Some(madt) = tables.find(b"APIC") {
        if let Ok(bytes) = acpi::read_table(&memory, madt.phys, table_buffer()) {
            let madt = acpi::parse_madt(bytes);
            let usable = madt.cpus.iter().filter(|c| c.usable).count();
            kprintln!(
                "sluice: madt cpus {usable} lapic {:#x} ioapics {}",
                madt.local_apic_address,
                madt.ioapics.len()
            );
            platform.lapic = Some(u64::from(madt.local_apic_address));
            platform.ioapic = madt.ioapics.first().map(|io| u64::from(io.address));
            for cpu in madt.cpus.iter().filter(|c| c.usable) {
                let _ = platform.cpus.push(u32::from(cpu.apic_id));
            }
        }
    }
    platform
}
