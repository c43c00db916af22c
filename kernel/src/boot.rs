//! The boot sequence after the descriptor tables: boot information, page tables, CPU and ACPI
//! discovery, and the summary line `cargo xtask test` checks.

use crate::physical::IdentityMap;
use crate::platform::{self, Outcome};
use kernel_core::acpi::{self, Signature, Tables};
use kernel_core::cmdline::Options;
use kernel_core::cpu_features::CpuFeatures;
use kernel_core::multiboot2::{BootInfo, Rsdp};

/// Room for the copied boot information (GRUB's is a few KiB).
const MBI_CAPACITY: usize = 64 * 1024;
static mut MBI_COPY: [u8; MBI_CAPACITY] = [0; MBI_CAPACITY];
/// Room for one ACPI table at a time.
static mut TABLE_BUFFER: [u8; 64 * 1024] = [0; 64 * 1024];

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

/// Runs the boot sequence and ends the run.
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
        kprintln!("sluice: warning: unknown command-line flag \"{unknown}\" ignored");
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
    let rsdp_text = describe_acpi(&info);
    kprintln!(
        "sluice: cpu {cpu} | mem {} MiB | modules {} | acpi {rsdp_text}",
        info.available_bytes() >> 20,
        info.modules.len()
    );

    if let Some(fault) = options.test_fault {
        crate::test_fault::trigger(fault);
        platform::stop(Outcome::Failure("test fault did not fault"));
    }
    platform::stop(Outcome::Success)
}

/// Discovers ACPI, prints its lines, and returns the summary's `rsdp ...` text.
fn describe_acpi(info: &BootInfo<'_>) -> heapless::String<48> {
    use core::fmt::Write;
    let mut summary = heapless::String::new();
    let Some(rsdp) = info.rsdp else {
        let _ = summary.push_str("none");
        return summary;
    };
    let memory = IdentityMap;
    match acpi::scan_bios_for_rsdp(&memory) {
        Some(phys) => drop(write!(summary, "rsdp {phys:#x}")),
        None => drop(write!(summary, "rsdp (loader copy)")),
    }
    if let Rsdp::V2(_) = rsdp {
        let _ = summary.push_str(" v2");
    }
    let tables = match Tables::discover(rsdp.bytes(), &memory, table_buffer()) {
        Ok(tables) => tables,
        Err(error) => {
            kprintln!("sluice: acpi: {error}");
            return summary;
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
        }
    }
    summary
}
