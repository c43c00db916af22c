//! The programs init starts and what each receives: its domain name, child number (the id of
//! the portals it calls), CPU, priority, stack size, quota, argument words and the
//! capabilities it gets beyond the three every child has.
//!
//! Every child's table at start (`sluice_abi::boot`):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | a portal to init (`PARENT_PORTAL`), id = the child's number | `CALL` |
//!
//! Then per program (each function below lists its selectors and argument words):
//! iommu-server 3-8 and 9-15 (first DMAR unit, DMAR table, table frames, fault interrupt,
//! watcher memory; the further DMAR units' register pages);
//! pci-server 3-5, 6..=15 and 16 (iommu-server portal, ECAM window, system description, device
//! windows, interrupt lines); vmm-server 3 (pci-server portal); dma-test 3-8 (both server portals, DMA buffer,
//! canary page, its MSI line). A portal to a server carries the calling child's number as its
//! id, which is how servers know who calls.
//!
//! Passthrough conventions fixed here: the owner of guest `g`'s devices is child number
//! [`number::FIRST_OWNER`] + `g`; interrupt line `first_msi_line` is the VT-d fault event, and
//! line `first_msi_line + 1 + g` is guest `g`'s MSI line.

use sluice_abi::boot::{BootCapabilityKind, BootInfo};
use sluice_abi::syscall::{InterruptRights, MemoryRights, Selector};
use sluice_rt::types::Quota;

use crate::dmar::MAX_DRHD_UNITS;
use crate::layout::{CHILD_STACK_SIZE, PAGE, SERVER_STACK_SIZE};

/// Most capabilities a program gets beyond the common three (the pci-server's three,
/// [`MAX_DEVICE_WINDOWS`] and its interrupt lines are the most).
pub const MAX_GRANTS: usize = 14;
/// Most argument words init passes (`sluice_rt::start::MAX_ARGUMENTS`).
pub const MAX_PROGRAM_ARGUMENTS: usize = 15;
/// The pci-server's argument words that carry its device windows (after the two header words).
pub const PCI_WINDOW_WORDS: usize = MAX_PROGRAM_ARGUMENTS - 2;
/// Bits of one packed window field: a page frame number or a page count of an address below
/// 2^52, the largest physical address width (MAXPHYADDR <= 52, Intel SDM vol. 3A 4.1.4).
pub const WINDOW_FIELD_BITS: usize = 40;
/// Highest physical address (exclusive) a window may reach.
pub const PHYSICAL_ADDRESS_LIMIT: u64 = 1 << (WINDOW_FIELD_BITS + 12);
/// Most device windows the pci-server gets for BARs: as many (first page, page count) pairs of
/// [`WINDOW_FIELD_BITS`] as [`PCI_WINDOW_WORDS`] hold (10); their selectors 6..=15 come before
/// its interrupt lines (16) and its own objects (from 20).
pub const MAX_DEVICE_WINDOWS: usize = PCI_WINDOW_WORDS * 64 / (2 * WINDOW_FIELD_BITS);

/// Scheduling priority of the servers and test programs.
pub const PROGRAM_PRIORITY: u8 = 10;

/// Bytes of one PCI bus in the ECAM window: 32 devices x 8 functions x 4 KiB (PCIe Base
/// spec 5.0, section 7.2.2).
pub const ECAM_BUS_BYTES: u64 = 1 << 20;

/// Child numbers (portal ids) of the servers, in start order.
pub mod number {
    pub const IOMMU_SERVER: u64 = 1;
    pub const PCI_SERVER: u64 = 2;
    pub const VMM_SERVER: u64 = 3;
    /// Misbehave mode `m` (1..=5 and 7) is child `MISBEHAVE_BASE + m` (mode 6 is the
    /// [`SPINNER`]).
    pub const MISBEHAVE_BASE: u64 = 3;
    /// vmm-servers of guests after the first: `VMM_EXTRA_BASE + n`.
    pub const VMM_EXTRA_BASE: u64 = 32;
    /// The benchmark server and client.
    pub const BENCH_SERVER: u64 = 16;
    pub const BENCH_CLIENT: u64 = 17;
    /// The spinner (misbehave mode 6) that keeps CPU 1 in user mode.
    pub const SPINNER: u64 = MISBEHAVE_BASE + 6;
    /// The owner of guest `g`'s devices (its dma-test driver or VMM) is `FIRST_OWNER + g`
    /// (above the vmm-servers' `VMM_EXTRA_BASE + n`, so no two children share a number).
    pub const FIRST_OWNER: u64 = 64;
}

