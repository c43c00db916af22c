//! The iommu-server's portal: every `iommu-api` request is decoded
//! (`iommu_api::Request::decode`), checked against the caller's class ([`crate::policy`]) and
//! then against the server's state by `iommu-core`; the reply is a `ReplyHeader` (status 0 or
//! an `IommuError` code) followed by the operation's reply struct. A refused request changed
//! nothing.
//!
//! Capabilities a request carries arrive at the server's inbox (`sluice_rt::wire::INBOX`) and
//! are moved to a slot of their own before anything else happens ([`Capabilities`]).

use iommu_api::request::SourceValidation;
use iommu_api::request::{DeviceArguments, MapArguments};
use iommu_api::{
    Bdf, CreateDomainReply, DelegateMemoryReply, DelegatedMemory, HostPhys, IommuError, IrteReply,
    IrteStatusReply, MsiMessageReply, ReplyHeader, Request, Rights,
};
use iommu_core::clock::Clock;
use iommu_core::domain::{overlaps_msi_window, ClientId, DomainManager, QUARANTINE};
use iommu_core::fault::FaultRecord;
use iommu_core::interrupt_remapping::{remappable_msi, InterruptRemapping, Irte};
use iommu_core::memory::{FrameAllocator, PhysMemory};
use iommu_core::registers::VtdRegisters;
use iommu_core::units::{UnitSet, Units};
use zerocopy::IntoBytes;

use crate::policy::{Caller, FaultQueues, Policy};

/// Most domains whose owner the server remembers (as many as `iommu-core` allows).
const MAX_DOMAINS: usize = iommu_core::domain::MAX_DOMAINS;
/// Most fault subscriptions with a notification.
const MAX_SUBSCRIPTIONS: usize = 16;

/// The kernel services a request may need: capabilities it carried and what they name.
pub trait Capabilities {
    /// Moves the capability that arrived with the request (rights as sent) to a slot of the
    /// server's own; `None` if the request carried none or the move was refused.
    fn take_received(&mut self, rights: u64) -> Option<u32>;
    /// The host-physical range of a memory capability (`memory_physical`), if it has
    /// `DMA_MAP`; the size is found by asking page by page from the end.
    fn physical_range(&mut self, memory: u32) -> Option<(u64, u64)>;
    /// Whether the memory capability allows mapping with `rights` (tried on the server itself).
    fn allows(&mut self, memory: u32, rights: Rights) -> bool;
    /// Signals bit 0 of a notification.
    fn signal(&mut self, notification: u32);
    /// Drops a capability the server no longer keeps.
    fn drop(&mut self, selector: u32);
}

/// Everything the server holds for its units.
pub struct Iommu<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator> {
    /// Every DRHD unit of the DMAR (up or not) and which device each translates.
    pub units: UnitSet<R, C>,
    pub manager: DomainManager,
    /// The interrupt remapping tables of the units that have remapping on.
    pub remapping: InterruptRemapping,
    pub memory: M,
    pub frames: A,
    pub policy: Policy,
    pub faults: FaultQueues,
    /// (domain handle, owner) of every client domain.
    pub domain_owners: heapless::Vec<(u32, ClientId), MAX_DOMAINS>,
    /// (client, notification) to signal when a fault report is queued for it.
    pub subscriptions: heapless::Vec<(ClientId, u32), MAX_SUBSCRIPTIONS>,
    /// The IOAPIC pins with an IRTE (`AllocateIoapicIrte`).
    pub ioapic_pins: crate::ioapic_pins::IoapicPins,
    /// The pci-server's bridge report ([`crate::bridges`]).
    pub bridges: crate::bridges::BridgeRouting,
}

/// Reply bytes: a header and a body.
pub struct Reply {
    bytes: heapless::Vec<u8, 64>,
}

impl Reply {
    /// A reply refusing with `error`.
    pub fn refusal(error: IommuError) -> Reply {
        Reply::error(error)
    }

    fn error(error: IommuError) -> Reply {
        let header = ReplyHeader {
            status: error.code(),
            reserved: 0,
        };
        Reply {
            bytes: heapless::Vec::from_slice(header.as_bytes()).unwrap_or_default(),
        }
    }

