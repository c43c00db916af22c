//! Which DRHD unit translates which device (VT-d spec rev 4.1, 8.3 and 8.3.1), built once from
//! the DMAR and checked for contradictions before any unit is touched.
//!
//! Routing rules for a requester id on PCI segment 0 (the only segment the servers handle):
//!
//! 1. a unit whose device scope lists the requester id as an endpoint or a bridge owns it;
//! 2. a unit with a bridge scope whose bus range (secondary ..= subordinate, from the
//!    [`BusWalk`]) holds the requester id's bus owns it;
//! 3. otherwise the segment's INCLUDE_PCI_ALL unit owns it;
//! 4. a segment with exactly one unit and no INCLUDE_PCI_ALL flag (QEMU's q35 table lists its
//!    bus-0 devices and bridges explicitly) routes every device to that unit: no other unit
//!    exists that could translate it.
//!
//! A bridge scope whose bus range the walk could not read (the iommu-server has no config
//! space until the pci-server reports the bridges, [`super::BridgeTable`]) may cover any bus
//! other than the bridge's own: a device on such a bus that matched nothing explicitly is
//! refused as [`TopologyError::Ambiguous`] rather than guessed into the catch-all unit. A walk
//! that knows every bridge ([`BusWalk::knows_every_bridge`]) settles this: a bridge scope
//! naming a function with no bus numbers claims that function alone, and a path through a
//! function that is no bridge names no device (counted in [`UnitScope::absent`]). Walks apply
//! to segment 0 only (the segment the pci-server enumerates); other segments' paths through
//! bridges stay unresolved. IOAPIC and HPET scopes are recorded per unit with their
//! enumeration id and source-id requester id, for remapping their interrupts through the unit
//! that covers them.

use core::fmt;

use super::{BusWalk, Dmar, DmarError, Drhd, NoBusWalk, ScopeKind};
use iommu_api::{Bdf, HostPhys};

/// Most DRHD units the server tracks.
pub const MAX_UNITS: usize = 8;
/// Most endpoint and bridge scope entries per unit.
pub const MAX_UNIT_SCOPE: usize = 64;
/// Most IOAPIC or HPET scope entries per unit.
pub const MAX_INTERRUPT_SOURCES: usize = 8;

/// Why the DMAR's units cannot be used as they are described, or why a device has no unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The DMAR lists no DRHD unit.
    NoUnits,
    /// The DMAR lists more DRHD units than [`MAX_UNITS`].
    TooManyUnits,
    /// A unit's device scope has more entries than [`MAX_UNIT_SCOPE`] (or interrupt sources
    /// than [`MAX_INTERRUPT_SOURCES`]).
    ScopeTooLarge {
        /// The unit (index in DMAR order).
        unit: usize,
    },
    /// Two units claim the same device or overlapping bus ranges.
    Overlap {
        /// The first unit (DMAR order).
        first: usize,
        /// The second unit.
        second: usize,
        /// A requester id both claim (for a bus overlap: function 0 of the first shared bus).
        device: Bdf,
    },
    /// Two units of one segment carry INCLUDE_PCI_ALL.
    TwoCatchAllUnits {
        /// The segment.
        segment: u16,
    },
    /// Two units share one register base.
    SharedRegisters {
        /// The base address.
        base: HostPhys,
    },
    /// No unit's device scope covers the device and its segment has no INCLUDE_PCI_ALL unit.
    NotCovered(Bdf),
    /// The device may sit behind a bridge scope whose bus range could not be read.
    Ambiguous(Bdf),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::NoUnits => f.write_str("the DMAR lists no DRHD unit"),
            TopologyError::TooManyUnits => {
                write!(f, "the DMAR lists more than {MAX_UNITS} DRHD units")
            }
            TopologyError::ScopeTooLarge { unit } => {
                write!(f, "unit {unit}'s device scope has too many entries")
            }
            TopologyError::Overlap {
                first,
                second,
                device,
            } => write!(f, "units {first} and {second} both claim {device}"),
            TopologyError::TwoCatchAllUnits { segment } => {
                write!(f, "two INCLUDE_PCI_ALL units on segment {segment}")
            }
            TopologyError::SharedRegisters { base } => {
                write!(f, "two units share the register base {base}")
            }
            TopologyError::NotCovered(device) => {
                write!(f, "no DRHD unit covers {device}")
            }
            TopologyError::Ambiguous(device) => write!(
                f,
                "{device} may be behind a bridge scope whose buses are unknown"
            ),
        }
    }
}

