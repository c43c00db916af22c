//! The interrupt remapping table (VT-d spec 9.10) and its entries in remapped format.
//!
//! One 4 KiB frame: 256 entries (IRTA_REG.S = 7, 2^(S+1) entries), enough for the devices one
//! server assigns. Enabling follows 6.5.2.7/10.4.32: IRTA, SIRTP, global interrupt entry cache
//! invalidation, then IRE, each with a bounded wait. Compatibility-format interrupts stay
//! blocked (CFI = 0).

use crate::clock::Clock;
use crate::invalidation::descriptor::InterruptEntryGranularity;
use crate::memory::{allocate_zeroed, FrameAllocator, PhysMemory};
use crate::registers::command::GlobalCommand;
use crate::registers::{Register64, VtdRegisters};
use crate::unit::VtdUnit;
use iommu_api::request::{
    DeliveryMode, DestinationMode, IrteSettings, SourceValidation, TriggerMode,
};
use iommu_api::{HostPhys, IommuError};

/// Entries in the table.
pub const IRTE_ENTRIES: usize = 256;
/// IRTA_REG.S for [`IRTE_ENTRIES`]: entries = 2^(S + 1).
const TABLE_SIZE_FIELD: u64 = 7;

/// A remapped-format IRTE (128 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte(pub [u64; 2]);

impl Irte {
    /// Encodes `settings` as a present entry. Low qword: P (0), FPD (1) = 0, DM (2), RH (3),
    /// TM (4), DLM (7:5), IM (15) = 0 remapped, V (23:16), DST (63:32; xAPIC id in 47:40).
    /// High qword: SID (79:64), SQ (81:80), SVT (83:82).
    pub fn encode(settings: &IrteSettings) -> Result<Self, IommuError> {
        if settings.vector < 0x10 || settings.destination > 0xff {
            return Err(IommuError::InvalidIrteConfiguration);
        }
        let delivery: u64 = match settings.delivery_mode {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
        };
        let low = 1
            | (u64::from(settings.destination_mode == DestinationMode::Logical) << 2)
            | (u64::from(settings.redirection_hint) << 3)
            | (u64::from(settings.trigger_mode == TriggerMode::Level) << 4)
            | (delivery << 5)
            | (u64::from(settings.vector) << 16)
            | (u64::from(settings.destination) << 40);
        let high = match settings.source {
            SourceValidation::RequesterId {
                source_id,
                qualifier,
            } => {
                if qualifier > 3 {
                    return Err(IommuError::InvalidIrteConfiguration);
                }
                u64::from(source_id.0) | (u64::from(qualifier) << 16) | (1 << 18)
            }
            SourceValidation::BusRange { start_bus, end_bus } => {
                if start_bus > end_bus {
                    return Err(IommuError::InvalidIrteConfiguration);
                }
                (u64::from(start_bus) << 8) | u64::from(end_bus) | (2 << 18)
            }
        };
        Ok(Self([low, high]))
    }
}

/// Who allocated an entry (the server's client id).
pub type Owner = u32;

/// The table and its allocation state.
#[derive(Debug)]
pub struct IrteTable {
    base: HostPhys,
    owners: [Option<Owner>; IRTE_ENTRIES],
}