/// The child number of the owner of guest `guest`'s devices.
pub const fn owner_number(guest: u64) -> u64 {
    number::FIRST_OWNER + guest
}

/// The interrupt line the iommu-server's fault events arrive on.
pub fn fault_event_line(boot: &BootInfo) -> u32 {
    boot.first_msi_line
}

/// The MSI line of guest `guest`'s devices.
pub fn guest_msi_line(boot: &BootInfo, guest: u16) -> u32 {
    boot.first_msi_line
        .saturating_add(1)
        .saturating_add(u32::from(guest))
}

/// Priority of the benchmark programs: above init and the servers, so the measurement runs
/// undisturbed to its end before the rest of the boot continues on that CPU.
pub const BENCH_PRIORITY: u8 = 30;

/// What a capability beyond the common three is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// A new portal served by `handler` (a thread in init's table), id = the child's number.
    PortalTo { handler: Selector },
    /// I/O ports `first .. first + count`, carved from the boot I/O capability (`ACCESS`);
    /// the program lets itself use them with `io_allow` on its own domain.
    IoPorts { first: u16, count: u32 },
    /// RAM carved for the program (every memory right, including DMA-map and retype): a
    /// guest's memory for a vmm-server.
    Ram { size: u64 },
    /// A boot module, read-only (e.g. a built-in guest image); skipped if there is none.
    Module { name: &'static str },
    /// The listed firmware table named `name` (e.g. `acpi-dmar`), read-only; skipped if there
    /// is none.
    Firmware { name: &'static str },
    /// Fresh RAM with exactly `rights`, zeroed, or filled with `fill` repeated (little-endian)
    /// when it is not zero.
    Memory {
        size: u64,
        rights: MemoryRights,
        fill: u64,
    },
    /// Interrupt `line` bound to bit 0 of a new notification: the notification (`WAIT`) at
    /// this grant's destination and the bound interrupt (`ACKNOWLEDGE`) at `interrupt`.
    Interrupt { line: u32, interrupt: u32 },
    /// The kernel's interrupt lines (init's boot capability) with `rights`: for the server
    /// that binds lines for others (the pci-server routes owned functions' INTx).
    InterruptLines { rights: InterruptRights },
    /// Device memory carved from the DeviceMmio boot capabilities.
    Device {
        address: u64,
        size: u64,
        rights: MemoryRights,
    },
}

/// One capability a program gets, at `destination` of its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub destination: u32,
    pub kind: GrantKind,
}

/// A program to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Boot module name, also the name in logs.
    pub program: &'static str,
    /// The domain's name in the kernel's fault reports (at most 8 bytes).
    pub domain_name: &'static str,
    /// Child number: the id of every portal it calls.
    pub number: u64,
    pub cpu: u16,
    pub priority: u8,
    /// Bytes of stack (a page multiple).
    pub stack_size: u64,
    pub quota: Quota,
    pub arguments: heapless::Vec<u64, MAX_PROGRAM_ARGUMENTS>,
    pub grants: heapless::Vec<Grant, MAX_GRANTS>,
}

/// Kernel-memory quota of a server: its page tables and a few objects of its own.
pub const SERVER_QUOTA: Quota = Quota {
    bytes: 256 * 1024,
    objects: 16,
    mappings: 64,
};

/// Kernel-memory quota of the pci-server: it also maps one ECAM bus (1 MiB) at a time as it
/// scans, the system description, and carves a memory object per BAR it hands out.
pub const PCI_SERVER_QUOTA: Quota = Quota {
    bytes: 512 * 1024,
    objects: 48,
    mappings: 320,
};

