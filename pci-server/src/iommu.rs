//! The pci-server as a client of the iommu-server: it is the one client allowed to move
//! devices between domains (`iommu-api` `AttachDevice`/`DetachDevice`; domain 0 is the
//! quarantine domain). It puts every endpoint in quarantine at boot, and implements
//! `pci_core`'s [`IommuBinding`] for the ownership state machine.

use iommu_api::{
    DeviceRequest, IoapicIrteReply, IoapicIrteRequest, IommuError, IrteRequest, IrteStatusReply,
    Operation, ReplyHeader, MAX_ALIASES as IOMMU_MAX_ALIASES,
};
use pci_api::{Bdf, OwnerId};
use pci_core::ownership::{DmaIdentity, IommuBinding, IommuRefusal};
use sluice_rt::abi::syscall::Selector;
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::wire;
use zerocopy::{FromBytes, IntoBytes};

/// The quarantine domain's handle (`iommu-core`: `domain::QUARANTINE`).
pub const QUARANTINE_DOMAIN: u32 = 0;
/// Most devices whose current domain is tracked.
const MAX_TRACKED: usize = 64;

/// Code of a refusal that is not an iommu-server error (the call itself failed).
pub const CALL_FAILED: u32 = 0;

/// The device request for `device` and `domain`; `None` with more aliases than a message
/// carries.
pub fn device_request(domain: u32, device: &DmaIdentity) -> Option<DeviceRequest> {
    device_request_without(domain, device, |_| false)
}

/// The device request for `device` and `domain` without the aliases `skip` names (requester
/// ids already placed in `domain` for another device of the same group: the iommu-server
/// gives each requester id one device).
pub fn device_request_without(
    domain: u32,
    device: &DmaIdentity,
    skip: impl Fn(Bdf) -> bool,
) -> Option<DeviceRequest> {
    let mut request = DeviceRequest {
        domain,
        device: device.bdf,
        ..DeviceRequest::default()
    };
    let aliases = device
        .requester_ids
        .iter()
        .filter(|id| **id != device.bdf && !skip(**id));
    for (slot, alias) in request.aliases.iter_mut().zip(aliases.clone()) {
        *slot = *alias;
    }
    let count = aliases.count();
    if count > IOMMU_MAX_ALIASES {
        return None;
    }
    request.alias_count = count as u16;
    Some(request)
}

/// Reads the status of a reply (0 = success).
pub fn reply_status(bytes: &[u8]) -> u32 {
    ReplyHeader::read_from_prefix(bytes)
        .map(|(header, _)| header.status)
        .unwrap_or(IommuError::MalformedMessage.code())
}

/// An [`IommuBinding`] that can be told which domain an owner's claim attaches to, and asked
/// what an IRTE says.
pub trait DomainBinding: IommuBinding {
    /// `attach_owner(owner, ..)` attaches to `domain` until told otherwise.
    fn set_owner_domain(&mut self, owner: OwnerId, domain: u32);
    /// What IRTE `handle` says (`iommu-api` `QueryIrte`, read-only); the refusal carries the
    /// iommu-server's error code (or [`CALL_FAILED`]).
    fn irte_status(&mut self, handle: u16) -> Result<IrteStatusReply, IommuRefusal>;
    /// An IRTE for IOAPIC pin `gsi` carrying `owner`'s INTx (`iommu-api`
    /// `AllocateIoapicIrte`).
    fn allocate_ioapic_irte(
        &mut self,
        gsi: u32,
        owner: OwnerId,
    ) -> Result<IoapicIrteReply, IommuRefusal>;
    /// Frees an IRTE this server allocated (`FreeIrte`).
    fn free_irte(&mut self, handle: u16) -> Result<(), IommuRefusal>;
}

impl DomainBinding for IommuClient {
    fn set_owner_domain(&mut self, owner: OwnerId, domain: u32) {
        self.owner_domain = Some((owner, domain));
    }

    fn irte_status(&mut self, handle: u16) -> Result<IrteStatusReply, IommuRefusal> {
        let request = IrteRequest {
            handle,
            reserved: 0,
        };
        self.ask(Operation::QueryIrte, request.as_bytes())
    }

    fn allocate_ioapic_irte(
        &mut self,
        gsi: u32,
        owner: OwnerId,
    ) -> Result<IoapicIrteReply, IommuRefusal> {
        let request = IoapicIrteRequest {
            gsi,
            owner: owner.0,
        };
        self.ask(Operation::AllocateIoapicIrte, request.as_bytes())
    }

    fn free_irte(&mut self, handle: u16) -> Result<(), IommuRefusal> {
        let request = IrteRequest {
            handle,
            reserved: 0,
        };
        self.call(Operation::FreeIrte, request.as_bytes())
    }
}

/// The iommu-server, over its portal.
pub struct IommuClient {
    /// The server thread's own message buffer (used between requests it serves, never while
    /// another message is being read from it).
    buffer: MessageBuffer,
    portal: Selector,
    /// (device, domain it is attached to) as this server put it.
    placed: heapless::Vec<(Bdf, u32), MAX_TRACKED>,
    /// The domain an `attach_owner` call attaches to (set by the claim being served).
    pub owner_domain: Option<(OwnerId, u32)>,
}

