//! Enumeration through ECAM across bridges and switches, and the inventory it produces.
//!
//! Bus numbers are taken as firmware assigned them; every bridge's secondary/subordinate pair
//! is checked against its parent's range and against buses already claimed, so a malicious or
//! broken topology (loops, overlaps, out-of-range buses, absurd depth) yields
//! [`TopologyError`]s and skipped subtrees, never an endless walk: each bus is scanned at most
//! once, so enumeration reads at most 256 x 256 functions.

use crate::acs::enable_isolation;
use crate::ecam::EcamRegion;
use crate::function::{probe_function, FunctionInfo};
use crate::ConfigSpace;
use core::fmt;
use pci_api::Bdf;

/// Most functions the inventory holds (physical and virtual).
pub const MAX_FUNCTIONS: usize = 256;
/// Deepest bridge nesting followed (root bus is depth 0).
pub const MAX_DEPTH: usize = 32;
/// Most topology errors recorded (the first ones are kept).
pub const MAX_TOPOLOGY_ERRORS: usize = 16;

/// A topology problem found while enumerating. The offending bridge's subtree is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The secondary bus is not above the bridge's own bus.
    SecondaryNotBelowBridge {
        /// The bridge.
        bridge: Bdf,
        /// Its secondary bus.
        secondary: u8,
    },
    /// The subordinate bus is below the secondary bus.
    SubordinateBelowSecondary {
        /// The bridge.
        bridge: Bdf,
        /// Secondary bus.
        secondary: u8,
        /// Subordinate bus.
        subordinate: u8,
    },
    /// The bridge's bus range is not inside its parent's (or the MCFG entry's) range.
    OutsideParentRange {
        /// The bridge.
        bridge: Bdf,
        /// Secondary bus.
        secondary: u8,
        /// Subordinate bus.
        subordinate: u8,
        /// First bus the parent forwards.
        parent_first: u8,
        /// Last bus the parent forwards.
        parent_last: u8,
    },
    /// A bus in the bridge's range is already claimed by another bridge (a loop or overlap).
    BusAlreadyClaimed {
        /// The bridge.
        bridge: Bdf,
        /// The bus claimed twice.
        bus: u8,
    },
    /// Bridges nest deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The bridge whose subtree was skipped.
        bridge: Bdf,
    },
    /// The inventory is full; later functions are not recorded.
    InventoryFull,
    /// A physical function's VF routing IDs overflow or leave its bus range.
    VirtualFunctionsOutOfRange {
        /// The physical function.
        physical_function: Bdf,
    },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::SecondaryNotBelowBridge { bridge, secondary } => write!(
                f,
                "bridge {bridge}: secondary bus {secondary:02x} is not below the bridge"
            ),
            TopologyError::SubordinateBelowSecondary {
                bridge,
                secondary,
                subordinate,
            } => write!(
                f,
                "bridge {bridge}: subordinate bus {subordinate:02x} below secondary {secondary:02x}"
            ),
            TopologyError::OutsideParentRange {
                bridge,
                secondary,
                subordinate,
                parent_first,
                parent_last,
            } => write!(
                f,
                "bridge {bridge}: buses {secondary:02x}-{subordinate:02x} outside parent range {parent_first:02x}-{parent_last:02x}"
            ),
            TopologyError::BusAlreadyClaimed { bridge, bus } => {
                write!(f, "bridge {bridge}: bus {bus:02x} already claimed (loop or overlap)")
            }
            TopologyError::TooDeep { bridge } => {
                write!(f, "bridge {bridge}: nesting deeper than {MAX_DEPTH}")
            }
            TopologyError::InventoryFull => {
                write!(f, "more than {MAX_FUNCTIONS} functions; the rest are ignored")
            }
            TopologyError::VirtualFunctionsOutOfRange { physical_function } => write!(
                f,
                "{physical_function}: virtual function routing IDs out of range"
            ),
        }
    }
}

/// Choices for enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnumerationOptions {
    /// Enable the ACS isolation controls (SV, RR, CR, UF) each port implements, as Linux does
    /// at boot, before groups are computed.
    pub enable_acs: bool,
    /// Also list virtual functions already enabled by firmware.
    pub include_enabled_vfs: bool,
}

impl Default for EnumerationOptions {
    fn default() -> Self {
        EnumerationOptions {
            enable_acs: true,
            include_enabled_vfs: true,
        }
    }
}

/// Every function of one PCI segment, with IOMMU groups.
#[derive(Clone, Debug)]
pub struct Inventory {
    segment: u16,
    first_bus: u8,
    last_bus: u8,
    functions: heapless::Vec<FunctionInfo, MAX_FUNCTIONS>,
    groups: heapless::Vec<u16, MAX_FUNCTIONS>,
    errors: heapless::Vec<TopologyError, MAX_TOPOLOGY_ERRORS>,
}