/// Kernel-memory quota of the iommu-server: its table frames are one mapping; it creates a
/// fault-watcher thread, a portal and a notification, and maps delegated memory briefly to
/// verify its rights.
pub const IOMMU_SERVER_QUOTA: Quota = Quota {
    bytes: 256 * 1024,
    objects: 24,
    mappings: 64,
};

/// Kernel-memory quota of the DMA test driver: a few notifications, its mappings.
pub const DMA_TEST_QUOTA: Quota = Quota {
    bytes: 128 * 1024,
    objects: 8,
    mappings: 16,
};

/// Kernel-memory quota of a misbehaving test program: mode 7 creates a VM and two vCPUs (3
/// objects of 8 KiB, `object_bytes` in kernel/objects); the other modes create nothing.
pub const MISBEHAVE_QUOTA: Quota = Quota {
    bytes: 64 * 1024,
    objects: 4,
    mappings: 8,
};

fn server(program: &'static str, domain_name: &'static str, number: u64, cpu: u16) -> ProgramSpec {
    ProgramSpec {
        program,
        domain_name,
        number,
        cpu,
        priority: PROGRAM_PRIORITY,
        stack_size: CHILD_STACK_SIZE,
        quota: SERVER_QUOTA,
        arguments: heapless::Vec::new(),
        grants: heapless::Vec::new(),
    }
}

fn grant(spec: &mut ProgramSpec, destination: u32, kind: GrantKind) {
    // Every spec below stays within MAX_GRANTS (checked by the tests).
    let _ = spec.grants.push(Grant { destination, kind });
}

fn argument(spec: &mut ProgramSpec, word: u64) {
    // Every spec below stays within MAX_PROGRAM_ARGUMENTS (checked by the tests).
    let _ = spec.arguments.push(word);
}

/// Frames the iommu-server builds its tables in (root, context, second-level, invalidation
/// queue, interrupt remapping table): 256 KiB.
pub const IOMMU_TABLE_MEMORY: u64 = 256 * 1024;
/// Stack and UTCB of the iommu-server's fault-watcher thread.
pub const IOMMU_WATCHER_MEMORY: u64 = 16 * 1024 + PAGE;

/// First selector of the iommu-server's further DMAR units' register pages: unit n (DMAR
/// order, n >= 1) at `IOMMU_FURTHER_UNITS + n - 1`.
pub const IOMMU_FURTHER_UNITS: u32 = 9;

/// The iommu-server. Selectors: 3 = the first DMAR unit's register page (a VT-d unit's
/// registers fit one 4 KiB page up to the IOTLB registers, VT-d spec 10.4), 4 = the ACPI DMAR
/// table (read-only), 5 = RAM for its tables (read, write, DMA-map), 6 = a notification its
/// fault-event line is bound to, 7 = that bound interrupt, 8 = RAM for its fault-watcher
/// thread, 9.. = the register pages of DMAR units 1, 2, ... from `drhd` ([`crate::dmar`]; a
/// unit whose page is 0 leaves its selector empty). All of them are empty when the machine has
/// no VT-d unit (4 also without a DMAR table capability). Arguments:
/// the fault-event line, the pci-server's number, the first owner number, the first owner's
/// MSI line, 1 when the system allows passthrough without interrupt remapping, the DMAR
/// table's offset in its first page, and its length.
pub fn iommu_server(
    boot: &BootInfo,
    insecure_no_interrupt_remapping: bool,
    drhd: &[u64],
) -> ProgramSpec {
    let mut spec = server("iommu-server", "iommu", number::IOMMU_SERVER, 0);
    spec.quota = IOMMU_SERVER_QUOTA;
    spec.stack_size = SERVER_STACK_SIZE;
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    if boot.dmar_unit != 0 {
        let address = boot.dmar_unit - boot.dmar_unit % PAGE;
        let rights = read_write;
        let size = PAGE;
        grant(
            &mut spec,
            3,
            GrantKind::Device {
                address,
                size,
                rights,
            },
        );
        if boot.dmar_table != 0 {
            grant(&mut spec, 4, GrantKind::Firmware { name: "acpi-dmar" });
        }
        let (size, fill) = (IOMMU_TABLE_MEMORY, 0);
        let rights = read_write | MemoryRights::DMA_MAP;
        grant(&mut spec, 5, GrantKind::Memory { size, rights, fill });
        let line = fault_event_line(boot);
        grant(&mut spec, 6, GrantKind::Interrupt { line, interrupt: 7 });
        let (size, rights) = (IOMMU_WATCHER_MEMORY, read_write);
        grant(&mut spec, 8, GrantKind::Memory { size, rights, fill });
        for (offset, page) in (0u32..).zip(drhd.iter().skip(1).take(MAX_DRHD_UNITS - 1)) {
            if *page != 0 {
                let (address, size, rights) = (*page, PAGE, read_write);
                let kind = GrantKind::Device {
                    address,
                    size,
                    rights,
                };
                grant(&mut spec, IOMMU_FURTHER_UNITS + offset, kind);
            }
        }
    }
    argument(&mut spec, u64::from(fault_event_line(boot)));
    argument(&mut spec, number::PCI_SERVER);
    argument(&mut spec, number::FIRST_OWNER);
    argument(&mut spec, u64::from(guest_msi_line(boot, 0)));
    argument(&mut spec, u64::from(insecure_no_interrupt_remapping));
    argument(&mut spec, boot.dmar_table % PAGE);
    argument(&mut spec, boot.dmar_length);
    spec
}

