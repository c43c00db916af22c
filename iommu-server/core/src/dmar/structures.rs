//! Remapping structures: DRHD (8.3), RMRR (8.4), ATSR (8.5), and the ones skipped.

use super::scope::{iterate_scopes, validate_scopes, DeviceScope};
use super::{u16_at, u64_at, DmarError};
use iommu_api::HostPhys;

const TYPE_DRHD: u16 = 0;
const TYPE_RMRR: u16 = 1;
const TYPE_ATSR: u16 = 2;
/// Minimum lengths and where scopes start: DRHD 16, RMRR 24, ATSR 8; RHSA is 20 bytes, ANDD
/// at least 8, other types at least their 4-byte header.
fn minimum_length(kind: u16) -> usize {
    match kind {
        TYPE_DRHD => 16,
        TYPE_RMRR => 24,
        TYPE_ATSR => 8,
        3 => 20,
        4 => 8,
        _ => 4,
    }
}

/// DMA remapping hardware unit definition (8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drhd<'a> {
    /// Flags: INCLUDE_PCI_ALL, bit 0.
    pub flags: u8,
    /// Register set size: 2^(size) 4 KiB pages (0 on older tables: one page).
    pub size: u8,
    /// PCI segment.
    pub segment: u16,
    /// Base of the unit's registers.
    pub register_base: HostPhys,
    scopes: &'a [u8],
}

impl<'a> Drhd<'a> {
    /// INCLUDE_PCI_ALL: the unit covers every device of the segment not claimed by another
    /// unit (its scopes then list only IOAPICs and HPETs).
    pub fn include_pci_all(&self) -> bool {
        self.flags & 1 != 0
    }
    /// The device scopes.
    pub fn scopes(&self) -> impl Iterator<Item = DeviceScope<'a>> + 'a {
        iterate_scopes(self.scopes)
    }
}

/// Reserved memory region reporting (8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rmrr<'a> {
    /// PCI segment.
    pub segment: u16,
    /// Region base.
    pub base: u64,
    /// Last byte of the region (inclusive).
    pub limit: u64,
    scopes: &'a [u8],
}

impl<'a> Rmrr<'a> {
    /// The region as (base, size): base 4 KiB aligned, limit + 1 4 KiB aligned, base <= limit.
    pub fn region(&self) -> Result<(HostPhys, u64), DmarError> {
        let end = self.limit.checked_add(1).ok_or(DmarError::InvalidRegion)?;
        if !self.base.is_multiple_of(4096) || !end.is_multiple_of(4096) || end <= self.base {
            return Err(DmarError::InvalidRegion);
        }
        Ok((HostPhys(self.base), end - self.base))
    }
    /// The devices using the region.
    pub fn scopes(&self) -> impl Iterator<Item = DeviceScope<'a>> + 'a {
        iterate_scopes(self.scopes)
    }
}

/// Root port ATS capability reporting (8.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Atsr<'a> {
    /// Flags: ALL_PORTS, bit 0.
    pub flags: u8,
    /// PCI segment.
    pub segment: u16,
    scopes: &'a [u8],
}

impl<'a> Atsr<'a> {
    /// ALL_PORTS: every root port of the segment supports ATS.
    pub fn all_ports(&self) -> bool {
        self.flags & 1 != 0
    }
    /// The root ports listed.
    pub fn scopes(&self) -> impl Iterator<Item = DeviceScope<'a>> + 'a {
        iterate_scopes(self.scopes)
    }
}

/// One remapping structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemappingStructure<'a> {
    /// Type 0.
    Drhd(Drhd<'a>),
    /// Type 1.
    Rmrr(Rmrr<'a>),
    /// Type 2.
    Atsr(Atsr<'a>),
    /// RHSA (3), ANDD (4), SATC (5), SIDP (6) or unknown: skipped.
    Skipped {
        /// The structure type.
        kind: u16,
    },
}

/// Checks every structure's length (and its scopes) in the body at table offset `base`.
pub(super) fn validate(body: &[u8], base: usize) -> Result<(), DmarError> {
    let mut offset = 0;
    while offset < body.len() {
        let error = DmarError::StructureLength {
            offset: base + offset,
        };
        let header = body.get(offset..offset + 4).ok_or(error)?;
        let kind = u16_at(header, 0);
        let length = usize::from(u16_at(header, 2));
        let structure = body
            .get(offset..offset.saturating_add(length))
            .ok_or(error)?;
        if length < minimum_length(kind) {
            return Err(error);
        }
        if matches!(kind, TYPE_DRHD | TYPE_RMRR | TYPE_ATSR) {
            let start = minimum_length(kind);
            validate_scopes(structure.get(start..).unwrap_or(&[]), base + offset + start)?;
        }
        offset += length;
    }
    Ok(())
}

/// Iterates over a validated body.
pub(super) fn iterate(body: &[u8]) -> impl Iterator<Item = RemappingStructure<'_>> {
    let mut rest = body;
    core::iter::from_fn(move || {
        let kind = u16_at(rest, 0);
        let length = usize::from(u16_at(rest, 2));
        if length < minimum_length(kind) {
            return None;
        }
        let (structure, tail) = rest.split_at_checked(length)?;
        rest = tail;
        let scopes = structure.get(minimum_length(kind)..).unwrap_or(&[]);
        Some(match kind {
            TYPE_DRHD => RemappingStructure::Drhd(Drhd {
                flags: structure.get(4).copied().unwrap_or(0),
                size: structure.get(5).copied().unwrap_or(0),
                segment: u16_at(structure, 6),
                register_base: HostPhys(u64_at(structure, 8)),
                scopes,
            }),
            TYPE_RMRR => RemappingStructure::Rmrr(Rmrr {
                segment: u16_at(structure, 6),
                base: u64_at(structure, 8),
                limit: u64_at(structure, 16),
                scopes,
            }),
            TYPE_ATSR => RemappingStructure::Atsr(Atsr {
                flags: structure.get(4).copied().unwrap_or(0),
                segment: u16_at(structure, 6),
                scopes,
            }),
            other => RemappingStructure::Skipped { kind: other },
        })
    })
}
