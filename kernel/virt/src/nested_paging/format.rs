//! The two entry formats: EPT paging-structure entries (SDM Vol. 3C section 29.3.2, Tables 29-1
//! to 29-6) and AMD nested page-table entries, which are ordinary long-mode page-table entries
//! (APM Vol. 2 sections 5.3 and 15.25.5).
use super::{MemoryType, PageSize, Rights};
use crate::address::HostPhys;

/// Bits 51:12: the physical address in an entry.
pub(crate) const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bit 7 in a PDPTE / PDE: the entry maps a page (both formats).
pub(crate) const PAGE_SIZE_BIT: u64 = 1 << 7;

/// How one format encodes entries. Entries are zero when not present.
pub trait EntryFormat {
    /// Format name for diagnostics.
    const NAME: &'static str;
    /// An entry referencing the next-level table at `table`.
    fn table_entry(table: HostPhys) -> u64;
    /// An entry mapping the page of `size` at `frame`.
    fn leaf_entry(frame: HostPhys, size: PageSize, rights: Rights, memory: MemoryType) -> u64;
    /// Whether the entry maps or references anything.
    fn is_present(entry: u64) -> bool;
    /// The rights of a present leaf.
    fn rights(entry: u64) -> Rights;
    /// The memory type of a present leaf.
    fn memory_type(entry: u64) -> MemoryType;
}

/// EPT (Intel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept;

/// EPT read, write, execute access (bits 0, 1, 2).
const EPT_READ: u64 = 1 << 0;
const EPT_WRITE: u64 = 1 << 1;
const EPT_EXECUTE: u64 = 1 << 2;
/// EPT memory type, bits 5:3 of a leaf: 0 UC, 6 WB (SDM Vol. 3C section 29.3.7).
const EPT_MEMORY_TYPE_SHIFT: u64 = 3;
const EPT_UNCACHEABLE: u64 = 0;
const EPT_WRITE_BACK: u64 = 6;

impl EntryFormat for Ept {
    const NAME: &'static str = "EPT";

    fn table_entry(table: HostPhys) -> u64 {
        (table.0 & ADDRESS_MASK) | EPT_READ | EPT_WRITE | EPT_EXECUTE
    }

    fn leaf_entry(frame: HostPhys, size: PageSize, rights: Rights, memory: MemoryType) -> u64 {
        let mut entry = frame.0 & ADDRESS_MASK & !(size.bytes() - 1);
        if rights.contains(Rights::READ) {
            entry |= EPT_READ;
        }
        if rights.contains(Rights::WRITE) {
            entry |= EPT_WRITE;
        }
        if rights.contains(Rights::EXECUTE) {
            entry |= EPT_EXECUTE;
        }
        let memory_type = match memory {
            MemoryType::WriteBack => EPT_WRITE_BACK,
            MemoryType::Uncacheable => EPT_UNCACHEABLE,
        };
        entry |= memory_type << EPT_MEMORY_TYPE_SHIFT;
        if size != PageSize::Size4K {
            entry |= PAGE_SIZE_BIT;
        }
        entry
    }

    fn is_present(entry: u64) -> bool {
        entry & (EPT_READ | EPT_WRITE | EPT_EXECUTE) != 0
    }

    fn rights(entry: u64) -> Rights {
        let mut rights = Rights::empty();
        rights.set(Rights::READ, entry & EPT_READ != 0);
        rights.set(Rights::WRITE, entry & EPT_WRITE != 0);
        rights.set(Rights::EXECUTE, entry & EPT_EXECUTE != 0);
        rights
    }

    fn memory_type(entry: u64) -> MemoryType {
        if (entry >> EPT_MEMORY_TYPE_SHIFT) & 7 == EPT_WRITE_BACK {
            MemoryType::WriteBack
        } else {
            MemoryType::Uncacheable
        }
    }
}

impl Ept {
    /// The EPT pointer for a PML4 table at `root` (SDM Vol. 3C section 25.6.11): memory type
    /// WB (bits 2:0 = 6), page-walk length 4 (bits 5:3 = 3), accessed/dirty flags (bit 6) when
    /// asked for.
    pub const fn pointer(root: HostPhys, accessed_dirty: bool) -> u64 {
        (root.0 & ADDRESS_MASK) | EPT_WRITE_BACK | 3 << 3 | (accessed_dirty as u64) << 6
    }
}

/// AMD NPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt;

/// Present, read/write, user/supervisor: nested walks are user accesses, so U must be set at
/// every level (APM Vol. 2 section 15.25.5).
const NPT_PRESENT: u64 = 1 << 0;
const NPT_WRITE: u64 = 1 << 1;
const NPT_USER: u64 = 1 << 2;
/// PWT | PCD: PAT entry 3, uncacheable with the power-on PAT (APM Vol. 2 section 7.8.2).
const NPT_UNCACHEABLE: u64 = (1 << 3) | (1 << 4);
/// No-execute (bit 63; needs EFER.NXE in the host).
const NPT_NO_EXECUTE: u64 = 1 << 63;

impl EntryFormat for Npt {
    const NAME: &'static str = "NPT";

    fn table_entry(table: HostPhys) -> u64 {
        (table.0 & ADDRESS_MASK) | NPT_PRESENT | NPT_WRITE | NPT_USER
    }

    fn leaf_entry(frame: HostPhys, size: PageSize, rights: Rights, memory: MemoryType) -> u64 {
        let mut entry = (frame.0 & ADDRESS_MASK & !(size.bytes() - 1)) | NPT_PRESENT | NPT_USER;
        if rights.contains(Rights::WRITE) {
            entry |= NPT_WRITE;
        }
        if !rights.contains(Rights::EXECUTE) {
            entry |= NPT_NO_EXECUTE;
        }
        if memory == MemoryType::Uncacheable {
            entry |= NPT_UNCACHEABLE;
        }
        if size != PageSize::Size4K {
            entry |= PAGE_SIZE_BIT;
        }
        entry
    }

    fn is_present(entry: u64) -> bool {
        entry & NPT_PRESENT != 0
    }

    fn rights(entry: u64) -> Rights {
        let mut rights = Rights::READ;
        rights.set(Rights::WRITE, entry & NPT_WRITE != 0);
        rights.set(Rights::EXECUTE, entry & NPT_NO_EXECUTE == 0);
        rights
    }

    fn memory_type(entry: u64) -> MemoryType {
        if entry & NPT_UNCACHEABLE == NPT_UNCACHEABLE {
            MemoryType::Uncacheable
        } else {
            MemoryType::WriteBack
        }
    }
}

impl Npt {
    /// The N_CR3 value for a PML4 table at `root`.
    pub const fn nested_cr3(root: HostPhys) -> u64 {
        root.0 & ADDRESS_MASK
    }
}