/// The ECAM window of segment 0 for buses `start ..= end`: the MCFG base address names bus 0
/// (PCI Firmware spec 3.2, table 4-3), so the window starts `start` buses above it.
pub fn ecam_window(boot: &BootInfo) -> Option<(u64, u64)> {
    if boot.ecam_base == 0 || boot.ecam_end_bus < boot.ecam_start_bus || boot.ecam_end_bus > 255 {
        return None;
    }
    let buses = u64::from(boot.ecam_end_bus - boot.ecam_start_bus) + 1;
    let start = boot
        .ecam_base
        .checked_add(u64::from(boot.ecam_start_bus) * ECAM_BUS_BYTES)?;
    Some((start, buses * ECAM_BUS_BYTES))
}

/// Why a piece of device MMIO is not handed to the pci-server (init logs each with its range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowRefusal {
    /// The pci-server already has [`MAX_DEVICE_WINDOWS`] windows.
    TooManyWindows,
    /// The piece does not start or end on a page boundary (a capability is page-granular).
    NotPageAligned,
    /// The piece reaches beyond [`PHYSICAL_ADDRESS_LIMIT`], which the argument packing covers.
    BeyondAddressWidth,
    /// More holes (VT-d pages) than init keeps track of: no piece of the range is known to be
    /// free of them.
    TooManyHoles,
}

impl core::fmt::Display for WindowRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WindowRefusal::TooManyWindows => write!(
                f,
                "it already has {MAX_DEVICE_WINDOWS} device windows (its argument words hold no more)"
            ),
            WindowRefusal::NotPageAligned => f.write_str("the range is not page-aligned"),
            WindowRefusal::BeyondAddressWidth => {
                write!(f, "the range reaches beyond {PHYSICAL_ADDRESS_LIMIT:#x}")
            }
            WindowRefusal::TooManyHoles => {
                f.write_str("more VT-d and ECAM holes than init tracks")
            }
        }
    }
}

/// Holes cut from device MMIO: the ECAM window, the kernel's VT-d unit, the DMAR's units.
const MAX_HOLES: usize = MAX_DRHD_UNITS + 2;
/// Pieces one range can fall into: each hole splits at most one piece in two.
const MAX_PIECES: usize = MAX_HOLES + 1;

