//! [`crate::Operation::ReportBridges`]: the pci-server tells the iommu-server each PCI-to-PCI
//! bridge of segment 0 with its secondary and subordinate bus numbers (PCI-to-PCI Bridge spec
//! 1.2, 3.2.5.3-3.2.5.5), read through ECAM at enumeration. The iommu-server has no config
//! space of its own: without these numbers it cannot tell which buses a DMAR bridge scope covers
//! (VT-d spec rev 4.1, 8.3.1) or walk a device scope path through bridges.
//!
//! A report is one or more parts, numbered from 0, of at most [`BRIDGES_PER_REPORT`] bridges
//! each; the last part carries [`REPORT_LAST_PART`]. Decoding checks each part's shape and each
//! entry on its own (secondary bus above the bridge's bus, subordinate not below secondary);
//! the server checks the report as a whole (no bridge twice, ranges nested as a tree).

use crate::{Bdf, IommuError};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most bridges one part carries (4 + 4 x 120 = 484 bytes, inside one IPC message's 512).
pub const BRIDGES_PER_REPORT: usize = 120;

/// `flags` bit 0: this part is the report's last; the server then re-routes.
pub const REPORT_LAST_PART: u8 = 1 << 0;

/// One bridge and the buses below it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct BridgeBuses {
    /// The bridge's requester id.
    pub bridge: Bdf,
    /// Secondary bus (directly below the bridge); above the bridge's own bus.
    pub secondary: u8,
    /// Subordinate bus (highest bus below the bridge); not below `secondary`.
    pub subordinate: u8,
}

impl BridgeBuses {
    /// Whether `bus` lies below the bridge.
    pub fn covers(&self, bus: u8) -> bool {
        (self.secondary..=self.subordinate).contains(&bus)
    }

    /// Whether the range is well formed: secondary above the bridge's own bus, subordinate
    /// not below secondary.
    pub fn is_valid(&self) -> bool {
        self.secondary > self.bridge.bus() && self.subordinate >= self.secondary
    }

    /// Whether this entry and `other` can both be true of one bus tree: different bridges; a
    /// bridge on a bus below the other has its whole range inside the other's; bridges not
    /// below one another forward disjoint ranges. Both sides check reports with it (the
    /// pci-server before sending, the iommu-server on receipt).
    pub fn consistent_with(&self, other: &BridgeBuses) -> bool {
        let inside = |inner: &BridgeBuses, outer: &BridgeBuses| {
            inner.secondary >= outer.secondary && inner.subordinate <= outer.subordinate
        };
        if self.bridge == other.bridge {
            return false;
        }
        if self.covers(other.bridge.bus()) {
            return inside(other, self);
        }
        if other.covers(self.bridge.bus()) {
            return inside(self, other);
        }
        self.subordinate < other.secondary || other.subordinate < self.secondary
    }
}

/// [`crate::Operation::ReportBridges`]: one part of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReportBridgesRequest {
    /// The part's number: 0 for the first, then one more for each.
    pub part: u16,
    /// How many entries of `bridges` are used (at most [`BRIDGES_PER_REPORT`]).
    pub count: u8,
    /// [`REPORT_LAST_PART`] or 0; other bits are reserved (zero).
    pub flags: u8,
    /// The bridges; unused entries must be zero.
    pub bridges: [BridgeBuses; BRIDGES_PER_REPORT],
}

impl Default for ReportBridgesRequest {
    fn default() -> Self {
        ReportBridgesRequest {
            part: 0,
            count: 0,
            flags: 0,
            bridges: [BridgeBuses::default(); BRIDGES_PER_REPORT],
        }
    }
}

/// A decoded part of a bridge report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeReport {
    /// The part's number.
    pub part: u16,
    /// Whether it is the last part.
    pub last: bool,
    count: usize,
    bridges: [BridgeBuses; BRIDGES_PER_REPORT],
}

impl BridgeReport {
    /// The bridges of this part.
    pub fn bridges(&self) -> &[BridgeBuses] {
        self.bridges.get(..self.count).unwrap_or(&[])
    }