impl IommuClient {
    /// A client calling through `portal`.
    pub fn new(buffer: MessageBuffer, portal: Selector) -> Self {
        IommuClient {
            buffer,
            portal,
            placed: heapless::Vec::new(),
            owner_domain: None,
        }
    }

    /// A call whose reply carries a `T` after the header.
    fn ask<T: FromBytes>(&mut self, operation: Operation, bytes: &[u8]) -> Result<T, IommuRefusal> {
        let (reply, _) = wire::call(&mut self.buffer, self.portal, operation as u16, bytes, None)
            .map_err(|_| IommuRefusal(CALL_FAILED))?;
        match reply_status(reply.as_slice()) {
            0 => {}
            code => return Err(IommuRefusal(code)),
        }
        let body = reply
            .as_slice()
            .get(core::mem::size_of::<ReplyHeader>()..)
            .unwrap_or(&[]);
        T::read_from_bytes(body).map_err(|_| IommuRefusal(IommuError::MalformedMessage.code()))
    }

    pub(crate) fn call(&mut self, operation: Operation, bytes: &[u8]) -> Result<(), IommuRefusal> {
        let (reply, _) = wire::call(&mut self.buffer, self.portal, operation as u16, bytes, None)
            .map_err(|_| IommuRefusal(CALL_FAILED))?;
        match reply_status(reply.as_slice()) {
            0 => Ok(()),
            code => Err(IommuRefusal(code)),
        }
    }

    fn domain_of(&self, bdf: Bdf) -> Option<u32> {
        self.placed
            .iter()
            .find(|(placed, _)| *placed == bdf)
            .map(|(_, domain)| *domain)
    }

    fn record(&mut self, bdf: Bdf, domain: u32) {
        match self.placed.iter_mut().find(|(placed, _)| *placed == bdf) {
            Some(entry) => entry.1 = domain,
            None => {
                let _ = self.placed.push((bdf, domain));
            }
        }
    }

    fn attach(&mut self, domain: u32, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        // An alias another function of the group already put in this domain stays there: the
        // function's DMA under that requester id is already where it must be.
        let request = device_request_without(domain, device, |alias| {
            self.domain_of(alias) == Some(domain)
        })
        .ok_or(IommuRefusal(IommuError::InvalidAliases.code()))?;
        self.call(Operation::AttachDevice, request.as_bytes())?;
        self.record(device.bdf, domain);
        let count = usize::from(request.alias_count);
        for alias in request.aliases.iter().take(count) {
            self.record(Bdf::from_requester_id(alias.0), domain);
        }
        Ok(())
    }
}

impl IommuBinding for IommuClient {
    fn attach_quarantine(&mut self, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        match self.domain_of(device.bdf) {
            Some(domain) if domain != QUARANTINE_DOMAIN => {
                let request = device_request(domain, device)
                    .ok_or(IommuRefusal(IommuError::InvalidAliases.code()))?;
                self.call(Operation::DetachDevice, request.as_bytes())?;
                self.record(device.bdf, QUARANTINE_DOMAIN);
                Ok(())
            }
            _ => self.attach(QUARANTINE_DOMAIN, device),
        }
    }

    fn attach_owner(&mut self, owner: OwnerId, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        match self.owner_domain {
            Some((expected, domain)) if expected == owner => self.attach(domain, device),
            _ => Err(IommuRefusal(IommuError::UnknownDomain.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_carry_the_aliases_but_not_the_device_itself() {
        let device = Bdf::new(8, 1, 0).unwrap();
        let alias = Bdf::new(8, 0, 0).unwrap();
        let mut requester_ids = heapless::Vec::new();
        requester_ids.push(device).unwrap();
        requester_ids.push(alias).unwrap();
        let request = device_request(
            5,
            &DmaIdentity {
                bdf: device,
                requester_ids,
            },
        )
        .unwrap();
        assert_eq!(request.domain, 5);
        assert_eq!(request.device, iommu_api::Bdf(0x0808));
        assert_eq!(request.alias_count, 1);
        assert_eq!(request.aliases[0], iommu_api::Bdf(0x0800));
        assert_eq!(request.aliases[1], iommu_api::Bdf(0));
    }

    #[test]
    fn aliases_already_placed_by_a_group_member_are_left_out() {
        let device = Bdf::new(6, 1, 0).unwrap();
        let alias = Bdf::new(6, 0, 0).unwrap();
        let mut requester_ids = heapless::Vec::new();
        requester_ids.push(device).unwrap();
        requester_ids.push(alias).unwrap();
        let identity = DmaIdentity {
            bdf: device,
            requester_ids,
        };
        let request = device_request_without(0, &identity, |id| id == alias).unwrap();
        assert_eq!(request.alias_count, 0);
        assert_eq!(request.aliases[0], iommu_api::Bdf(0));
        let request = device_request_without(0, &identity, |_| false).unwrap();
        assert_eq!(request.alias_count, 1);
    }

    #[test]
    fn reply_status_reads_the_header_or_reports_a_malformed_reply() {
        let ok = ReplyHeader::default();
        assert_eq!(reply_status(ok.as_bytes()), 0);
        let refused = ReplyHeader {
            status: IommuError::DeviceBusy.code(),
            reserved: 0,
        };
        assert_eq!(reply_status(refused.as_bytes()), 24);
        assert_eq!(reply_status(&[1, 2]), IommuError::MalformedMessage.code());
    }
}