/// A bridge scope entry: the bridge and, when the walk could read it, its bus range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeScope {
    /// The bridge's requester id.
    pub bridge: Bdf,
    /// Secondary ..= subordinate bus, if known.
    pub buses: Option<(u8, u8)>,
}

/// An IOAPIC or HPET scope entry: its enumeration id (IOAPIC id / HPET number) and the
/// requester id its interrupts carry (VT-d spec 8.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptSource {
    /// Enumeration id from the scope entry.
    pub enumeration_id: u8,
    /// The source-id requester id.
    pub source_id: Bdf,
}

/// What one DRHD says about its unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitScope {
    /// Register base (DRHD "Register Base Address").
    pub register_base: HostPhys,
    /// PCI segment.
    pub segment: u16,
    /// INCLUDE_PCI_ALL.
    pub include_pci_all: bool,
    /// Endpoint scope entries.
    pub endpoints: heapless::Vec<Bdf, MAX_UNIT_SCOPE>,
    /// Bridge scope entries.
    pub bridges: heapless::Vec<BridgeScope, MAX_UNIT_SCOPE>,
    /// IOAPIC scope entries.
    pub ioapics: heapless::Vec<InterruptSource, MAX_INTERRUPT_SOURCES>,
    /// HPET scope entries.
    pub hpets: heapless::Vec<InterruptSource, MAX_INTERRUPT_SOURCES>,
    /// Scope entries whose path could not be walked (they name nothing the server can route).
    pub unresolved: u8,
    /// Scope entries whose path crosses a function the walk knows is no bridge (they name no
    /// device that exists).
    pub absent: u8,
}

impl UnitScope {
    fn claims_directly(&self, device: Bdf) -> bool {
        self.endpoints.contains(&device) || self.bridges.iter().any(|b| b.bridge == device)
    }

    fn claims_bus(&self, bus: u8) -> bool {
        self.bridges.iter().any(|bridge| {
            bridge
                .buses
                .is_some_and(|(first, last)| (first..=last).contains(&bus))
        })
    }

    /// Whether an unresolved bridge (or an unwalkable entry) might cover `device`'s bus.
    fn might_claim(&self, device: Bdf) -> bool {
        self.unresolved > 0
            || self
                .bridges
                .iter()
                .any(|bridge| bridge.buses.is_none() && bridge.bridge.bus() != device.bus())
    }
}

/// Every unit of the DMAR, in table order (the index is the unit's number everywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    units: heapless::Vec<UnitScope, MAX_UNITS>,
}

impl Topology {
    /// Collects and checks the units of `dmar`; `walk` reads segment 0's bridges' bus numbers.
    pub fn from_dmar(dmar: &Dmar<'_>, walk: &mut impl BusWalk) -> Result<Self, TopologyError> {
        let mut units: heapless::Vec<UnitScope, MAX_UNITS> = heapless::Vec::new();
        for (index, drhd) in dmar.units().enumerate() {
            let unit = if drhd.segment == 0 {
                Self::unit(index, &drhd, walk)?
            } else {
                Self::unit(index, &drhd, &mut NoBusWalk)?
            };
            units.push(unit).map_err(|_| TopologyError::TooManyUnits)?;
        }
        if units.is_empty() {
            return Err(TopologyError::NoUnits);
        }
        let topology = Self { units };
        topology.check()?;
        Ok(topology)
    }

    /// What DRHD number `index` says, its paths and bridges resolved through `walk`.
    fn unit(
        index: usize,
        drhd: &Drhd<'_>,
        walk: &mut impl BusWalk,
    ) -> Result<UnitScope, TopologyError> {
        let mut unit = UnitScope {
            register_base: drhd.register_base,
            segment: drhd.segment,
            include_pci_all: drhd.include_pci_all(),
            endpoints: heapless::Vec::new(),
            bridges: heapless::Vec::new(),
            ioapics: heapless::Vec::new(),
            hpets: heapless::Vec::new(),
            unresolved: 0,
            absent: 0,
        };
        let too_large = TopologyError::ScopeTooLarge { unit: index };
        for entry in drhd.scopes() {
            let device = match entry.resolve(walk) {
                Ok(device) => device,
                Err(DmarError::PathNotFound) if walk.knows_every_bridge() => {
                    unit.absent = unit.absent.saturating_add(1);
                    continue;
                }
                Err(_) => {
                    unit.unresolved = unit.unresolved.saturating_add(1);
                    continue;
                }
            };
            let source = InterruptSource {
                enumeration_id: entry.enumeration_id,
                source_id: device,
            };
            match entry.kind {
                ScopeKind::Endpoint => {
                    unit.endpoints.push(device).map_err(|_| too_large)?;
                }
                ScopeKind::Bridge => match walk.bus_range(device) {
                    // Known to be no bridge: the scope claims the function itself only.
                    None if walk.knows_every_bridge() => {
                        unit.endpoints.push(device).map_err(|_| too_large)?;
                    }
                    buses => {
                        let bridge = BridgeScope {
                            bridge: device,
                            buses,
                        };
                        unit.bridges.push(bridge).map_err(|_| too_large)?;
                    }
                },
                ScopeKind::IoApic => unit.ioapics.push(source).map_err(|_| too_large)?,
                ScopeKind::Hpet => unit.hpets.push(source).map_err(|_| too_large)?,
                ScopeKind::AcpiNamespace | ScopeKind::Reserved(_) => {}
            }
        }
        Ok(unit)
    }