/// The ranges of `range` (start, end exclusive) left after removing `holes`, in address order
/// of the cuts. Holes lie within [`MAX_HOLES`], so no piece can be lost; a zero-length piece is
/// nothing and is left out.
fn subtract(range: (u64, u64), holes: &[(u64, u64)]) -> heapless::Vec<(u64, u64), MAX_PIECES> {
    let mut pieces: heapless::Vec<(u64, u64), MAX_PIECES> = heapless::Vec::new();
    let _ = pieces.push(range);
    for (hole_start, hole_end) in holes.iter().take(MAX_HOLES) {
        let mut next: heapless::Vec<(u64, u64), MAX_PIECES> = heapless::Vec::new();
        for (start, end) in &pieces {
            // Every piece of `pieces` adds at most one more here, and there are at most
            // MAX_HOLES holes: `next` never overflows.
            if *hole_end <= *start || *hole_start >= *end {
                let _ = next.push((*start, *end));
                continue;
            }
            if *hole_start > *start {
                let _ = next.push((*start, *hole_start));
            }
            if *hole_end < *end {
                let _ = next.push((*hole_end, *end));
            }
        }
        pieces = next;
    }
    pieces.retain(|(start, end)| end > start);
    pieces
}

/// The device MMIO the pci-server may hand out as BARs: every DeviceMmio boot range minus the
/// ECAM window and the VT-d units' pages (`drhd`, and the kernel's unit; those belong to the
/// servers that own them). Every piece that cannot be handed out is logged with its range.
pub fn device_windows(
    boot: &BootInfo,
    drhd: &[u64],
) -> heapless::Vec<(u64, u64), MAX_DEVICE_WINDOWS> {
    device_windows_reporting(boot, drhd, |start, end, reason| {
        sluice_rt::log!(
            "init: device MMIO {start:#x}-{:#x} not handed to the pci-server: {reason}",
            end.saturating_sub(1)
        )
    })
}

/// [`device_windows`], telling `left_out` of every piece (start, end exclusive) that is not
/// handed out, and why.
pub fn device_windows_reporting(
    boot: &BootInfo,
    drhd: &[u64],
    mut left_out: impl FnMut(u64, u64, WindowRefusal),
) -> heapless::Vec<(u64, u64), MAX_DEVICE_WINDOWS> {
    let mut holes: heapless::Vec<(u64, u64), MAX_HOLES> = heapless::Vec::new();
    let mut complete = true;
    if let Some((address, size)) = ecam_window(boot) {
        complete &= holes.push((address, address.saturating_add(size))).is_ok();
    }
    if boot.dmar_unit != 0 {
        let page = boot.dmar_unit - boot.dmar_unit % PAGE;
        complete &= holes.push((page, page.saturating_add(PAGE))).is_ok();
    }
    for page in drhd.iter().filter(|page| **page != 0) {
        complete &= holes.push((*page, page.saturating_add(PAGE))).is_ok();
    }
    let mut windows = heapless::Vec::new();
    for capability in boot
        .listed()
        .iter()
        .filter(|c| c.kind == BootCapabilityKind::DeviceMmio as u32)
    {
        let range = (
            capability.base,
            capability.base.saturating_add(capability.size),
        );
        if !complete {
            left_out(range.0, range.1, WindowRefusal::TooManyHoles);
            continue;
        }
        for (start, end) in subtract(range, &holes) {
            let refusal = if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) {
                Some(WindowRefusal::NotPageAligned)
            } else if end > PHYSICAL_ADDRESS_LIMIT {
                Some(WindowRefusal::BeyondAddressWidth)
            } else if windows.push((start, end - start)).is_err() {
                Some(WindowRefusal::TooManyWindows)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                left_out(start, end, refusal);
            }
        }
    }
    windows
}

/// Packs `windows` (page-aligned, below [`PHYSICAL_ADDRESS_LIMIT`]) into the pci-server's
/// window words: window `i` is the fields `2i` (first page frame number) and `2i + 1` (page
/// count), field `k` taking bits `40k ..= 40k + 39` of the words read as one little-endian bit
/// string (bit 0 = bit 0 of the first word). The pci-server's `arguments` module reads them.
pub fn pack_windows(windows: &[(u64, u64)]) -> [u64; PCI_WINDOW_WORDS] {
    let mut words = [0u64; PCI_WINDOW_WORDS];
    let mask = (1u64 << WINDOW_FIELD_BITS) - 1;
    let fields = windows
        .iter()
        .take(MAX_DEVICE_WINDOWS)
        .flat_map(|(base, size)| [base / PAGE, size / PAGE]);
    for (index, field) in fields.enumerate() {
        let bit = index * WINDOW_FIELD_BITS;
        let (word, shift) = (bit / 64, bit % 64);
        let value = field & mask;
        if let Some(slot) = words.get_mut(word) {
            *slot |= value << shift;
        }
        if shift + WINDOW_FIELD_BITS > 64 {
            if let Some(slot) = words.get_mut(word + 1) {
                *slot |= value >> (64 - shift);
            }
        }
    }
    words
}

