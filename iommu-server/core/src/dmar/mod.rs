//! ACPI DMAR table parsing (VT-d spec chapter 8).
//!
//! [`Dmar::parse`] checks the header, checksum and every structure and device scope length
//! before anything is handed out, so the accessors cannot fail on the table's shape and nothing
//! panics on garbage. DRHD (8.3), RMRR (8.4) and ATSR (8.5) are decoded; RHSA, ANDD, SATC,
//! SIDP and unknown types are skipped by their length. [`topology`] decides which unit
//! translates which device; [`bridges`] holds the bridges' bus numbers the pci-server reports.

pub mod bridges;
mod scope;
mod structures;
pub mod topology;

pub use bridges::{BridgeTable, BridgeTableError};
pub use scope::{BusWalk, DeviceScope, NoBusWalk, ScopeKind};
pub use structures::{Atsr, Drhd, RemappingStructure, Rmrr};
pub use topology::{Topology, TopologyError};

use core::fmt;

/// Why a DMAR table (or a device scope path in it) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarError {
    /// Shorter than the 48-byte DMAR header.
    TooShort,
    /// The signature is not "DMAR".
    BadSignature,
    /// The header's length is below 48 or beyond the bytes given.
    LengthMismatch,
    /// The bytes do not sum to zero.
    BadChecksum,
    /// A remapping structure's length is too small for its type or runs past the table.
    StructureLength {
        /// Byte offset of the structure in the table.
        offset: usize,
    },
    /// A device scope's length is malformed or runs past its structure.
    ScopeLength {
        /// Byte offset of the scope in the table.
        offset: usize,
    },
    /// A path element names device >= 32 or function >= 8.
    InvalidPath,
    /// A bridge on a scope's path has no secondary bus (the bus walk found nothing).
    PathNotFound,
    /// An RMRR's base/limit are unaligned or inverted.
    InvalidRegion,
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmarError::TooShort => f.write_str("DMAR table shorter than its 48-byte header"),
            DmarError::BadSignature => f.write_str("table signature is not DMAR"),
            DmarError::LengthMismatch => f.write_str("DMAR header length does not match the table"),
            DmarError::BadChecksum => f.write_str("DMAR checksum does not sum to zero"),
            DmarError::StructureLength { offset } => {
                write!(f, "remapping structure at offset {offset} has a bad length")
            }
            DmarError::ScopeLength { offset } => {
                write!(f, "device scope at offset {offset} has a bad length")
            }
            DmarError::InvalidPath => {
                f.write_str("device scope path names an invalid device or function")
            }
            DmarError::PathNotFound => {
                f.write_str("device scope path crosses a bridge with no secondary bus")
            }
            DmarError::InvalidRegion => f.write_str("RMRR base/limit unaligned or inverted"),
        }
    }
}

/// Size of the DMAR header (ACPI header 36 bytes + HAW, flags, 10 reserved).
pub const HEADER_SIZE: usize = 48;

/// DMAR flags (8.1): INTR_REMAP, bit 0.
pub const FLAG_INTERRUPT_REMAPPING: u8 = 1 << 0;
/// DMAR flags: X2APIC_OPT_OUT, bit 1.
pub const FLAG_X2APIC_OPT_OUT: u8 = 1 << 1;
/// DMAR flags: DMA_CTRL_PLATFORM_OPT_IN_FLAG, bit 2.
pub const FLAG_DMA_CONTROL_OPT_IN: u8 = 1 << 2;

/// A validated DMAR table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dmar<'a> {
    /// Host address width (the table stores width - 1).
    pub host_address_width: u8,
    /// Flags (INTR_REMAP, X2APIC_OPT_OUT, DMA_CTRL_PLATFORM_OPT_IN).
    pub flags: u8,
    body: &'a [u8],
}

impl<'a> Dmar<'a> {
    /// Validates `bytes` (the whole table as read from ACPI).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DmarError> {
        let header = bytes.get(..HEADER_SIZE).ok_or(DmarError::TooShort)?;
        if header.get(..4) != Some(b"DMAR".as_slice()) {
            return Err(DmarError::BadSignature);
        }
        let length = header
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(DmarError::TooShort)?;
        let length = usize::try_from(length).map_err(|_| DmarError::LengthMismatch)?;
        let table = bytes
            .get(..length)
            .filter(|_| length >= HEADER_SIZE)
            .ok_or(DmarError::LengthMismatch)?;
        if table.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte)) != 0 {
            return Err(DmarError::BadChecksum);
        }
        let body = table.get(HEADER_SIZE..).ok_or(DmarError::LengthMismatch)?;
        structures::validate(body, HEADER_SIZE)?;
        Ok(Self {
            host_address_width: header.get(36).copied().unwrap_or(0).saturating_add(1),
            flags: header.get(37).copied().unwrap_or(0),
            body,
        })
    }

    /// Whether the platform supports interrupt remapping (flag INTR_REMAP).
    pub fn interrupt_remapping(&self) -> bool {
        self.flags & FLAG_INTERRUPT_REMAPPING != 0
    }

    /// Every remapping structure, in table order.
    pub fn structures(&self) -> impl Iterator<Item = RemappingStructure<'a>> + 'a {
        structures::iterate(self.body)
    }

    /// The DRHD units.
    pub fn units(&self) -> impl Iterator<Item = Drhd<'a>> + 'a {
        self.structures().filter_map(|structure| match structure {
            RemappingStructure::Drhd(drhd) => Some(drhd),
            _ => None,
        })
    }

    /// The RMRR regions.
    pub fn reserved_regions(&self) -> impl Iterator<Item = Rmrr<'a>> + 'a {
        self.structures().filter_map(|structure| match structure {
            RemappingStructure::Rmrr(rmrr) => Some(rmrr),
            _ => None,
        })
    }
}

/// Reads a little-endian u16 at `offset` (0 if out of range: only used after validation).
fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    bytes
        .get(offset..offset + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

/// Reads a little-endian u64 at `offset` (0 if out of range: only used after validation).
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}
