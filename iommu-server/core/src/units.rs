//! The remapping units a server drives, and which one translates a device.
//!
//! [`Units`] is what the domain code needs from "the hardware": the unit behind a requester id
//! and mutable access to a unit by number. A single [`VtdUnit`] is a `Units` of one (every
//! device is its own; the domain manager's [`crate::domain::DeviceScope`] then decides
//! coverage). [`UnitSet`] holds every DRHD unit of the DMAR, routes by the
//! [`Topology`] (VT-d spec 8.3), and knows which units are up: a device whose unit is not up is
//! refused, since nothing would isolate it.
//!
//! Domains are shared by every unit their devices sit behind. One page-table tree serves them
//! all, so the set offers the parameters every up unit supports ([`DomainParameters`]): the
//! paging depth in every unit's SAGAW (preferring the shallowest the first unit chose), 2 MiB
//! and 1 GiB leaves only when every unit has them (CAP.SLLPS), and domain ids below the smallest
//! CAP.ND. A unit whose SAGAW shares no depth with the first up unit is taken out of the set
//! ([`UnitSet::retain_compatible`]). Caching mode and write-buffer flushing stay per unit: each
//! unit's own [`VtdUnit`] decides its invalidations.

use crate::clock::Clock;
use crate::dma_remapping::LargePages;
use crate::dmar::{Topology, TopologyError};
use crate::fault::{read_and_clear_faults, FaultRecord};
use crate::registers::capability::PagingLevels;
use crate::registers::VtdRegisters;
use crate::unit::VtdUnit;
use iommu_api::{Bdf, IommuError};

pub use crate::dmar::topology::MAX_UNITS;

/// A set of unit numbers (bit n = unit n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitMask(pub u32);

impl UnitMask {
    /// The set holding only `unit`.
    pub fn single(unit: usize) -> Self {
        Self(1u32.checked_shl(unit as u32).unwrap_or(0))
    }
    /// Adds `unit`.
    pub fn insert(&mut self, unit: usize) {
        self.0 |= Self::single(unit).0;
    }
    /// Whether `unit` is in the set.
    pub fn contains(self, unit: usize) -> bool {
        self.0 & Self::single(unit).0 != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The unit numbers, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_UNITS).filter(move |unit| self.contains(*unit))
    }
}

/// What a domain's tables and ids must respect on every unit it may be attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainParameters {
    /// Second-level paging depth.
    pub levels: PagingLevels,
    /// Superpages usable in the tables.
    pub large_pages: LargePages,
    /// Domain ids available (below this).
    pub domain_count: u32,
}

impl DomainParameters {
    /// The parameters of one unit.
    pub fn of_unit<R: VtdRegisters, C: Clock>(unit: &VtdUnit<R, C>) -> Self {
        let config = unit.config();
        Self {
            levels: config.levels,
            large_pages: config.large_pages,
            domain_count: config.domain_count,
        }
    }
}

/// The hardware the domain code programs.
pub trait Units {
    /// Register access of the units.
    type Registers: VtdRegisters;
    /// Clock of the units' bounded waits.
    type Clock: Clock;
    /// The number of the unit that translates `device`'s requests (it is up).
    fn route(&self, device: Bdf) -> Result<usize, IommuError>;
    /// Unit `index`, if it is up.
    fn unit(&mut self, index: usize) -> Option<&mut VtdUnit<Self::Registers, Self::Clock>>;
    /// The units that are up.
    fn up(&self) -> UnitMask;
    /// What domains must respect on every up unit.
    fn parameters(&self) -> DomainParameters;
}

impl<R: VtdRegisters, C: Clock> Units for VtdUnit<R, C> {
    type Registers = R;
    type Clock = C;
    fn route(&self, _device: Bdf) -> Result<usize, IommuError> {
        Ok(0)
    }
    fn unit(&mut self, index: usize) -> Option<&mut VtdUnit<R, C>> {
        (index == 0).then_some(self)
    }
    fn up(&self) -> UnitMask {
        UnitMask::single(0)
    }
    fn parameters(&self) -> DomainParameters {
        DomainParameters::of_unit(self)
    }
}

/// The error a device without a usable unit gets.
pub fn routing_error(error: TopologyError) -> IommuError {
    match error {
        TopologyError::Ambiguous(_) => IommuError::AmbiguousUnit,
        _ => IommuError::NoUnitForDevice,
    }
}

fn supports(unit_levels: u8, levels: PagingLevels) -> bool {
    unit_levels & (1 << (levels.count() - 2)) != 0
}

/// Every DRHD unit of the DMAR, each up or not.
pub struct UnitSet<R, C> {
    topology: Topology,
    units: heapless::Vec<Option<VtdUnit<R, C>>, MAX_UNITS>,
    levels: Option<PagingLevels>,
}

impl<R: VtdRegisters, C: Clock> UnitSet<R, C> {
    /// A set with every unit of `topology` down.
    pub fn new(topology: Topology) -> Self {
        let mut units = heapless::Vec::new();
        for _ in topology.units() {
            let _ = units.push(None);
        }
        Self {
            topology,
            units,
            levels: None,
        }
    }