/// A bus waiting to be scanned.
#[derive(Clone, Copy)]
struct PendingBus {
    bus: u8,
    parent: Option<Bdf>,
    depth: usize,
}

/// A 256-bit set of bus numbers.
#[derive(Clone, Copy, Default)]
struct BusSet([u64; 4]);

impl BusSet {
    fn contains(&self, bus: u8) -> bool {
        self.0
            .get(usize::from(bus / 64))
            .is_some_and(|word| word & (1 << (bus % 64)) != 0)
    }

    fn insert(&mut self, bus: u8) {
        if let Some(word) = self.0.get_mut(usize::from(bus / 64)) {
            *word |= 1 << (bus % 64);
        }
    }
}

impl Inventory {
    /// An empty inventory for a segment and bus range.
    pub fn empty(region: &EcamRegion) -> Inventory {
        Inventory {
            segment: region.segment(),
            first_bus: region.start_bus(),
            last_bus: region.end_bus(),
            functions: heapless::Vec::new(),
            groups: heapless::Vec::new(),
            errors: heapless::Vec::new(),
        }
    }

    /// Enumerates the segment behind `region`, starting at its first bus.
    pub fn enumerate<C: ConfigSpace + ?Sized>(
        config: &mut C,
        region: &EcamRegion,
        options: EnumerationOptions,
    ) -> Inventory {
        let mut inventory = Inventory::empty(region);
        inventory.scan(config, options);
        if options.include_enabled_vfs {
            crate::sriov::add_enabled_virtual_functions(config, &mut inventory);
        }
        inventory.recompute_groups();
        inventory
    }

    fn scan<C: ConfigSpace + ?Sized>(&mut self, config: &mut C, options: EnumerationOptions) {
        let mut claimed = BusSet::default();
        let mut pending: heapless::Vec<PendingBus, 256> = heapless::Vec::new();
        claimed.insert(self.first_bus);
        let _ = pending.push(PendingBus {
            bus: self.first_bus,
            parent: None,
            depth: 0,
        });
        // Each bus is pushed at most once (it is claimed first), so this loop ends.
        while let Some(PendingBus { bus, parent, depth }) = pending.pop() {
            let (parent_first, parent_last) = match parent.and_then(|p| self.get(p)) {
                Some(bridge) => match bridge.bus_numbers {
                    Some(numbers) => (numbers.secondary, numbers.subordinate),
                    None => (bus, bus),
                },
                None => (self.first_bus, self.last_bus),
            };
            // Bus ranges of the bridges found on this bus: siblings must not overlap.
            let mut sibling_ranges: heapless::Vec<(u8, u8), 256> = heapless::Vec::new();
            for device in 0..32u8 {
                for function in 0..8u8 {
                    let bdf = Bdf::from_bus_devfn(bus, (device << 3) | function);
                    let Some(mut info) = probe_function(config, bdf, parent) else {
                        if function == 0 {
                            break;
                        }
                        continue;
                    };
                    let multi = info.multi_function;
                    if options.enable_acs {
                        if let Some(acs) = enable_isolation(config, &info) {
                            info.capabilities.acs = Some(acs);
                        }
                    }
                    if let Some(numbers) = info.bus_numbers {
                        let checked = Self::check_bridge(
                            bdf,
                            numbers.secondary,
                            numbers.subordinate,
                            (parent_first, parent_last),
                            depth,
                        )
                        .and_then(|()| {
                            Self::check_claims(
                                bdf,
                                numbers.secondary,
                                numbers.subordinate,
                                &claimed,
                                &sibling_ranges,
                            )
                        });
                        match checked {
                            Err(error) => self.note(error),
                            Ok(()) => {
                                claimed.insert(numbers.secondary);
                                let _ =
                                    sibling_ranges.push((numbers.secondary, numbers.subordinate));
                                let _ = pending.push(PendingBus {
                                    bus: numbers.secondary,
                                    parent: Some(bdf),
                                    depth: depth + 1,
                                });
                            }
                        }
                    }
                    if self.functions.push(info).is_err() {
                        self.note(TopologyError::InventoryFull);
                        return;
                    }
                    if function == 0 && !multi {
                        break;
                    }
                }
            }
        }
    }

    /// A secondary bus already queued or scanned (a loop back up the tree or a duplicate), or
    /// a range overlapping a sibling bridge's, is refused.
    fn check_claims(
        bridge: Bdf,
        secondary: u8,
        subordinate: u8,
        claimed: &BusSet,
        siblings: &[(u8, u8)],
    ) -> Result<(), TopologyError> {
        if claimed.contains(secondary) {
            return Err(TopologyError::BusAlreadyClaimed {
                bridge,
                bus: secondary,
            });
        }
        for (first, last) in siblings {
            if secondary <= *last && *first <= subordinate {
                return Err(TopologyError::BusAlreadyClaimed {
                    bridge,
                    bus: secondary.max(*first),
                });
            }
        }
        Ok(())
    }