/// First selector of the pci-server's device windows.
pub const PCI_FIRST_WINDOW: u32 = 6;
/// The pci-server's interrupt lines (after the last possible device window).
pub const PCI_INTERRUPT_LINES: u32 = PCI_FIRST_WINDOW + MAX_DEVICE_WINDOWS as u32;

/// The pci-server. Selectors: 3 = a portal to the iommu-server (served by `iommu_thread`),
/// 4 = the ECAM window when there is one, 5 = the system description (read-only), 6..=15 =
/// the [`device_windows`] (read, write, retype: it carves BARs from them), 16 =
/// [`PCI_INTERRUPT_LINES`]: the interrupt lines with every interrupt right (it binds an owned
/// function's INTx line to the owner's notification, keeps `REMAP` to point the IOAPIC pin at
/// an IRTE, and hands the owner the bound line with `ACKNOWLEDGE` only; it binds only the
/// GSIs its platform table computes, and the kernel's `interrupt_remap` and the iommu-server
/// refuse any line that is not an IOAPIC pin; narrowing the capability to the IOAPIC lines
/// needs a kernel call that carves interrupt ranges). Arguments: the ECAM base (bus 0); start
/// bus | end bus << 8 | number of device windows << 16 | first owner number << 32; then the
/// windows packed by [`pack_windows`] (only the words they need).
pub fn pci_server(boot: &BootInfo, iommu_thread: Selector, drhd: &[u64]) -> ProgramSpec {
    let mut spec = server("pci-server", "pci", number::PCI_SERVER, 0);
    spec.quota = PCI_SERVER_QUOTA;
    spec.stack_size = SERVER_STACK_SIZE;
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    let handler = iommu_thread;
    grant(&mut spec, 3, GrantKind::PortalTo { handler });
    if let Some((address, size)) = ecam_window(boot) {
        let rights = read_write;
        grant(
            &mut spec,
            4,
            GrantKind::Device {
                address,
                size,
                rights,
            },
        );
    }
    let name = crate::description::SYSDESC_MODULE;
    grant(&mut spec, 5, GrantKind::Module { name });
    let windows = device_windows(boot, drhd);
    let rights = read_write | MemoryRights::RETYPE;
    for (destination, (address, size)) in (PCI_FIRST_WINDOW..).zip(windows.iter()) {
        let (address, size) = (*address, *size);
        grant(
            &mut spec,
            destination,
            GrantKind::Device {
                address,
                size,
                rights,
            },
        );
    }
    let rights = InterruptRights::all();
    grant(
        &mut spec,
        PCI_INTERRUPT_LINES,
        GrantKind::InterruptLines { rights },
    );
    argument(&mut spec, boot.ecam_base);
    argument(
        &mut spec,
        u64::from(boot.ecam_start_bus & 0xff)
            | u64::from(boot.ecam_end_bus & 0xff) << 8
            | (windows.len() as u64) << 16
            | number::FIRST_OWNER << 32,
    );
    let words = (windows.len() * 2 * WINDOW_FIELD_BITS).div_ceil(64);
    for word in pack_windows(&windows).iter().take(words) {
        argument(&mut spec, *word);
    }
    spec
}

/// Bytes of the DMA test driver's buffer (the memory it lets the device reach).
pub const DMA_TEST_BUFFER: u64 = 64 * 1024;
/// The pattern init fills the DMA test driver's canary page with.
pub const CANARY_PATTERN: u64 = 0xca4a_57ed_c0de_5eed;

