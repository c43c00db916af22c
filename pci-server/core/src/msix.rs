//! Where a function's MSI-X table and Pending Bit Array live (PCIe Base spec 6.0 section
//! 7.7.2.2: Table Offset / Table BIR; 7.7.2.3: PBA Offset / PBA BIR; 7.7.2.5: 16-byte entries;
//! 7.7.2.6: one pending bit per entry in 64-bit words). The server binary maps them from its
//! device windows and reaches the table through [`crate::msi::MsixTable`]; this module only
//! decides, from the capability and the BARs found at enumeration, which physical bytes those
//! are, and which pages of a BAR they occupy (never handed to an owner: section 7.7.2 keeps
//! other registers out of their naturally aligned 4 KiB ranges).

use core::fmt;

use crate::bar::BarKind;
use crate::ecam::HostPhys;
use crate::function::FunctionInfo;
use crate::registers::msix;
use pci_api::{Bdf, PciError};

/// The physical place of one function's MSI-X table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixTableLocation {
    /// The function.
    pub bdf: Bdf,
    /// Register index of the BAR holding the table (Table BIR).
    pub bar_index: u8,
    /// Host-physical address of entry 0 (BAR address + Table Offset).
    pub address: HostPhys,
    /// Bytes of the table: entries x 16.
    pub bytes: u64,
    /// Number of entries (Table Size + 1).
    pub entries: u16,
}

/// The physical place of one function's Pending Bit Array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixPbaLocation {
    /// Register index of the BAR holding the PBA (PBA BIR).
    pub bar_index: u8,
    /// Host-physical address of the first QWORD (BAR address + PBA Offset).
    pub address: HostPhys,
    /// Bytes of the PBA: one bit per entry, whole QWORDs (section 7.7.2.6).
    pub bytes: u64,
}

/// The page size the MSI-X structures are kept apart from other registers by (section 7.7.2).
pub const MSIX_PAGE: u64 = 4096;

/// Why a function's MSI-X table cannot be located.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixLocationError {
    /// The function has no MSI-X capability.
    NoMsix(Bdf),
    /// Table BIR names no implemented memory BAR (absent, I/O, or never given an address).
    BarNotMemory {
        /// The function.
        bdf: Bdf,
        /// The Table BIR.
        bar_index: u8,
    },
    /// Table Offset + table size runs past the end of the BAR.
    TableOutsideBar {
        /// The function.
        bdf: Bdf,
        /// Table Offset.
        offset: u32,
        /// Table bytes.
        bytes: u64,
        /// BAR size.
        bar_size: u64,
    },
}

impl fmt::Display for MsixLocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsixLocationError::NoMsix(bdf) => write!(f, "{bdf}: no MSI-X capability"),
            MsixLocationError::BarNotMemory { bdf, bar_index } => write!(
                f,
                "{bdf}: MSI-X Table BIR {bar_index} is not an implemented memory BAR"
            ),
            MsixLocationError::TableOutsideBar {
                bdf,
                offset,
                bytes,
                bar_size,
            } => write!(
                f,
                "{bdf}: MSI-X table of {bytes} bytes at offset {offset:#x} does not fit in its \
                 BAR of {bar_size:#x} bytes"
            ),
        }
    }
}

impl From<MsixLocationError> for PciError {
    fn from(error: MsixLocationError) -> PciError {
        match error {
            MsixLocationError::NoMsix(_) => PciError::NoMsixCapability,
            MsixLocationError::BarNotMemory { .. } | MsixLocationError::TableOutsideBar { .. } => {
                PciError::MsixTableUnavailable
            }
        }
    }
}

/// The implemented memory BAR with register index `bar_index`, or `None`.
fn memory_bar(function: &FunctionInfo, bar_index: u8) -> Option<&crate::bar::Bar> {
    function
        .bars
        .bars
        .iter()
        .find(|bar| bar.index == bar_index)
        .filter(|bar| {
            matches!(
                bar.kind,
                BarKind::Memory32 | BarKind::Memory64 | BarKind::MemoryBelow1M
            ) && bar.size > 0
                && bar.address != 0
        })
}