    /// The DMAR's units.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Replaces the routing with `topology` (the same DMAR read with more knowledge, e.g. the
    /// bridges' bus numbers). Refused with `ConflictingUnits`, changing nothing, unless it
    /// lists the same units at the same register bases in the same order.
    pub fn reroute(&mut self, topology: Topology) -> Result<(), IommuError> {
        let same = topology.units().len() == self.topology.units().len()
            && topology
                .units()
                .iter()
                .zip(self.topology.units())
                .all(|(new, old)| {
                    new.register_base == old.register_base && new.segment == old.segment
                });
        if !same {
            return Err(IommuError::ConflictingUnits);
        }
        self.topology = topology;
        Ok(())
    }

    /// Number of units the DMAR lists (up or not).
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether the DMAR listed no unit (never true for a set built from a checked topology).
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Records unit `index` as up.
    pub fn install(&mut self, index: usize, unit: VtdUnit<R, C>) -> Result<(), IommuError> {
        let slot = self
            .units
            .get_mut(index)
            .ok_or(IommuError::UnsupportedHardware)?;
        *slot = Some(unit);
        self.levels = None;
        Ok(())
    }

    /// Unit `index`, if up.
    pub fn get(&self, index: usize) -> Option<&VtdUnit<R, C>> {
        self.units.get(index).and_then(Option::as_ref)
    }

    /// Unit `index`, if up.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut VtdUnit<R, C>> {
        self.units.get_mut(index).and_then(Option::as_mut)
    }

    /// Takes unit `index` out of the set (it stays as it is in hardware).
    pub fn remove(&mut self, index: usize) -> Option<VtdUnit<R, C>> {
        self.levels = None;
        self.units.get_mut(index).and_then(Option::take)
    }

    /// Decides the domains' paging depth: the first up unit's choice if every up unit's SAGAW
    /// has it, else the shallowest depth they all have; units sharing no depth with the first
    /// are removed and returned in the mask.
    pub fn retain_compatible(&mut self) -> UnitMask {
        let mut removed = UnitMask::default();
        let sagaw = |unit: &VtdUnit<R, C>| unit.config().capability.supported_agaw();
        let Some(first) = self.units.iter().flatten().next() else {
            return removed;
        };
        let preferred = first.config().levels;
        let all = self
            .units
            .iter()
            .flatten()
            .fold(0xffu8, |mask, unit| mask & sagaw(unit));
        let levels = [
            preferred,
            PagingLevels::Three,
            PagingLevels::Four,
            PagingLevels::Five,
        ]
        .into_iter()
        .find(|levels| supports(all, *levels))
        .unwrap_or(preferred);
        for (index, slot) in self.units.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|unit| !supports(sagaw(unit), levels))
            {
                *slot = None;
                removed.insert(index);
            }
        }
        self.levels = Some(levels);
        removed
    }

    /// Up units with their numbers.
    pub fn iter_up(&self) -> impl Iterator<Item = (usize, &VtdUnit<R, C>)> {
        self.units
            .iter()
            .enumerate()
            .filter_map(|(index, unit)| unit.as_ref().map(|unit| (index, unit)))
    }

    /// Up units with their numbers.
    pub fn iter_up_mut(&mut self) -> impl Iterator<Item = (usize, &mut VtdUnit<R, C>)> {
        self.units
            .iter_mut()
            .enumerate()
            .filter_map(|(index, unit)| unit.as_mut().map(|unit| (index, unit)))
    }

    /// Reads and clears the fault records of every up unit, in unit order; `sink` gets the
    /// unit number and the record. Returns the records read and the units whose records
    /// overflowed (FSTS.PFO).
    pub fn read_faults(&mut self, mut sink: impl FnMut(usize, FaultRecord)) -> (u32, UnitMask) {
        let mut records = 0u32;
        let mut overflowed = UnitMask::default();
        for (index, unit) in self.iter_up_mut() {
            let capability = unit.config().capability;
            let sweep = read_and_clear_faults(unit.registers_mut(), capability, |record| {
                sink(index, record)
            });
            records = records.saturating_add(sweep.records);
            if sweep.overflow {
                overflowed.insert(index);
            }
        }
        (records, overflowed)
    }
}

impl<R: VtdRegisters, C: Clock> Units for UnitSet<R, C> {
    type Registers = R;
    type Clock = C;

    fn route(&self, device: Bdf) -> Result<usize, IommuError> {
        let index = self.topology.unit_of(device).map_err(routing_error)?;
        if self.get(index).is_none() {
            return Err(IommuError::UnitNotBroughtUp);
        }
        Ok(index)
    }

    fn unit(&mut self, index: usize) -> Option<&mut VtdUnit<R, C>> {
        self.get_mut(index)
    }

    fn up(&self) -> UnitMask {
        let mut mask = UnitMask::default();
        for (index, _) in self.iter_up() {
            mask.insert(index);
        }
        mask
    }

    fn parameters(&self) -> DomainParameters {
        let mut units = self.iter_up().map(|(_, unit)| unit.config());
        let Some(first) = units.next() else {
            return DomainParameters {
                levels: PagingLevels::Three,
                large_pages: LargePages::default(),
                domain_count: 0,
            };
        };
        let mut parameters = DomainParameters {
            levels: self.levels.unwrap_or(first.levels),
            large_pages: first.large_pages,
            domain_count: first.domain_count,
        };
        for config in units {
            parameters.large_pages.two_mib &= config.large_pages.two_mib;
            parameters.large_pages.one_gib &= config.large_pages.one_gib;
            parameters.domain_count = parameters.domain_count.min(config.domain_count);
        }
        parameters
    }
}