/// The DMA test driver for guest `guest` (its owner number is [`owner_number`]). Selectors:
/// 3 = a portal to the iommu-server, 4 = a portal to the pci-server, 5 = its DMA buffer (read,
/// write, DMA-map), 6 = a canary page filled with [`CANARY_PATTERN`] (read, DMA-map: it learns
/// the address but cannot write it), 7 = a notification its MSI line is bound to, 8 = that
/// bound interrupt. Arguments: the guest index, its MSI line, the device's host BDF.
pub fn dma_test(
    boot: &BootInfo,
    guest: u16,
    device: u16,
    iommu_thread: Selector,
    pci_thread: Selector,
) -> ProgramSpec {
    let guest_number = u64::from(guest);
    let mut spec = ProgramSpec {
        program: "dma-test",
        domain_name: "dma-test",
        number: owner_number(guest_number),
        cpu: 0,
        priority: PROGRAM_PRIORITY,
        stack_size: CHILD_STACK_SIZE,
        quota: DMA_TEST_QUOTA,
        arguments: heapless::Vec::new(),
        grants: heapless::Vec::new(),
    };
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    grant(
        &mut spec,
        3,
        GrantKind::PortalTo {
            handler: iommu_thread,
        },
    );
    grant(
        &mut spec,
        4,
        GrantKind::PortalTo {
            handler: pci_thread,
        },
    );
    let (size, fill) = (DMA_TEST_BUFFER, 0);
    let rights = read_write | MemoryRights::DMA_MAP;
    grant(&mut spec, 5, GrantKind::Memory { size, rights, fill });
    let (size, fill) = (PAGE, CANARY_PATTERN);
    let rights = MemoryRights::READ | MemoryRights::DMA_MAP;
    grant(&mut spec, 6, GrantKind::Memory { size, rights, fill });
    let line = guest_msi_line(boot, guest);
    grant(&mut spec, 7, GrantKind::Interrupt { line, interrupt: 8 });
    argument(&mut spec, guest_number);
    argument(&mut spec, u64::from(line));
    argument(&mut spec, u64::from(device));
    spec
}

/// Domain names of the vmm-servers, by the order they are started.
const VMM_NAMES: [&str; 8] = [
    "vmm", "vmm-1", "vmm-2", "vmm-3", "vmm-4", "vmm-5", "vmm-6", "vmm-7",
];

/// The boot module of the built-in test guests.
pub const GUEST_IMAGE_MODULE: &str = "guest-probe";

/// The `order`-th vmm-server (child number 3 for the first, then `VMM_EXTRA_BASE + order`),
/// for guest `guest` on `cpu`: 3 = a portal to the pci-server (served by `pci_thread`); with
/// guest memory: 4 = the guest's RAM (`memory` bytes), 5 = the built-in guest image, 6 = the
/// system description. Argument 0 = the guest index (`u64::MAX`: no guest).
pub fn vmm_server(
    order: usize,
    guest: u64,
    cpu: u16,
    pci_thread: Selector,
    memory: u64,
) -> ProgramSpec {
    let number = if order == 0 {
        number::VMM_SERVER
    } else {
        number::VMM_EXTRA_BASE + order as u64
    };
    let name = VMM_NAMES.get(order).copied().unwrap_or("vmm-x");
    let mut spec = server("vmm-server", name, number, cpu);
    let _ = spec.arguments.push(guest);
    let _ = spec.grants.push(Grant {
        destination: 3,
        kind: GrantKind::PortalTo {
            handler: pci_thread,
        },
    });
    if memory > 0 {
        // The guest's RAM is mapped into the vmm-server too: its page tables (one 4 KiB table
        // per 2 MiB, plus the upper levels) are paid from this quota. So are the VM's nested
        // page tables for the same RAM, which the kernel reserves at their most before it
        // maps (one table per 2 MiB, 1 GiB and 512 GiB region the range touches).
        let nested = (memory.div_ceil(2 << 20) + memory.div_ceil(1 << 30) + 1) * PAGE;
        spec.quota.bytes = spec
            .quota
            .bytes
            .saturating_add(memory / 512 + 4 * PAGE)
            .saturating_add(nested);
        let _ = spec.grants.push(Grant {
            destination: 4,
            kind: GrantKind::Ram { size: memory },
        });
        let _ = spec.grants.push(Grant {
            destination: 5,
            kind: GrantKind::Module {
                name: GUEST_IMAGE_MODULE,
            },
        });
        let _ = spec.grants.push(Grant {
            destination: 6,
            kind: GrantKind::Module { name: "sysdesc" },
        });
    }
    spec
}

