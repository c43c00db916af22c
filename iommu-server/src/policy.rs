//! Who may ask the iommu-server for what. The kernel tells the server who called (the id of
//! the portal, which init sets to the caller's child number); this module turns that into a
//! caller class and checks the requests `iommu-core` does not judge on its own:
//!
//! - only the pci-server moves devices between domains (it decided the ownership);
//! - an IRTE may deliver only to the caller's own interrupt line (vector `0x30 + line` on
//!   CPU 0, `docs/kernel.md` "Interrupts"), fixed and edge-triggered, and must verify a
//!   requester id the caller's domain holds;
//! - fault reports wait per client until taken.

use iommu_api::request::{
    DeliveryMode, DestinationMode, IrteSettings, SourceValidation, TriggerMode,
};
use iommu_api::{Bdf, FaultReport, IommuError};
use iommu_core::domain::ClientId;

/// Vector of interrupt line 0 (`docs/kernel.md`: line L arrives as vector 0x30 + L on CPU 0).
pub const LINE_VECTOR_BASE: u32 = 0x30;
/// Highest vector a line can have (lines use vectors 0x30..=0xef).
pub const LAST_LINE_VECTOR: u32 = 0xef;
/// Most owners (guests) the policy knows lines for.
pub const MAX_OWNERS: u64 = 64;

/// What a caller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The pci-server: moves devices between domains.
    DeviceManager,
    /// The owner of guest `guest`'s devices (a driver or VMM).
    Owner {
        /// The guest index.
        guest: u64,
    },
    /// Anyone else (may create domains and map its own memory, nothing device-related).
    Other,
}

/// The caller classes and interrupt lines, from init's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The pci-server's portal id.
    pub device_manager: u64,
    /// The portal id of guest 0's owner; guest g's is this + g.
    pub first_owner: u64,
    /// Guest 0's MSI line; guest g's is this + g.
    pub first_owner_line: u32,
    /// The system allows passthrough without interrupt remapping.
    pub insecure_no_interrupt_remapping: bool,
    /// Lines below this are IOAPIC pins (the kernel's first MSI line, which is the fault
    /// event line init gives the server).
    pub ioapic_pins: u32,
}

impl Policy {
    /// The class of the caller behind `portal_id`.
    pub fn classify(&self, portal_id: u64) -> Caller {
        if portal_id == self.device_manager {
            return Caller::DeviceManager;
        }
        match portal_id.checked_sub(self.first_owner) {
            Some(guest) if guest < MAX_OWNERS => Caller::Owner { guest },
            _ => Caller::Other,
        }
    }

    /// The vector of the caller's own MSI line, if it is an owner.
    pub fn owner_vector(&self, portal_id: u64) -> Option<u8> {
        let Caller::Owner { guest } = self.classify(portal_id) else {
            return None;
        };
        let line = u64::from(self.first_owner_line).checked_add(guest)?;
        let vector = u64::from(LINE_VECTOR_BASE).checked_add(line)?;
        (vector <= u64::from(LAST_LINE_VECTOR)).then_some(vector as u8)
    }

    /// Checks an IRTE `portal_id` wants to program; `owner_of` says which client's domain
    /// holds a requester id.
    pub fn check_irte(
        &self,
        portal_id: u64,
        settings: &IrteSettings,
        owner_of: impl Fn(Bdf) -> Option<ClientId>,
    ) -> Result<(), IommuError> {
        let vector = self.owner_vector(portal_id).ok_or(IommuError::NotOwner)?;
        if settings.vector != vector {
            return Err(IommuError::VectorNotOwned);
        }
        let plain = settings.delivery_mode == DeliveryMode::Fixed
            && settings.trigger_mode == TriggerMode::Edge
            && settings.destination_mode == DestinationMode::Physical
            && settings.destination == 0;
        if !plain {
            return Err(IommuError::InvalidIrteConfiguration);
        }
        let caller = Some(ClientId(portal_id as u32));
        match settings.source {
            SourceValidation::RequesterId {
                source_id,
                qualifier: 0,
            } if owner_of(source_id) == caller => Ok(()),
            SourceValidation::BusRange { start_bus, end_bus }
                if start_bus == end_bus && owner_of(Bdf(u16::from(start_bus) << 8)) == caller =>
            {
                Ok(())
            }
            _ => Err(IommuError::NotOwner),
        }
    }
}

/// Most fault reports kept for all clients together (the oldest go first).
pub const MAX_PENDING_FAULTS: usize = 32;

/// Fault reports waiting for their device's owner.
#[derive(Clone, Debug, Default)]
pub struct FaultQueues {
    pending: heapless::Deque<(ClientId, FaultReport), MAX_PENDING_FAULTS>,
}

