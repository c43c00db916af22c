//! IRTEs for IOAPIC pins (`iommu-api` `AllocateIoapicIrte`): with interrupt remapping on,
//! compatibility-format interrupts are blocked, so a pin that carries a passed-through
//! device's INTx is programmed in remappable format (VT-d spec 5.1.5.1) and delivers through an
//! entry this module writes: vector 0x30 + GSI (the line's, `docs/kernel.md` "Interrupts") on
//! APIC 0, fixed, level-triggered, physical, verifying the IOAPIC's requester id from the DMAR
//! device scope (VT-d spec 8.3.1.1, 9.10: SVT 1, SQ 0).
//!
//! Who may ask: only the pci-server, which computed the GSI from a device the owner claimed
//! and binds the line for the owner; the kernel lets only the holder of the bound line's
//! `REMAP` right point the pin at the entry. One entry per GSI: an INTx line is never shared
//! between owners.
//!
//! Which IOAPIC has the GSI needs the MADT's GSI bases, which the server does not have. With
//! exactly one IOAPIC in the DMAR it has GSI base 0 (every x86 machine's first IOAPIC); with
//! several, the request is refused as `AmbiguousIoapic` rather than guessed (and the bring-up
//! log says so).

use iommu_api::request::{
    DeliveryMode, DestinationMode, IrteSettings, SourceValidation, TriggerMode,
};
use iommu_api::{Bdf, IoapicIrteReply, IommuError};
use iommu_core::clock::Clock;
use iommu_core::dmar::Topology;
use iommu_core::domain::ClientId;
use iommu_core::memory::{FrameAllocator, PhysMemory};
use iommu_core::registers::VtdRegisters;

use crate::policy::{Caller, LINE_VECTOR_BASE};
use crate::service::Iommu;

/// Most IOAPIC pins with an entry (one IOAPIC's worth: the kernel's IOAPIC lines are below
/// its first MSI line, 24).
pub const MAX_PINS: usize = 24;

/// One pin's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinEntry {
    /// The GSI.
    pub gsi: u32,
    /// The IRTE.
    pub handle: u16,
    /// The owner the pin carries INTx for.
    pub owner: u32,
}

/// The pins with an entry.
#[derive(Clone, Debug, Default)]
pub struct IoapicPins {
    entries: heapless::Vec<PinEntry, MAX_PINS>,
}

impl IoapicPins {
    /// The entry of `gsi`, if it has one.
    pub fn of_gsi(&self, gsi: u32) -> Option<PinEntry> {
        self.entries.iter().copied().find(|entry| entry.gsi == gsi)
    }

    /// Forgets the pin whose entry is `handle` (it was freed); returns what it was.
    pub fn forget_handle(&mut self, handle: u16) -> Option<PinEntry> {
        let position = self
            .entries
            .iter()
            .position(|entry| entry.handle == handle)?;
        Some(self.entries.swap_remove(position))
    }
}

/// The one IOAPIC the DMAR lists: (unit, its source id, its enumeration id).
/// `NoIoapicScope` with none, `AmbiguousIoapic` with several.
pub fn single_ioapic(topology: &Topology) -> Result<(usize, Bdf, u8), IommuError> {
    let mut found = None;
    for (index, unit) in topology.units().iter().enumerate() {
        for source in &unit.ioapics {
            if found.is_some() {
                return Err(IommuError::AmbiguousIoapic);
            }
            found = Some((index, source.source_id, source.enumeration_id));
        }
    }
    found.ok_or(IommuError::NoIoapicScope)
}

/// How many IOAPICs the DMAR lists (for the bring-up log).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub fn ioapic_count(topology: &Topology) -> usize {
    topology.units().iter().map(|unit| unit.ioapics.len()).sum()
}

impl<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator> Iommu<R, C, M, A> {
    /// `AllocateIoapicIrte` from the caller behind `portal_id` (see the module documentation).
    /// Everything is checked before a handle is taken; a failed write frees it again.
    pub fn allocate_ioapic_irte(
        &mut self,
        portal_id: u64,
        gsi: u32,
        owner: u32,
    ) -> Result<IoapicIrteReply, IommuError> {
        if self.policy.classify(portal_id) != Caller::DeviceManager {
            return Err(IommuError::NotOwner);
        }
        if !matches!(self.policy.classify(u64::from(owner)), Caller::Owner { .. }) {
            return Err(IommuError::NotOwner);
        }
        if gsi >= self.policy.ioapic_pins {
            return Err(IommuError::NotAnIoapicPin);
        }
        let vector = LINE_VECTOR_BASE
            .checked_add(gsi)
            .and_then(|vector| u8::try_from(vector).ok())
            .ok_or(IommuError::NotAnIoapicPin)?;
        if self.remapping.enabled().is_empty() {
            return Err(IommuError::InterruptRemappingUnavailable);
        }
        let (unit, source_id, _) = single_ioapic(self.units.topology())?;
        if !self.remapping.enabled().contains(unit) {
            return Err(IommuError::InterruptRemappingUnavailable);
        }
        if self.ioapic_pins.of_gsi(gsi).is_some() {
            return Err(IommuError::GsiInUse);
        }
        if self.ioapic_pins.entries.is_full() {
            return Err(IommuError::IrteExhausted);
        }
        let settings = IrteSettings {
            vector,
            destination: 0,
            delivery_mode: DeliveryMode::Fixed,
            trigger_mode: TriggerMode::Level,
            destination_mode: DestinationMode::Physical,
            redirection_hint: false,
            source: SourceValidation::RequesterId {
                source_id,
                qualifier: 0,
            },
        };
        let client = ClientId(u32::try_from(portal_id).map_err(|_| IommuError::NotOwner)?);
        let handle = self.remapping.allocate(client.0)?;
        let programmed = self.remapping.program(
            &mut self.units,
            &mut self.memory,
            client.0,
            handle,
            unit,
            &settings,
        );
        if let Err(error) = programmed {
            let _ = self
                .remapping
                .free(&mut self.units, &mut self.memory, client.0, handle);
            return Err(error);
        }
        let _ = self
            .ioapic_pins
            .entries
            .push(PinEntry { gsi, handle, owner });
        sluice_rt::log!(
            "iommu-server: IOAPIC pin {gsi} -> IRTE {handle} (unit {unit}): vector {vector:#x}, \
             level-triggered, source id {source_id} verified, for owner {owner}"
        );
        Ok(IoapicIrteReply {
            handle,
            source_id,
            vector,
            unit: u8::try_from(unit).unwrap_or(u8::MAX),
            reserved: 0,
        })
    }
}
