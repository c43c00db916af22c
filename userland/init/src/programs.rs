//! The programs init starts and what each receives: its domain name, child number (the id of
//! the portals it calls), CPU, priority, quota, argument words and the capabilities it gets
//! beyond the three every child has.
//!
//! Every child's table at start (`sluice_abi::boot`):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | a portal to init (`PARENT_PORTAL`), id = the child's number | `CALL` |
//!
//! Then per program: iommu-server 3 = the first DMAR unit's register page; pci-server 3 = a
//! portal to the iommu-server, 4 = the ECAM window; vmm-server 3 = a portal to the pci-server.
//! A portal to a server carries the calling child's number as its id.

use sluice_abi::boot::BootInfo;
use sluice_abi::syscall::{MemoryRights, Selector};
use sluice_rt::types::Quota;

use crate::layout::PAGE;

/// Most capabilities a program gets beyond the common three.
pub const MAX_GRANTS: usize = 4;
/// Most argument words init passes.
pub const MAX_PROGRAM_ARGUMENTS: usize = 4;

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
    /// Misbehave mode `m` (1..=4) is child `MISBEHAVE_BASE + m`.
    pub const MISBEHAVE_BASE: u64 = 3;
    /// The benchmark server and client.
    pub const BENCH_SERVER: u64 = 16;
    pub const BENCH_CLIENT: u64 = 17;
}

/// Priority of the benchmark programs: above init and the servers, so the measurement runs
/// undisturbed to its end before the rest of the boot continues on that CPU.
pub const BENCH_PRIORITY: u8 = 30;

/// What a capability beyond the common three is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// A new portal served by `handler` (a thread in init's table), id = the child's number.
    PortalTo { handler: Selector },
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

/// Kernel-memory quota of a misbehaving test program (it creates nothing).
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
        quota: SERVER_QUOTA,
        arguments: heapless::Vec::new(),
        grants: heapless::Vec::new(),
    }
}

/// The iommu-server: selector 3 = the first DMAR unit's register page, when there is one (a
/// VT-d unit's registers fit one 4 KiB page up to the IOTLB registers, VT-d spec 10.4).
pub fn iommu_server(boot: &BootInfo) -> ProgramSpec {
    let mut spec = server("iommu-server", "iommu", number::IOMMU_SERVER, 0);
    if boot.dmar_unit != 0 {
        let _ = spec.grants.push(Grant {
            destination: 3,
            kind: GrantKind::Device {
                address: boot.dmar_unit - boot.dmar_unit % PAGE,
                size: PAGE,
                rights: MemoryRights::READ | MemoryRights::WRITE,
            },
        });
    }
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

/// The pci-server: 3 = a portal to the iommu-server (served by `iommu_thread`), 4 = the ECAM
/// window when there is one.
pub fn pci_server(boot: &BootInfo, iommu_thread: Selector) -> ProgramSpec {
    let mut spec = server("pci-server", "pci", number::PCI_SERVER, 0);
    let _ = spec.grants.push(Grant {
        destination: 3,
        kind: GrantKind::PortalTo {
            handler: iommu_thread,
        },
    });
    if let Some((address, size)) = ecam_window(boot) {
        let _ = spec.grants.push(Grant {
            destination: 4,
            kind: GrantKind::Device {
                address,
                size,
                rights: MemoryRights::READ | MemoryRights::WRITE,
            },
        });
    }
    spec
}

/// The vmm-server of guest `guest` on `cpu`: 3 = a portal to the pci-server (served by
/// `pci_thread`); argument 0 = the guest index.
pub fn vmm_server(guest: u64, cpu: u16, pci_thread: Selector) -> ProgramSpec {
    let mut spec = server("vmm-server", "vmm", number::VMM_SERVER, cpu);
    let _ = spec.arguments.push(guest);
    let _ = spec.grants.push(Grant {
        destination: 3,
        kind: GrantKind::PortalTo {
            handler: pci_thread,
        },
    });
    spec
}

/// Domain names of the misbehave runs, by mode.
const MISBEHAVE_NAMES: [&str; 4] = ["misbeh-1", "misbeh-2", "misbeh-3", "misbeh-4"];

/// Misbehave in `mode` (1..=4; other modes get the last name): argument 0 = the mode.
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
        quota: MISBEHAVE_QUOTA,
        arguments,
        grants: heapless::Vec::new(),
    }
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
