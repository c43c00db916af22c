//! Nested page tables: EPT (SDM Vol. 3C section 29.3) and AMD NPT (APM Vol. 2 section 15.25),
//! one 4-level builder generic over the entry format ([`EntryFormat`]), the memory the tables
//! live in ([`TableMemory`]) and where table frames come from ([`FrameSource`]).
//!
//! - `map` chooses 1 GiB / 2 MiB / 4 KiB pages wherever both addresses are aligned and the
//!   configuration allows, refuses overlaps and addresses beyond the guest-physical width, and
//!   allocates every table it needs before writing anything: a refused or failed map changes
//!   nothing.
//! - `unmap` clears the leaves and detaches tables that became empty, and returns a
//!   [`PendingFlush`]: the caller flushes (INVEPT / ASID) and only then hands it back to
//!   `finish_flush`, which frees the detached tables. The hardware may cache paging-structure
//!   entries that point at them until the flush.
//! - `translate` walks the tables (tests and diagnostics).
mod format;
mod table;

#[cfg(test)]
mod tests;

use core::fmt;

use bitflags::bitflags;

pub use format::{EntryFormat, Ept, Npt};
pub use table::{tables_bound, MapReport, NestedPageTable, PendingFlush, Translation};

use crate::address::{GuestPhys, HostPhys};

/// EPT tables (Intel).
pub type EptTables = NestedPageTable<Ept>;
/// NPT tables (AMD).
pub type NptTables = NestedPageTable<Npt>;

/// Physical memory holding the tables: the kernel reads and writes 64-bit entries through its
/// direct map; tests use a map.
pub trait TableMemory {
    /// The 64-bit word at `address` (8-byte aligned, inside a table frame).
    fn read(&self, address: HostPhys) -> u64;
    /// Writes the 64-bit word at `address`.
    fn write(&mut self, address: HostPhys, value: u64);
}

/// Where table frames come from.
pub trait FrameSource {
    /// A zero-filled 4 KiB frame, or `None` when out of memory.
    fn allocate_zeroed(&mut self) -> Option<HostPhys>;
    /// Returns a frame (it is zero-filled again when it comes back from the builder).
    fn free(&mut self, frame: HostPhys);
}

bitflags! {
    /// Access rights of a mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u8 {
        /// Data reads.
        const READ = 1 << 0;
        /// Data writes.
        const WRITE = 1 << 1;
        /// Instruction fetches.
        const EXECUTE = 1 << 2;
    }
}

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Write-back: guest RAM.
    WriteBack,
    /// Uncacheable: device MMIO.
    Uncacheable,
}

/// Page sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
    /// 1 GiB.
    Size1G,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }
    /// Paging level whose entries map pages of this size (1 = PTE, 2 = PDE, 3 = PDPTE).
    pub(crate) const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

/// Fixed parameters of one VM's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Guest-physical address width in bits, 32..=48 (4-level tables).
    pub guest_address_bits: u8,
    /// Largest page the builder may use (1 GiB only where the CPU supports it: EPT capability
    /// bit 17, CPUID Fn8000_0001_EDX bit 26 for NPT).
    pub largest_page: PageSize,
}

/// Why a table operation was refused; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Guest-address width outside 32..=48.
    UnsupportedAddressWidth(u8),
    /// An address or size not 4 KiB aligned.
    Misaligned {
        /// Guest-physical start.
        gpa: GuestPhys,
        /// Host-physical start (0 for unmap).
        hpa: HostPhys,
        /// Length.
        size: u64,
    },
    /// A zero-length request.
    Empty,
    /// The range ends beyond the guest-physical width.
    GuestAddressOutOfRange {
        /// Guest-physical start.
        gpa: GuestPhys,
        /// Length.
        size: u64,
    },
    /// The host range ends beyond 2^52.
    HostAddressOutOfRange {
        /// Host-physical start.
        hpa: HostPhys,
        /// Length.
        size: u64,
    },
    /// Rights the format cannot express: both formats need READ (EPT treats write-only as a
    /// misconfiguration; NPT has no non-readable present page).
    UnsupportedRights(Rights),
    /// Part of the range is already mapped, starting at this page.
    AlreadyMapped(GuestPhys),
    /// Unmapping would split this large page.
    PartialLargePage {
        /// Where the page starts.
        page: GuestPhys,
        /// Its size.
        size: PageSize,
    },
    /// The frame source ran out while `needed` tables were being reserved.
    OutOfFrames {
        /// Tables the request needs.
        needed: u64,
    },
    /// A present entry the walk did not expect (tables corrupted outside this builder).
    Inconsistent(GuestPhys),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::UnsupportedAddressWidth(bits) => {
                write!(f, "guest-physical width of {bits} bits is outside 32..=48")
            }
            MapError::Misaligned { gpa, hpa, size } => write!(
                f,
                "GPA {:#x}, HPA {:#x} or size {size:#x} is not 4 KiB aligned",
                gpa.0, hpa.0
            ),
            MapError::Empty => write!(f, "zero-length range"),
            MapError::GuestAddressOutOfRange { gpa, size } => write!(
                f,
                "guest range {:#x}+{size:#x} exceeds the guest-physical width",
                gpa.0
            ),
            MapError::HostAddressOutOfRange { hpa, size } => {
                write!(f, "host range {:#x}+{size:#x} exceeds 2^52", hpa.0)
            }
            MapError::UnsupportedRights(rights) => {
                write!(
                    f,
                    "rights {rights:?} cannot be expressed (READ is required)"
                )
            }
            MapError::AlreadyMapped(gpa) => write!(f, "GPA {:#x} is already mapped", gpa.0),
            MapError::PartialLargePage { page, size } => write!(
                f,
                "unmap would split the {size:?} page at GPA {:#x}",
                page.0
            ),
            MapError::OutOfFrames { needed } => {
                write!(f, "out of frames reserving {needed} page tables")
            }
            MapError::Inconsistent(gpa) => {
                write!(f, "page tables are inconsistent at GPA {:#x}", gpa.0)
            }
        }
    }
}