/// Domain names of the misbehave runs, by mode (mode 6 runs as the [`spinner`]).
const MISBEHAVE_NAMES: [&str; 7] = [
    "misbeh-1", "misbeh-2", "misbeh-3", "misbeh-4", "misbeh-5", "misbeh-6", "misbeh-7",
];

/// The port misbehave mode 5 is given (0x80, the POST diagnostic port: writes are harmless).
pub const MISBEHAVE_PORT: u16 = 0x80;

/// Misbehave in `mode` (1..=5 or 7; other modes are named `misbeh-x`): argument 0 = the
/// mode. Mode 7 creates a VM and two vCPUs from its own quota.
pub fn misbehave(mode: u64) -> ProgramSpec {
    let index = usize::try_from(mode.saturating_sub(1)).unwrap_or(usize::MAX);
    let domain_name = MISBEHAVE_NAMES.get(index).copied().unwrap_or("misbeh-x");
    let mut arguments = heapless::Vec::new();
    let _ = arguments.push(mode);
    ProgramSpec {
        program: "misbehave",
        domain_name,
        number: number::MISBEHAVE_BASE.saturating_add(mode),
        cpu: 0,
        priority: PROGRAM_PRIORITY,
        stack_size: CHILD_STACK_SIZE,
        quota: MISBEHAVE_QUOTA,
        arguments,
        grants: misbehave_grants(mode),
    }
}

/// Lowest priority: the spinner runs only when nothing else wants its CPU.
pub const SPINNER_PRIORITY: u8 = 1;

/// Misbehave mode 6 on `cpu` at the lowest priority: it spins in user mode forever, so the
/// CPU is running user code whenever it is otherwise idle and the kernel's TLB shootdowns
/// (which the misbehave sequence's teardowns cause on CPU 0) must interrupt it and wait.
pub fn spinner(cpu: u16) -> ProgramSpec {
    let mut arguments = heapless::Vec::new();
    let _ = arguments.push(6);
    ProgramSpec {
        program: "misbehave",
        domain_name: "spinner",
        number: number::SPINNER,
        cpu,
        priority: SPINNER_PRIORITY,
        stack_size: CHILD_STACK_SIZE,
        quota: MISBEHAVE_QUOTA,
        arguments,
        grants: heapless::Vec::new(),
    }
}

/// Mode 5 gets one I/O port at selector 3 (it may use it; any other port faults).
fn misbehave_grants(mode: u64) -> heapless::Vec<Grant, MAX_GRANTS> {
    let mut grants = heapless::Vec::new();
    if mode == 5 {
        let _ = grants.push(Grant {
            destination: 3,
            kind: GrantKind::IoPorts {
                first: MISBEHAVE_PORT,
                count: 1,
            },
        });
    }
    grants
}

/// The benchmark in `mode` (1 = server, 2 = client with 3 = a portal to `server_thread`).
pub fn bench(mode: u64, server_thread: Option<Selector>) -> ProgramSpec {
    let (domain_name, number) = if mode == 1 {
        ("bench-s", number::BENCH_SERVER)
    } else {
        ("bench-c", number::BENCH_CLIENT)
    };
    let mut spec = ProgramSpec {
        program: "bench",
        domain_name,
        number,
        cpu: 0,
        priority: BENCH_PRIORITY,
        stack_size: CHILD_STACK_SIZE,
        quota: MISBEHAVE_QUOTA,
        arguments: heapless::Vec::new(),
        grants: heapless::Vec::new(),
    };
    let _ = spec.arguments.push(mode);
    if let Some(handler) = server_thread {
        let _ = spec.grants.push(Grant {
            destination: 3,
            kind: GrantKind::PortalTo { handler },
        });
    }
    spec
}