    /// Checks a part's shape: `count` in range, reserved flags and unused entries zero
    /// (`InvalidField`), every entry's secondary bus above its bridge's bus and its
    /// subordinate bus not below the secondary (`InvalidBusRange`).
    pub fn decode(message: &ReportBridgesRequest) -> Result<BridgeReport, IommuError> {
        let count = usize::from(message.count);
        if count > BRIDGES_PER_REPORT || message.flags & !REPORT_LAST_PART != 0 {
            return Err(IommuError::InvalidField);
        }
        let unused = message.bridges.get(count..).unwrap_or(&[]);
        if unused.iter().any(|entry| *entry != BridgeBuses::default()) {
            return Err(IommuError::InvalidField);
        }
        let used = message.bridges.get(..count).unwrap_or(&[]);
        if used.iter().any(|entry| {
            entry.secondary <= entry.bridge.bus() || entry.subordinate < entry.secondary
        }) {
            return Err(IommuError::InvalidBusRange);
        }
        Ok(BridgeReport {
            part: message.part,
            last: message.flags & REPORT_LAST_PART != 0,
            count,
            bridges: message.bridges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Operation, Request};
    use proptest::prelude::*;

    fn entry(bus: u8, device: u8, secondary: u8, subordinate: u8) -> BridgeBuses {
        BridgeBuses {
            bridge: Bdf::new(bus, device, 0).unwrap(),
            secondary,
            subordinate,
        }
    }

    fn decode(message: &ReportBridgesRequest) -> Result<Request, IommuError> {
        Request::decode(Operation::ReportBridges as u32, message.as_bytes())
    }

    #[test]
    fn a_part_decodes_with_its_bridges_and_last_flag() {
        let mut message = ReportBridgesRequest {
            part: 2,
            count: 2,
            flags: REPORT_LAST_PART,
            ..Default::default()
        };
        message.bridges[0] = entry(0, 1, 1, 4);
        message.bridges[1] = entry(1, 0, 2, 2);
        let Ok(Request::ReportBridges(report)) = decode(&message) else {
            panic!("not decoded");
        };
        assert_eq!(report.part, 2);
        assert!(report.last);
        assert_eq!(report.bridges(), &[entry(0, 1, 1, 4), entry(1, 0, 2, 2)]);
        assert_eq!(core::mem::size_of::<ReportBridgesRequest>(), 484);
    }

    #[test]
    fn malformed_parts_are_refused_by_name() {
        let mut message = ReportBridgesRequest {
            count: 1,
            ..Default::default()
        };
        message.bridges[0] = entry(0, 1, 1, 4);
        assert!(decode(&message).is_ok());
        let refused = |change: fn(&mut ReportBridgesRequest), error| {
            let mut bad = message;
            change(&mut bad);
            assert_eq!(decode(&bad), Err(error));
        };
        refused(|m| m.count = 121, IommuError::InvalidField);
        refused(|m| m.flags = 2, IommuError::InvalidField);
        refused(
            |m| m.bridges[1] = entry(0, 2, 5, 5),
            IommuError::InvalidField,
        );
        refused(|m| m.bridges[0].secondary = 0, IommuError::InvalidBusRange);
        refused(
            |m| m.bridges[0] = entry(3, 0, 3, 4),
            IommuError::InvalidBusRange,
        );
        refused(
            |m| m.bridges[0] = entry(0, 1, 5, 4),
            IommuError::InvalidBusRange,
        );
        assert_eq!(
            Request::decode(Operation::ReportBridges as u32, &message.as_bytes()[..480]),
            Err(IommuError::MalformedMessage)
        );
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..=600)) {
            let _ = Request::decode(Operation::ReportBridges as u32, &bytes);
        }

        #[test]
        fn accepted_entries_are_ranges_below_their_bridge(
            entries in proptest::collection::vec(any::<(u16, u8, u8)>(), 0..=BRIDGES_PER_REPORT),
            flags in 0u8..4,
            part in any::<u16>(),
        ) {
            let mut message = ReportBridgesRequest {
                part,
                count: entries.len() as u8,
                flags,
                ..Default::default()
            };
            for (slot, (bridge, secondary, subordinate)) in message.bridges.iter_mut().zip(&entries) {
                *slot = BridgeBuses { bridge: Bdf(*bridge), secondary: *secondary, subordinate: *subordinate };
            }
            match decode(&message) {
                Ok(Request::ReportBridges(report)) => {
                    prop_assert_eq!(report.part, part);
                    prop_assert_eq!(report.last, flags == REPORT_LAST_PART);
                    prop_assert_eq!(report.bridges(), &message.bridges[..entries.len()]);
                    for entry in report.bridges() {
                        prop_assert!(entry.secondary > entry.bridge.bus());
                        prop_assert!(entry.subordinate >= entry.secondary);
                    }
                }
                Ok(other) => prop_assert!(false, "decoded as {:?}", other),
                Err(error) => prop_assert!(
                    error == IommuError::InvalidField && flags > 1
                        || error == IommuError::InvalidBusRange
                ),
            }
        }
    }
}