    pub(crate) fn ok(body: &[u8]) -> Reply {
        let mut bytes: heapless::Vec<u8, 64> =
            heapless::Vec::from_slice(ReplyHeader::default().as_bytes()).unwrap_or_default();
        if bytes.extend_from_slice(body).is_err() {
            return Reply::error(IommuError::MalformedMessage);
        }
        Reply { bytes }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
}

impl<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator> Iommu<R, C, M, A> {
    /// Answers operation `operation` with `bytes` from the caller behind `portal_id`.
    pub fn handle<K: Capabilities>(
        &mut self,
        kernel: &mut K,
        portal_id: u64,
        operation: u16,
        bytes: &[u8],
    ) -> Reply {
        let result = Request::decode(u32::from(operation), bytes)
            .and_then(|request| self.serve(kernel, portal_id, request));
        result.unwrap_or_else(Reply::error)
    }

    /// The unit that translates the requests (and interrupts) an IRTE's source validation
    /// names: the requester id, or function 0 of the bus of a one-bus range.
    fn irte_unit(&self, source: &SourceValidation) -> Result<usize, IommuError> {
        let device = match *source {
            SourceValidation::RequesterId { source_id, .. } => source_id,
            SourceValidation::BusRange { start_bus, .. } => Bdf(u16::from(start_bus) << 8),
        };
        self.units.route(device)
    }

    /// The unit and source id of the IOAPIC with enumeration id `id`, from the DMAR's device
    /// scopes (VT-d spec 8.3.1.1): its pins are remapped through that unit (see
    /// `ioapic_pins`, which takes the DMAR's only IOAPIC).
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn ioapic(&self, id: u8) -> Option<(usize, Bdf)> {
        self.units.topology().ioapic(id)
    }

    /// The unit and source id of HPET number `id`.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn hpet(&self, id: u8) -> Option<(usize, Bdf)> {
        self.units.topology().hpet(id)
    }

    fn owner_of_domain(&self, domain: u32) -> Result<ClientId, IommuError> {
        self.domain_owners
            .iter()
            .find(|(handle, _)| *handle == domain)
            .map(|(_, owner)| *owner)
            .ok_or(IommuError::UnknownDomain)
    }

