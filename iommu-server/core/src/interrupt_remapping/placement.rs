//! Interrupt remapping over several units: one [`IrteTable`] per unit with remapping on, and
//! one handle space shared by all of them.
//!
//! A device's remappable interrupt carries only the handle (VT-d spec 5.1.2.2); the unit that
//! translates the device's requests looks it up in its own table. So a handle is handed out
//! once across all units: [`InterruptRemapping::allocate`] reserves a free index (no unit yet,
//! since an allocation names no device), and [`InterruptRemapping::program`] writes the entry
//! into the table of the unit that covers the entry's source id (moving it, with an
//! invalidation, if it was programmed for a device of another unit before). Handle and unit are
//! therefore never ambiguous: the handle is the index, and the server knows the one unit whose
//! table holds it. Callers keep using handles exactly as with one unit.

use super::table::{Irte, IrteTable, Owner, IRTE_ENTRIES};
use crate::memory::PhysMemory;
use crate::units::{UnitMask, Units, MAX_UNITS};
use iommu_api::request::IrteSettings;
use iommu_api::IommuError;

/// Who holds a handle and where its entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    owner: Owner,
    /// The unit whose table holds the (programmed) entry.
    unit: Option<usize>,
}

/// Every unit's interrupt remapping table and the shared handle space.
#[derive(Debug)]
pub struct InterruptRemapping {
    tables: heapless::Vec<Option<IrteTable>, MAX_UNITS>,
    placements: [Option<Placement>; IRTE_ENTRIES],
}

impl Default for InterruptRemapping {
    fn default() -> Self {
        Self::new()
    }
}

impl InterruptRemapping {
    /// No unit has remapping yet.
    pub fn new() -> Self {
        Self {
            tables: heapless::Vec::new(),
            placements: [None; IRTE_ENTRIES],
        }
    }

    /// Records unit `unit`'s enabled table.
    pub fn install(&mut self, unit: usize, table: IrteTable) -> Result<(), IommuError> {
        if unit >= MAX_UNITS {
            return Err(IommuError::UnsupportedHardware);
        }
        while self.tables.len() <= unit {
            self.tables
                .push(None)
                .map_err(|_| IommuError::UnsupportedHardware)?;
        }
        if let Some(slot) = self.tables.get_mut(unit) {
            *slot = Some(table);
        }
        Ok(())
    }

    /// The units with remapping enabled.
    pub fn enabled(&self) -> UnitMask {
        let mut mask = UnitMask::default();
        for (index, table) in self.tables.iter().enumerate() {
            if table.is_some() {
                mask.insert(index);
            }
        }
        mask
    }

    /// Unit `unit`'s table, if its remapping is on.
    pub fn table(&self, unit: usize) -> Option<&IrteTable> {
        self.tables.get(unit).and_then(Option::as_ref)
    }

    /// Reserves the lowest handle free in every unit for `owner`.
    pub fn allocate(&mut self, owner: Owner) -> Result<u16, IommuError> {
        if self.enabled().is_empty() {
            return Err(IommuError::InterruptRemappingUnavailable);
        }
        let (index, slot) = self
            .placements
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.is_none())
            .ok_or(IommuError::IrteExhausted)?;
        *slot = Some(Placement { owner, unit: None });
        u16::try_from(index).map_err(|_| IommuError::IrteExhausted)
    }

    fn placement(&self, owner: Owner, handle: u16) -> Result<Placement, IommuError> {
        match self.placements.get(usize::from(handle)) {
            Some(Some(placement)) if placement.owner == owner => Ok(*placement),
            Some(Some(_)) => Err(IommuError::NotOwner),
            _ => Err(IommuError::UnknownIrte),
        }
    }

    /// The unit whose table holds `handle`'s entry, once programmed.
    pub fn unit_of(&self, handle: u16) -> Option<usize> {
        self.placements
            .get(usize::from(handle))
            .copied()
            .flatten()
            .and_then(|placement| placement.unit)
    }

    /// Programs `handle` in unit `unit` (the unit covering the entry's source id), removing it
    /// from the unit that held it before. Everything is checked before a table changes.
    pub fn program<U: Units, M: PhysMemory>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        owner: Owner,
        handle: u16,
        unit: usize,
        settings: &IrteSettings,
    ) -> Result<Irte, IommuError> {
        let placement = self.placement(owner, handle)?;
        Irte::encode(settings)?;
        if self.table(unit).is_none() || units.unit(unit).is_none() {
            return Err(IommuError::InterruptRemappingUnavailable);
        }
        if let Some(previous) = placement.unit.filter(|previous| *previous != unit) {
            self.clear(units, memory, owner, handle, previous)?;
        }
        let (Some(Some(table)), Some(hardware)) = (self.tables.get_mut(unit), units.unit(unit))
        else {
            return Err(IommuError::InterruptRemappingUnavailable);
        };
        if placement.unit != Some(unit) {
            table.reserve(owner, handle)?;
            // Recorded before the write, so a failed write is still cleared by `free`.
            if let Some(Some(slot)) = self.placements.get_mut(usize::from(handle)) {
                slot.unit = Some(unit);
            }
        }
        table.program(hardware, memory, owner, handle, settings)
    }

    fn clear<U: Units, M: PhysMemory>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        owner: Owner,
        handle: u16,
        unit: usize,
    ) -> Result<(), IommuError> {
        let (Some(Some(table)), Some(hardware)) = (self.tables.get_mut(unit), units.unit(unit))
        else {
            return Err(IommuError::InterruptRemappingUnavailable);
        };
        table.free(hardware, memory, owner, handle)?;
        if let Some(Some(slot)) = self.placements.get_mut(usize::from(handle)) {
            slot.unit = None;
        }
        Ok(())
    }

    /// Clears `handle`'s entry (with an invalidation in its unit) and frees the handle.
    pub fn free<U: Units, M: PhysMemory>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        owner: Owner,
        handle: u16,
    ) -> Result<(), IommuError> {
        let placement = self.placement(owner, handle)?;
        if let Some(unit) = placement.unit {
            self.clear(units, memory, owner, handle, unit)?;
        }
        if let Some(slot) = self.placements.get_mut(usize::from(handle)) {
            *slot = None;
        }
        Ok(())
    }

    /// The raw entry behind `handle`: from the table of the unit holding it, or all zero (not
    /// present) while it is free or allocated but not programmed; `None` beyond the handle
    /// space.
    pub fn entry<M: PhysMemory>(&self, memory: &M, handle: u16) -> Option<Irte> {
        if usize::from(handle) >= IRTE_ENTRIES {
            return None;
        }
        Some(
            self.read(memory, handle)
                .map(|(_, entry)| entry)
                .unwrap_or(Irte([0, 0])),
        )
    }

    /// The raw entry of `handle` in the unit holding it (for tests and diagnostics).
    pub fn read<M: PhysMemory>(&self, memory: &M, handle: u16) -> Option<(usize, Irte)> {
        let unit = self.unit_of(handle)?;
        let entry = self.table(unit)?.read(memory, handle)?;
        Some((unit, entry))
    }
}
