//! The bus numbers of segment 0's PCI-to-PCI bridges as the pci-server read them through ECAM
//! (PCI-to-PCI Bridge spec 1.2, 3.2.5.3-3.2.5.5), checked to form a tree, and walked like
//! config space: [`BridgeTable`] is the [`BusWalk`] that resolves DMAR bridge scopes and device
//! scope paths through bridges (VT-d spec rev 4.1, 8.3.1) once the report is complete.
//!
//! Checks, for every entry and every pair (each refusal leaves the table as it was):
//!
//! - the secondary bus lies above the bridge's own bus, the subordinate bus not below the
//!   secondary ([`BridgeTableError::InvalidRange`]);
//! - no bridge twice; a bridge sitting on a bus below another bridge has its whole range inside
//!   that bridge's range; bridges not below one another have disjoint ranges
//!   ([`BridgeTableError::Overlapping`], `BridgeBuses::consistent_with`): buses form a tree,
//!   as the pci-server's enumeration already required of them.

use core::fmt;

use super::BusWalk;
use iommu_api::{Bdf, BridgeBuses};

/// Most bridges kept: every bridge has its own secondary bus above bus 0, so a consistent
/// segment has at most 255.
pub const MAX_BRIDGES: usize = 256;

/// Why reported bridges were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeTableError {
    /// The bridge's secondary bus is not above its own bus, or its subordinate bus is below
    /// its secondary bus.
    InvalidRange(Bdf),
    /// Two entries name the same bridge, or their ranges overlap without one bridge sitting
    /// below the other.
    Overlapping {
        /// The entry already accepted (or earlier in the same batch).
        first: Bdf,
        /// The entry refused.
        second: Bdf,
    },
    /// More than [`MAX_BRIDGES`] bridges.
    TooMany,
}

impl fmt::Display for BridgeTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeTableError::InvalidRange(bridge) => {
                write!(
                    f,
                    "bridge {bridge}: bus range empty or not below the bridge"
                )
            }
            BridgeTableError::Overlapping { first, second } => {
                write!(
                    f,
                    "bridges {first} and {second}: repeated or overlapping bus ranges"
                )
            }
            BridgeTableError::TooMany => write!(f, "more than {MAX_BRIDGES} bridges"),
        }
    }
}

/// Every reported bridge with its buses (segment 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeTable {
    bridges: heapless::Vec<BridgeBuses, MAX_BRIDGES>,
}

impl BridgeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bridges, in the order reported.
    pub fn bridges(&self) -> &[BridgeBuses] {
        &self.bridges
    }

    /// Adds `more` after checking each entry against the table and the entries before it in
    /// `more` (see the module documentation). A refusal adds nothing.
    pub fn extend(&mut self, more: &[BridgeBuses]) -> Result<(), BridgeTableError> {
        if self.bridges.len().saturating_add(more.len()) > MAX_BRIDGES {
            return Err(BridgeTableError::TooMany);
        }
        for (index, entry) in more.iter().enumerate() {
            if !entry.is_valid() {
                return Err(BridgeTableError::InvalidRange(entry.bridge));
            }
            let earlier = more.get(..index).unwrap_or(&[]);
            if let Some(other) = self
                .bridges
                .iter()
                .chain(earlier)
                .find(|other| !other.consistent_with(entry))
            {
                return Err(BridgeTableError::Overlapping {
                    first: other.bridge,
                    second: entry.bridge,
                });
            }
        }
        for entry in more {
            self.bridges
                .push(*entry)
                .map_err(|_| BridgeTableError::TooMany)?;
        }
        Ok(())
    }

    fn find(&self, bridge: Bdf) -> Option<&BridgeBuses> {
        self.bridges.iter().find(|entry| entry.bridge == bridge)
    }
}

impl BusWalk for BridgeTable {
    fn secondary_bus(&mut self, bridge: Bdf) -> Option<u8> {
        self.find(bridge).map(|entry| entry.secondary)
    }

    fn bus_range(&mut self, bridge: Bdf) -> Option<(u8, u8)> {
        self.find(bridge)
            .map(|entry| (entry.secondary, entry.subordinate))
    }

    fn knows_every_bridge(&self) -> bool {
        true
    }
}
