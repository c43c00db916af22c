//! Device scope entries (VT-d spec 8.3.1) and resolving their paths to a requester id.

use super::DmarError;
use iommu_api::Bdf;

/// Scope entry header size: type, length, flags, reserved, enumeration id, start bus.
pub(super) const SCOPE_HEADER: usize = 6;

/// What a device scope names (8.3.1, "Type").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// 01h: a PCI endpoint.
    Endpoint,
    /// 02h: a PCI-PCI bridge and everything below it.
    Bridge,
    /// 03h: an I/OxAPIC (enumeration id = IOAPIC id).
    IoApic,
    /// 04h: an HPET (MSI capable).
    Hpet,
    /// 05h: an ACPI namespace device.
    AcpiNamespace,
    /// Any other (reserved) type.
    Reserved(u8),
}

/// Reads bridges' bus numbers (the pci-server or early boot code walks config space).
pub trait BusWalk {
    /// Secondary bus number of the bridge at `bridge`, if it is a bridge.
    fn secondary_bus(&mut self, bridge: Bdf) -> Option<u8>;

    /// Secondary ..= subordinate bus of the bridge at `bridge` (PCI-to-PCI Bridge spec 1.2,
    /// 3.2.5.3-3.2.5.5), if it is a bridge and the walk can read both; `None` by default.
    fn bus_range(&mut self, bridge: Bdf) -> Option<(u8, u8)> {
        let _ = bridge;
        None
    }

    /// Whether the walk knows every bridge of segment 0 (the pci-server enumerated them all):
    /// then a function it reports no bus numbers for is no bridge, and a scope path through it
    /// names no device. `false` by default (nothing can be concluded from a missing answer).
    fn knows_every_bridge(&self) -> bool {
        false
    }
}

/// A walk that reads nothing: paths through bridges do not resolve, bridge scopes have no
/// known bus range.
pub struct NoBusWalk;

impl BusWalk for NoBusWalk {
    fn secondary_bus(&mut self, _bridge: Bdf) -> Option<u8> {
        None
    }
}

/// One device scope entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceScope<'a> {
    /// Type.
    pub kind: ScopeKind,
    /// Enumeration id (IOAPIC id, HPET number, ACPI device number).
    pub enumeration_id: u8,
    /// Bus of the first path element.
    pub start_bus: u8,
    path: &'a [u8],
}

impl<'a> DeviceScope<'a> {
    pub(super) fn from_bytes(bytes: &'a [u8]) -> Self {
        let kind = match bytes.first().copied().unwrap_or(0) {
            1 => ScopeKind::Endpoint,
            2 => ScopeKind::Bridge,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::AcpiNamespace,
            other => ScopeKind::Reserved(other),
        };
        Self {
            kind,
            enumeration_id: bytes.get(4).copied().unwrap_or(0),
            start_bus: bytes.get(5).copied().unwrap_or(0),
            path: bytes.get(SCOPE_HEADER..).unwrap_or(&[]),
        }
    }

    /// The (device, function) pairs of the path, from the start bus downwards.
    pub fn path(&self) -> impl Iterator<Item = (u8, u8)> + 'a {
        self.path.chunks_exact(2).map(|pair| {
            (
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            )
        })
    }

    /// The requester id the path ends at: each element but the last is a bridge whose
    /// secondary bus `walk` reports (8.3.1.1).
    pub fn resolve(&self, walk: &mut impl BusWalk) -> Result<Bdf, DmarError> {
        let mut bus = self.start_bus;
        let mut found = None;
        for (device, function) in self.path() {
            if let Some(bridge) = found {
                bus = walk.secondary_bus(bridge).ok_or(DmarError::PathNotFound)?;
            }
            found = Some(Bdf::new(bus, device, function).map_err(|_| DmarError::InvalidPath)?);
        }
        found.ok_or(DmarError::InvalidPath)
    }
}

/// Checks every scope in `bytes` (the tail of a structure at table offset `base`).
pub(super) fn validate_scopes(bytes: &[u8], base: usize) -> Result<(), DmarError> {
    let mut offset = 0;
    while offset < bytes.len() {
        let length = usize::from(
            bytes
                .get(offset + 1)
                .copied()
                .ok_or(DmarError::ScopeLength {
                    offset: base + offset,
                })?,
        );
        let fits = offset
            .checked_add(length)
            .is_some_and(|end| end <= bytes.len());
        if length < SCOPE_HEADER + 2 || !(length - SCOPE_HEADER).is_multiple_of(2) || !fits {
            return Err(DmarError::ScopeLength {
                offset: base + offset,
            });
        }
        offset += length;
    }
    Ok(())
}

/// Iterates over validated scopes.
pub(super) fn iterate_scopes(bytes: &[u8]) -> impl Iterator<Item = DeviceScope<'_>> {
    let mut rest = bytes;
    core::iter::from_fn(move || {
        let length = usize::from(*rest.get(1)?);
        if length < SCOPE_HEADER + 2 {
            return None;
        }
        let (scope, tail) = rest.split_at_checked(length)?;
        rest = tail;
        Some(DeviceScope::from_bytes(scope))
    })
}