    fn serve<K: Capabilities>(
        &mut self,
        kernel: &mut K,
        portal_id: u64,
        request: Request,
    ) -> Result<Reply, IommuError> {
        let client = ClientId(u32::try_from(portal_id).map_err(|_| IommuError::NotOwner)?);
        let caller = self.policy.classify(portal_id);
        match request {
            Request::CreateDomain => {
                if self.domain_owners.is_full() {
                    return Err(IommuError::DomainLimitReached);
                }
                let domain =
                    self.manager
                        .create_domain(&mut self.memory, &mut self.frames, client)?;
                let _ = self.domain_owners.push((domain, client));
                let address_width = 9 * u32::from(self.manager.levels().count()) + 12;
                let reply = CreateDomainReply {
                    domain,
                    address_width,
                };
                Ok(Reply::ok(reply.as_bytes()))
            }
            Request::DestroyDomain { domain } => {
                self.manager.destroy_domain(
                    &mut self.units,
                    &mut self.memory,
                    &mut self.frames,
                    client,
                    domain,
                )?;
                self.domain_owners.retain(|(handle, _)| *handle != domain);
                Ok(Reply::ok(&[]))
            }
            Request::DelegateMemory { rights } => self.delegate(kernel, client, rights),
            Request::Map(arguments) => self.map(client, &arguments),
            Request::Unmap { domain, iova, size } => {
                self.manager.unmap(
                    &mut self.units,
                    &mut self.memory,
                    &mut self.frames,
                    client,
                    domain,
                    iova,
                    size,
                )?;
                Ok(Reply::ok(&[]))
            }
            Request::AttachDevice(device) => {
                if caller != Caller::DeviceManager {
                    return Err(IommuError::NotOwner);
                }
                self.attach(&device)
            }
            Request::DetachDevice(device) => {
                if caller != Caller::DeviceManager {
                    return Err(IommuError::NotOwner);
                }
                let owner = self.owner_of_domain(device.domain)?;
                self.manager
                    .detach(&mut self.units, &mut self.memory, owner, &device)?;
                Ok(Reply::ok(&[]))
            }
            Request::AllocateIrte => {
                if self.remapping.enabled().is_empty() {
                    return Err(IommuError::InterruptRemappingUnavailable);
                }
                if self.policy.owner_vector(portal_id).is_none() {
                    return Err(IommuError::NotOwner);
                }
                let handle = self.remapping.allocate(client.0)?;
                let reply = IrteReply {
                    handle,
                    reserved: 0,
                };
                Ok(Reply::ok(reply.as_bytes()))
            }
            Request::ProgramIrte { handle, settings } => {
                let manager = &self.manager;
                self.policy
                    .check_irte(portal_id, &settings, |bdf| manager.device_owner(bdf))?;
                let unit = self.irte_unit(&settings.source)?;
                self.remapping.program(
                    &mut self.units,
                    &mut self.memory,
                    client.0,
                    handle,
                    unit,
                    &settings,
                )?;
                let message = remappable_msi(handle);
                let reply = MsiMessageReply {
                    address_low: message.address as u32,
                    address_high: (message.address >> 32) as u32,
                    data: message.data,
                    reserved: 0,
                };
                Ok(Reply::ok(reply.as_bytes()))
            }
            Request::FreeIrte { handle } => {
                if self.remapping.enabled().is_empty() {
                    return Err(IommuError::InterruptRemappingUnavailable);
                }
                self.remapping
                    .free(&mut self.units, &mut self.memory, client.0, handle)?;
                if let Some(pin) = self.ioapic_pins.forget_handle(handle) {
                    sluice_rt::log!(
                        "iommu-server: IOAPIC pin {} released: IRTE {handle} freed (was for owner {})",
                        pin.gsi,
                        pin.owner
                    );
                }
                Ok(Reply::ok(&[]))
            }
            Request::SubscribeFaults { device } => self.subscribe(kernel, client, device),
            Request::QueryIrte { handle } => {
                if caller != Caller::DeviceManager {
                    return Err(IommuError::NotOwner);
                }
                if self.remapping.enabled().is_empty() {
                    return Err(IommuError::InterruptRemappingUnavailable);
                }
                let entry = self
                    .remapping
                    .entry(&self.memory, handle)
                    .ok_or(IommuError::UnknownIrte)?;
                Ok(Reply::ok(irte_status(&self.policy, &entry).as_bytes()))
            }
            Request::AllocateIoapicIrte { gsi, owner } => {
                let reply = self.allocate_ioapic_irte(portal_id, gsi, owner)?;
                Ok(Reply::ok(reply.as_bytes()))
            }
            Request::TakeFault => {
                let report = self.faults.take(client)?;
                Ok(Reply::ok(report.as_bytes()))
            }
            Request::ReportBridges(report) => {
                if caller != Caller::DeviceManager {
                    return Err(IommuError::NotOwner);
                }
                self.report_bridges(&report)
            }
        }
    }

    fn delegate<K: Capabilities>(
        &mut self,
        kernel: &mut K,
        client: ClientId,
        rights: Rights,
    ) -> Result<Reply, IommuError> {
        // DMA_MAP plus the CPU rights matching the device rights (sluice-abi MemoryRights).
        let memory_rights = (1 << 3)
            | u64::from(rights.contains(Rights::READ))
            | (u64::from(rights.contains(Rights::WRITE)) << 1);
        let selector = kernel
            .take_received(memory_rights)
            .ok_or(IommuError::MissingCapability)?;
        let checked = (|| {
            let (base, size) = kernel
                .physical_range(selector)
                .ok_or(IommuError::MissingCapability)?;
            if !kernel.allows(selector, rights) {
                return Err(IommuError::RightsExceeded);
            }
            if overlaps_msi_window(base, size) {
                return Err(IommuError::MsiWindowPhysical);
            }
            let delegated = DelegatedMemory {
                base: HostPhys(base),
                size,
                rights,
            };
            let handle = self.manager.accept_delegation(client, delegated)?;
            Ok((handle, size))
        })();
        match checked {
            Ok((memory, size)) => {
                let reply = DelegateMemoryReply {
                    memory,
                    reserved: 0,
                    size,
                };
                Ok(Reply::ok(reply.as_bytes()))
            }
            Err(error) => {
                kernel.drop(selector);
                Err(error)
            }
        }
    }

    fn map(&mut self, client: ClientId, arguments: &MapArguments) -> Result<Reply, IommuError> {
        self.manager.map(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            client,
            arguments,
        )?;
        Ok(Reply::ok(&[]))
    }