/// The host-physical address of `bytes` at `offset` in `function`'s memory BAR `bar_index`,
/// checked to lie inside it (where the MSI-X table and PBA must be: PCIe 6.0 7.7.2.4/7.7.2.5).
fn place_in_bar(
    function: &FunctionInfo,
    bar_index: u8,
    offset: u32,
    bytes: u64,
) -> Result<u64, MsixLocationError> {
    let bdf = function.bdf;
    let bar = memory_bar(function, bar_index)
        .ok_or(MsixLocationError::BarNotMemory { bdf, bar_index })?;
    let outside = MsixLocationError::TableOutsideBar {
        bdf,
        offset,
        bytes,
        bar_size: bar.size,
    };
    let end = u64::from(offset).checked_add(bytes).ok_or(outside)?;
    if end > bar.size {
        return Err(outside);
    }
    bar.address.checked_add(u64::from(offset)).ok_or(outside)
}

/// Locates `function`'s Pending Bit Array in its BARs (PBA BIR must name an implemented
/// memory BAR and the array must fit in it).
pub fn pba_location(function: &FunctionInfo) -> Result<MsixPbaLocation, MsixLocationError> {
    let bdf = function.bdf;
    let capability = function
        .capabilities
        .msix
        .ok_or(MsixLocationError::NoMsix(bdf))?;
    let bar_index = capability.pba_bir;
    let bytes = u64::from(capability.table_size).div_ceil(64) * 8;
    let address = place_in_bar(function, bar_index, capability.pba_offset, bytes)?;
    Ok(MsixPbaLocation {
        bar_index,
        address: HostPhys(address),
        bytes,
    })
}

/// The physical page ranges (first page, end page exclusive) of BAR `bar_index` that hold
/// `function`'s MSI-X table or PBA: at most two, in address order, merged when they touch.
/// A structure that cannot be located holds no page (and cannot be mapped by the server
/// either).
pub fn msix_pages(function: &FunctionInfo, bar_index: u8) -> heapless::Vec<(u64, u64), 2> {
    let mut ranges: heapless::Vec<(u64, u64), 2> = heapless::Vec::new();
    let table = table_location(function)
        .ok()
        .map(|table| (table.bar_index, table.address.0, table.bytes));
    let pba = pba_location(function)
        .ok()
        .map(|pba| (pba.bar_index, pba.address.0, pba.bytes));
    for (index, address, bytes) in [table, pba].into_iter().flatten() {
        if index != bar_index {
            continue;
        }
        let first = address - address % MSIX_PAGE;
        let Some(end) = address
            .checked_add(bytes)
            .and_then(|end| end.checked_next_multiple_of(MSIX_PAGE))
        else {
            continue;
        };
        let _ = ranges.push((first, end));
    }
    if let [a, b] = ranges.as_slice() {
        let (low, high) = if a.0 <= b.0 { (*a, *b) } else { (*b, *a) };
        ranges.clear();
        if low.1 >= high.0 {
            let _ = ranges.push((low.0, low.1.max(high.1)));
        } else {
            let _ = ranges.push(low);
            let _ = ranges.push(high);
        }
    }
    ranges
}

/// Locates `function`'s MSI-X table in its BARs (a VF's BARs are those its PF's SR-IOV
/// capability gives it).
pub fn table_location(function: &FunctionInfo) -> Result<MsixTableLocation, MsixLocationError> {
    let bdf = function.bdf;
    let capability = function
        .capabilities
        .msix
        .ok_or(MsixLocationError::NoMsix(bdf))?;
    let bar_index = capability.table_bir;
    let bytes = u64::from(capability.table_size) * u64::from(msix::ENTRY_SIZE);
    let address = place_in_bar(function, bar_index, capability.table_offset, bytes)?;
    Ok(MsixTableLocation {
        bdf,
        bar_index,
        address: HostPhys(address),
        bytes,
        entries: capability.table_size,
    })
}