impl IrteTable {
    /// Allocates the zeroed table and enables interrupt remapping on `unit`.
    pub fn enable<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator>(
        unit: &mut VtdUnit<R, C>,
        memory: &mut M,
        frames: &mut A,
    ) -> Result<Self, IommuError> {
        if !unit.config().interrupt_remapping || !unit.uses_queued_invalidation() {
            return Err(IommuError::InterruptRemappingUnavailable);
        }
        let base = allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory)?;
        // IRTA: address 63:12, EIME bit 11 = 0 (xAPIC), S 3:0.
        unit.registers_mut().write64(
            Register64::InterruptRemappingTableAddress,
            base.0 | TABLE_SIZE_FIELD,
        );
        let enabled = unit
            .command(GlobalCommand::SET_INTERRUPT_REMAPPING_TABLE_POINTER, true)
            .and_then(|()| {
                unit.invalidate_interrupt_entries(memory, InterruptEntryGranularity::Global)
            })
            .and_then(|()| unit.command(GlobalCommand::INTERRUPT_REMAPPING_ENABLE, true));
        if let Err(error) = enabled {
            frames.free_frame(base);
            return Err(error);
        }
        Ok(Self {
            base,
            owners: [None; IRTE_ENTRIES],
        })
    }

    /// The table's address (IRTA_REG).
    pub fn base(&self) -> HostPhys {
        self.base
    }

    /// Number of entries (2^(IRTA.S + 1)).
    pub fn capacity(&self) -> usize {
        IRTE_ENTRIES
    }

    /// Reserves the lowest free entry for `owner`; it stays not present until programmed.
    pub fn allocate(&mut self, owner: Owner) -> Result<u16, IommuError> {
        let (index, slot) = self
            .owners
            .iter_mut()
            .enumerate()
            .find(|(_, slot)| slot.is_none())
            .ok_or(IommuError::IrteExhausted)?;
        *slot = Some(owner);
        Ok(index as u16)
    }

    /// Reserves entry `handle` for `owner` (a handle the caller chose, e.g. from a handle space
    /// shared by several units); refused if it is out of range or taken.
    pub fn reserve(&mut self, owner: Owner, handle: u16) -> Result<(), IommuError> {
        match self.owners.get_mut(usize::from(handle)) {
            Some(slot @ None) => {
                *slot = Some(owner);
                Ok(())
            }
            Some(Some(_)) => Err(IommuError::NotOwner),
            None => Err(IommuError::UnknownIrte),
        }
    }

    fn check_owner(&self, owner: Owner, handle: u16) -> Result<(), IommuError> {
        match self.owners.get(usize::from(handle)) {
            Some(Some(holder)) if *holder == owner => Ok(()),
            Some(Some(_)) => Err(IommuError::NotOwner),
            _ => Err(IommuError::UnknownIrte),
        }
    }

    fn entry_address(&self, handle: u16) -> HostPhys {
        HostPhys(self.base.0 + u64::from(handle) * 16)
    }

    /// Writes the entry (high qword first, then the low one carrying P) and invalidates its
    /// interrupt entry cache line.
    pub fn program<R: VtdRegisters, C: Clock, M: PhysMemory>(
        &mut self,
        unit: &mut VtdUnit<R, C>,
        memory: &mut M,
        owner: Owner,
        handle: u16,
        settings: &IrteSettings,
    ) -> Result<Irte, IommuError> {
        self.check_owner(owner, handle)?;
        let entry = Irte::encode(settings)?;
        let address = self.entry_address(handle);
        // Not present while half-written.
        memory.write_u64(address, 0);
        memory.write_u64(HostPhys(address.0 + 8), entry.0[1]);
        memory.write_u64(address, entry.0[0]);
        unit.invalidate_interrupt_entries(
            memory,
            InterruptEntryGranularity::Index {
                index: handle,
                index_mask: 0,
            },
        )?;
        Ok(entry)
    }

    /// Clears the entry, invalidates it, and frees it.
    pub fn free<R: VtdRegisters, C: Clock, M: PhysMemory>(
        &mut self,
        unit: &mut VtdUnit<R, C>,
        memory: &mut M,
        owner: Owner,
        handle: u16,
    ) -> Result<(), IommuError> {
        self.check_owner(owner, handle)?;
        let address = self.entry_address(handle);
        memory.write_u64(address, 0);
        memory.write_u64(HostPhys(address.0 + 8), 0);
        unit.invalidate_interrupt_entries(
            memory,
            InterruptEntryGranularity::Index {
                index: handle,
                index_mask: 0,
            },
        )?;
        if let Some(slot) = self.owners.get_mut(usize::from(handle)) {
            *slot = None;
        }
        Ok(())
    }

    /// The raw entry (for tests and diagnostics).
    pub fn read<M: PhysMemory>(&self, memory: &M, handle: u16) -> Option<Irte> {
        (usize::from(handle) < IRTE_ENTRIES).then(|| {
            let address = self.entry_address(handle);
            Irte([
                memory.read_u64(address),
                memory.read_u64(HostPhys(address.0 + 8)),
            ])
        })
    }
}