    fn attach(&mut self, device: &DeviceArguments) -> Result<Reply, IommuError> {
        if device.domain == QUARANTINE {
            self.manager.quarantine_device(
                &mut self.units,
                &mut self.memory,
                &mut self.frames,
                device.device,
                device.aliases(),
            )?;
            return Ok(Reply::ok(&[]));
        }
        let owner = self.owner_of_domain(device.domain)?;
        // Every requester id's unit must remap interrupts (unless the system opted out).
        let enabled = self.remapping.enabled();
        for bdf in core::iter::once(&device.device).chain(device.aliases()) {
            let unit = self.units.route(*bdf)?;
            if !enabled.contains(unit) && !self.policy.insecure_no_interrupt_remapping {
                return Err(IommuError::InterruptRemappingUnavailable);
            }
        }
        self.manager.attach(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            owner,
            device,
        )?;
        Ok(Reply::ok(&[]))
    }

    fn subscribe<K: Capabilities>(
        &mut self,
        kernel: &mut K,
        client: ClientId,
        device: Bdf,
    ) -> Result<Reply, IommuError> {
        // The notification comes with SIGNAL (sluice-abi NotificationRights bit 0).
        let notification = kernel
            .take_received(1)
            .ok_or(IommuError::MissingCapability)?;
        let known = self
            .subscriptions
            .iter()
            .any(|(subscriber, _)| *subscriber == client);
        let result = if !known && self.subscriptions.is_full() {
            Err(IommuError::SubscriberLimitReached)
        } else {
            self.manager.subscribe_faults(client, device)
        };
        match result {
            Ok(()) => {
                match self
                    .subscriptions
                    .iter_mut()
                    .find(|(subscriber, _)| *subscriber == client)
                {
                    Some(entry) => {
                        kernel.drop(entry.1);
                        entry.1 = notification;
                    }
                    None => {
                        let _ = self.subscriptions.push((client, notification));
                    }
                }
                Ok(Reply::ok(&[]))
            }
            Err(error) => {
                kernel.drop(notification);
                Err(error)
            }
        }
    }

    /// Reads and clears every pending fault record of every up unit: each is logged as the
    /// one-line fault report, queued for the device's owner (if it subscribed) and its
    /// notification signalled. Returns how many records were read.
    pub fn sweep_faults<K: Capabilities>(&mut self, kernel: &mut K) -> u32 {
        let mut records: heapless::Vec<FaultRecord, 64> = heapless::Vec::new();
        let mut unlogged = 0u32;
        let (count, overflowed) = self.units.read_faults(|_, record| {
            if records.push(record).is_err() {
                unlogged = unlogged.saturating_add(1);
            }
        });
        if unlogged > 0 {
            sluice_rt::log!(
                "iommu: {unlogged} fault record(s) read but not logged (too many at once)"
            );
        }
        for record in &records {
            sluice_rt::log!("{record}");
            if let Some(owner) = self.manager.route_fault(record) {
                self.faults.push(owner, record.report());
                if let Some((_, notification)) = self
                    .subscriptions
                    .iter()
                    .find(|(client, _)| *client == owner)
                {
                    kernel.signal(*notification);
                }
            }
        }
        for unit in overflowed.iter() {
            sluice_rt::log!(
                "iommu: fault records overflowed on unit {unit}: some faults were lost"
            );
        }
        count
    }
}

/// What the pci-server learns about an IRTE (`QueryIrte`), decoded from the entry itself (VT-d
/// spec 9.10: P bit 0, V bits 23:16; SID bits 79:64, SQ 81:80, SVT 83:82). The owner is the
/// client whose line the vector is: `ProgramIrte` lets only the client that allocated an entry
/// write it (`IrteTable::program`), and only with its own line's vector
/// (`Policy::check_irte`), so a present entry delivers to the line of the client that
/// allocated it.
fn irte_status(policy: &crate::policy::Policy, entry: &Irte) -> IrteStatusReply {
    let [low, high] = entry.0;
    let present = low & 1 != 0;
    let vector = ((low >> 16) & 0xff) as u8;
    let owner = if present {
        (0..crate::policy::MAX_OWNERS)
            .filter_map(|guest| policy.first_owner.checked_add(guest))
            .find(|portal| policy.owner_vector(*portal) == Some(vector))
            .and_then(|portal| u32::try_from(portal).ok())
            .unwrap_or(0)
    } else {
        0
    };
    IrteStatusReply {
        owner,
        present: u8::from(present),
        source_validation: ((high >> 18) & 0x3) as u8,
        source_qualifier: ((high >> 16) & 0x3) as u8,
        vector,
        source_id: Bdf((high & 0xffff) as u16),
        reserved: 0,
    }
}