    fn check_bridge(
        bridge: Bdf,
        secondary: u8,
        subordinate: u8,
        (parent_first, parent_last): (u8, u8),
        depth: usize,
    ) -> Result<(), TopologyError> {
        if secondary <= bridge.bus() {
            return Err(TopologyError::SecondaryNotBelowBridge { bridge, secondary });
        }
        if subordinate < secondary {
            return Err(TopologyError::SubordinateBelowSecondary {
                bridge,
                secondary,
                subordinate,
            });
        }
        if secondary < parent_first || subordinate > parent_last {
            return Err(TopologyError::OutsideParentRange {
                bridge,
                secondary,
                subordinate,
                parent_first,
                parent_last,
            });
        }
        if depth + 1 > MAX_DEPTH {
            return Err(TopologyError::TooDeep { bridge });
        }
        Ok(())
    }

    pub(crate) fn note(&mut self, error: TopologyError) {
        if !self.errors.contains(&error) {
            let _ = self.errors.push(error);
        }
    }

    /// Adds a function found after enumeration (a virtual function). Groups must be
    /// recomputed afterwards.
    pub(crate) fn push(&mut self, info: FunctionInfo) -> Result<(), TopologyError> {
        self.functions
            .push(info)
            .map_err(|_| TopologyError::InventoryFull)
    }

    /// Room left for more functions.
    pub fn free_slots(&self) -> usize {
        MAX_FUNCTIONS - self.functions.len()
    }

    /// Recomputes IOMMU groups (after functions were added).
    pub fn recompute_groups(&mut self) {
        self.functions.sort_unstable_by_key(|f| f.bdf);
        let groups = crate::group::compute_groups(self);
        self.groups = groups;
    }

    /// The PCI segment.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// The bus range of the MCFG entry.
    pub fn bus_range(&self) -> (u8, u8) {
        (self.first_bus, self.last_bus)
    }

    /// All functions, in BDF order.
    pub fn functions(&self) -> &[FunctionInfo] {
        &self.functions
    }

    /// Topology errors found.
    pub fn errors(&self) -> &[TopologyError] {
        &self.errors
    }

    /// Index of a function.
    pub fn index_of(&self, bdf: Bdf) -> Option<usize> {
        self.functions.iter().position(|f| f.bdf == bdf)
    }

    /// A function by BDF.
    pub fn get(&self, bdf: Bdf) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.bdf == bdf)
    }

    /// Mutable access for modules that refresh a function (crate-internal).
    pub(crate) fn get_mut(&mut self, bdf: Bdf) -> Option<&mut FunctionInfo> {
        self.functions.iter_mut().find(|f| f.bdf == bdf)
    }

    /// The IOMMU group number of a function.
    pub fn group_of(&self, bdf: Bdf) -> Option<u16> {
        self.index_of(bdf)
            .and_then(|index| self.groups.get(index).copied())
    }

    /// Every function in IOMMU group `group`.
    pub fn group_members(&self, group: u16) -> impl Iterator<Item = &FunctionInfo> + '_ {
        self.functions
            .iter()
            .zip(self.groups.iter())
            .filter(move |(_, g)| **g == group)
            .map(|(f, _)| f)
    }

    /// The bridges above a function, nearest first (at most [`MAX_DEPTH`]).
    pub fn upstream_path(&self, bdf: Bdf) -> heapless::Vec<Bdf, MAX_DEPTH> {
        let mut path = heapless::Vec::new();
        let mut current = self.get(bdf).and_then(|f| f.parent);
        while let Some(bridge) = current {
            if path.contains(&bridge) || path.push(bridge).is_err() {
                break;
            }
            current = self.get(bridge).and_then(|f| f.parent);
        }
        path
    }

    /// Functions whose bus is in `first..=last`.
    pub fn functions_on_buses(
        &self,
        first: u8,
        last: u8,
    ) -> impl Iterator<Item = &FunctionInfo> + '_ {
        self.functions
            .iter()
            .filter(move |f| f.bdf.bus() >= first && f.bdf.bus() <= last)
    }

    /// The bus range the bridge above `bdf` forwards (the MCFG range on the root bus).
    pub fn parent_bus_range(&self, bdf: Bdf) -> (u8, u8) {
        match self
            .get(bdf)
            .and_then(|f| f.parent)
            .and_then(|p| self.get(p))
            .and_then(|p| p.bus_numbers)
        {
            Some(numbers) => (numbers.secondary, numbers.subordinate),
            None => (self.first_bus, self.last_bus),
        }
    }
}
