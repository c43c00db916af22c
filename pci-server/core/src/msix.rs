//! Where a function's MSI-X table lives (PCIe Base spec 6.0 section 7.7.2.2: Table Offset /
//! Table BIR; section 7.7.2.5: 16-byte entries). The server binary maps the table from its
//! device windows and reaches it through [`crate::msi::MsixTable`]; this module only decides,
//! from the capability and the BARs found at enumeration, which physical bytes those are.

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

/// Locates `function`'s MSI-X table in its BARs (a VF's BARs are those its PF's SR-IOV
/// capability gives it).
pub fn table_location(function: &FunctionInfo) -> Result<MsixTableLocation, MsixLocationError> {
    let bdf = function.bdf;
    let capability = function
        .capabilities
        .msix
        .ok_or(MsixLocationError::NoMsix(bdf))?;
    let bar_index = capability.table_bir;
    let bar = function
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
        .ok_or(MsixLocationError::BarNotMemory { bdf, bar_index })?;
    let bytes = u64::from(capability.table_size) * u64::from(msix::ENTRY_SIZE);
    let offset = capability.table_offset;
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
    let address = bar.address.checked_add(u64::from(offset)).ok_or(outside)?;
    Ok(MsixTableLocation {
        bdf,
        bar_index,
        address: HostPhys(address),
        bytes,
        entries: capability.table_size,
    })
}