    fn check(&self) -> Result<(), TopologyError> {
        for (first, a) in self.units.iter().enumerate() {
            for (offset, b) in self.units.iter().skip(first + 1).enumerate() {
                let second = first + 1 + offset;
                if a.register_base == b.register_base {
                    return Err(TopologyError::SharedRegisters {
                        base: a.register_base,
                    });
                }
                if a.segment != b.segment {
                    continue;
                }
                if a.include_pci_all && b.include_pci_all {
                    return Err(TopologyError::TwoCatchAllUnits { segment: a.segment });
                }
                let overlap = |device| TopologyError::Overlap {
                    first,
                    second,
                    device,
                };
                let named = a
                    .endpoints
                    .iter()
                    .chain(a.bridges.iter().map(|bridge| &bridge.bridge));
                for device in named {
                    if b.claims_directly(*device) {
                        return Err(overlap(*device));
                    }
                }
                // A device one unit names on a bus another unit's bridge covers.
                for (one, other) in [(a, b), (b, a)] {
                    let named = one
                        .endpoints
                        .iter()
                        .chain(one.bridges.iter().map(|bridge| &bridge.bridge));
                    for device in named {
                        if other.claims_bus(device.bus()) {
                            return Err(overlap(*device));
                        }
                    }
                }
                for bus in 0..=u8::MAX {
                    if a.claims_bus(bus) && b.claims_bus(bus) {
                        return Err(overlap(Bdf(u16::from(bus) << 8)));
                    }
                }
            }
        }
        Ok(())
    }

    /// The units, in DMAR order.
    pub fn units(&self) -> &[UnitScope] {
        &self.units
    }

    /// The unit that translates `device` (segment 0), by the rules in the module documentation.
    pub fn unit_of(&self, device: Bdf) -> Result<usize, TopologyError> {
        let segment = || {
            self.units
                .iter()
                .enumerate()
                .filter(|(_, u)| u.segment == 0)
        };
        if let Some((index, _)) = segment().find(|(_, unit)| unit.claims_directly(device)) {
            return Ok(index);
        }
        if let Some((index, _)) = segment().find(|(_, unit)| unit.claims_bus(device.bus())) {
            return Ok(index);
        }
        let catch_all = segment().find(|(_, unit)| unit.include_pci_all);
        let mut units = segment();
        if let (Some((only, _)), None, None) = (units.next(), units.next(), catch_all) {
            return Ok(only);
        }
        if segment().any(|(_, unit)| !unit.include_pci_all && unit.might_claim(device)) {
            return Err(TopologyError::Ambiguous(device));
        }
        catch_all
            .map(|(index, _)| index)
            .ok_or(TopologyError::NotCovered(device))
    }

    /// The unit and source id of the IOAPIC with enumeration id `id`.
    pub fn ioapic(&self, id: u8) -> Option<(usize, Bdf)> {
        Self::source(self.units.iter().map(|unit| &unit.ioapics), id)
    }

    /// The unit and source id of HPET number `id`.
    pub fn hpet(&self, id: u8) -> Option<(usize, Bdf)> {
        Self::source(self.units.iter().map(|unit| &unit.hpets), id)
    }

    fn source<'a>(
        lists: impl Iterator<Item = &'a heapless::Vec<InterruptSource, MAX_INTERRUPT_SOURCES>>,
        id: u8,
    ) -> Option<(usize, Bdf)> {
        lists.enumerate().find_map(|(index, sources)| {
            sources
                .iter()
                .find(|source| source.enumeration_id == id)
                .map(|source| (index, source.source_id))
        })
    }
}