impl FaultQueues {
    /// Queues `report` for `client`, dropping the oldest report when full.
    pub fn push(&mut self, client: ClientId, report: FaultReport) {
        if self.pending.is_full() {
            let _ = self.pending.pop_front();
        }
        let _ = self.pending.push_back((client, report));
    }

    /// The oldest report for `client`.
    pub fn take(&mut self, client: ClientId) -> Result<FaultReport, IommuError> {
        let position = self
            .pending
            .iter()
            .position(|(owner, _)| *owner == client)
            .ok_or(IommuError::NoFaultPending)?;
        let mut kept: heapless::Deque<(ClientId, FaultReport), MAX_PENDING_FAULTS> =
            heapless::Deque::new();
        let mut taken = None;
        for (index, entry) in self.pending.iter().enumerate() {
            if index == position {
                taken = Some(entry.1);
            } else {
                let _ = kept.push_back(*entry);
            }
        }
        self.pending = kept;
        taken.ok_or(IommuError::NoFaultPending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        device_manager: 2,
        first_owner: 32,
        first_owner_line: 25,
        insecure_no_interrupt_remapping: false,
        ioapic_pins: 24,
    };

    fn settings(vector: u8, source: SourceValidation) -> IrteSettings {
        IrteSettings {
            vector,
            destination: 0,
            delivery_mode: DeliveryMode::Fixed,
            trigger_mode: TriggerMode::Edge,
            destination_mode: DestinationMode::Physical,
            redirection_hint: false,
            source,
        }
    }

    #[test]
    fn callers_are_classified_by_portal_id() {
        assert_eq!(POLICY.classify(2), Caller::DeviceManager);
        assert_eq!(POLICY.classify(33), Caller::Owner { guest: 1 });
        assert_eq!(POLICY.classify(3), Caller::Other);
        assert_eq!(POLICY.classify(32 + MAX_OWNERS), Caller::Other);
        assert_eq!(POLICY.owner_vector(32), Some(0x30 + 25));
        assert_eq!(POLICY.owner_vector(34), Some(0x30 + 27));
        assert_eq!(POLICY.owner_vector(2), None);
    }

    #[test]
    fn irtes_must_target_the_callers_line_and_verify_its_device() {
        let device = Bdf(0x0600);
        let owner_of = |bdf: Bdf| (bdf == device).then_some(ClientId(32));
        let source = SourceValidation::RequesterId {
            source_id: device,
            qualifier: 0,
        };
        assert_eq!(
            POLICY.check_irte(32, &settings(0x49, source), owner_of),
            Ok(())
        );
        assert_eq!(
            POLICY.check_irte(32, &settings(0x4a, source), owner_of),
            Err(IommuError::VectorNotOwned)
        );
        assert_eq!(
            POLICY.check_irte(33, &settings(0x4a, source), owner_of),
            Err(IommuError::NotOwner),
            "guest 1's owner does not hold the device"
        );
        assert_eq!(
            POLICY.check_irte(2, &settings(0x49, source), owner_of),
            Err(IommuError::NotOwner),
            "the pci-server has no line"
        );
        let mut level = settings(0x49, source);
        level.trigger_mode = TriggerMode::Level;
        assert_eq!(
            POLICY.check_irte(32, &level, owner_of),
            Err(IommuError::InvalidIrteConfiguration)
        );
        let loose = SourceValidation::RequesterId {
            source_id: device,
            qualifier: 3,
        };
        assert_eq!(
            POLICY.check_irte(32, &settings(0x49, loose), owner_of),
            Err(IommuError::NotOwner)
        );
        let bus = SourceValidation::BusRange {
            start_bus: 6,
            end_bus: 6,
        };
        assert_eq!(
            POLICY.check_irte(32, &settings(0x49, bus), owner_of),
            Ok(())
        );
    }

    #[test]
    fn fault_reports_wait_for_their_owner() {
        let mut queues = FaultQueues::default();
        let report = |address| FaultReport {
            address,
            ..FaultReport::default()
        };
        queues.push(ClientId(32), report(0x1000));
        queues.push(ClientId(33), report(0x2000));
        queues.push(ClientId(32), report(0x3000));
        assert_eq!(queues.take(ClientId(32)).map(|r| r.address), Ok(0x1000));
        assert_eq!(queues.take(ClientId(32)).map(|r| r.address), Ok(0x3000));
        assert_eq!(queues.take(ClientId(32)), Err(IommuError::NoFaultPending));
        for index in 0..(MAX_PENDING_FAULTS as u64 + 3) {
            queues.push(ClientId(40), report(index));
        }
        assert_eq!(queues.take(ClientId(40)).map(|r| r.address), Ok(3));
        assert_eq!(
            queues.take(ClientId(33)),
            Err(IommuError::NoFaultPending),
            "dropped when full"
        );
    }
}
