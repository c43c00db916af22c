//! Host tests of `RouteIntx` through the server's request path on the q35 fake (edu at
//! 09:00.0 behind root port 00:05.0, INTA -> PIRQF -> GSI 21): the capability flow (the
//! owner's notification in, the bound line with `ACKNOWLEDGE` out), the order of the steps,
//! every refusal undoing what it did, and release taking the line back.

use pci_api::{IntxRouteReply, IntxRouteRequest, Operation, OwnerId, PciError};
use pci_core::fake::q35;
use pci_core::ownership::IommuRefusal;
use pci_core::registers::{header, msi, Command};
use pci_core::ConfigSpace;
use sluice_rt::abi::syscall::{InterruptRights, Selector, Status};
use zerocopy::{FromBytes, IntoBytes};

use crate::intx::InterruptLines;
use crate::msix_tests::{claim, server, TestServer, OTHER, OWNER};

/// The IOAPIC's source id the fake iommu-server reports (QEMU's 255:00.0).
const IOAPIC: u16 = 0xff00;
/// Where the owner's notification lands in the server's table.
const NOTIFICATION: Selector = Selector(21);

/// What the kernel was asked, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineCall {
    Bind {
        gsi: u32,
        notification: Selector,
        bit: u8,
    },
    Remap {
        line: Selector,
        handle: u16,
    },
    Unbind(Selector),
    Drop(Selector),
}

/// The kernel's interrupt calls, recorded; refusals scripted.
#[derive(Default)]
pub(crate) struct FakeLines {
    /// The notification the next request carries.
    pub received: Option<Selector>,
    pub calls: Vec<LineCall>,
    pub refuse_bind: Option<Status>,
    pub refuse_remap: Option<Status>,
}

impl InterruptLines for FakeLines {
    fn take_notification(&mut self) -> Option<Selector> {
        self.received.take()
    }
    fn bind(&mut self, gsi: u32, notification: Selector, bit: u8) -> Result<Selector, Status> {
        if let Some(status) = self.refuse_bind {
            return Err(status);
        }
        self.calls.push(LineCall::Bind {
            gsi,
            notification,
            bit,
        });
        Ok(Selector(22))
    }
    fn remap(&mut self, line: Selector, handle: u16) -> Result<(), Status> {
        if let Some(status) = self.refuse_remap {
            return Err(status);
        }
        self.calls.push(LineCall::Remap { line, handle });
        Ok(())
    }
    fn unbind(&mut self, line: Selector) {
        self.calls.push(LineCall::Unbind(line));
    }
    fn drop_capability(&mut self, selector: Selector) {
        self.calls.push(LineCall::Drop(selector));
    }
}

/// The iommu-server's IOAPIC entries: handles from 7 on, one per GSI.
#[derive(Default)]
pub(crate) struct FakeIoapicEntries {
    pub allocated: Vec<(u16, u32, OwnerId)>,
    pub freed: Vec<u16>,
    pub refuse: Option<u32>,
}

impl FakeIoapicEntries {
    pub(crate) fn allocate(
        &mut self,
        gsi: u32,
        owner: OwnerId,
    ) -> Result<iommu_api::IoapicIrteReply, IommuRefusal> {
        if let Some(code) = self.refuse {
            return Err(IommuRefusal(code));
        }
        if self.allocated.iter().any(|(_, known, _)| *known == gsi) {
            return Err(IommuRefusal(iommu_api::IommuError::GsiInUse.code()));
        }
        let handle = 7 + (self.allocated.len() + self.freed.len()) as u16;
        self.allocated.push((handle, gsi, owner));
        Ok(iommu_api::IoapicIrteReply {
            handle,
            source_id: iommu_api::Bdf(IOAPIC),
            vector: (0x30 + gsi) as u8,
            unit: 0,
            reserved: 0,
        })
    }

    pub(crate) fn free(&mut self, handle: u16) -> Result<(), IommuRefusal> {
        let position = self
            .allocated
            .iter()
            .position(|(known, _, _)| *known == handle)
            .ok_or(IommuRefusal(iommu_api::IommuError::UnknownIrte.code()))?;
        self.allocated.remove(position);
        self.freed.push(handle);
        Ok(())
    }
}

fn route(
    server: &mut TestServer,
    caller: OwnerId,
    bdf: pci_api::Bdf,
    bit: u8,
) -> crate::service::Response {
    let request = IntxRouteRequest {
        bdf,
        bit,
        reserved: 0,
    };
    server.handle(caller, Operation::RouteIntx as u16, request.as_bytes())
}

fn command(server: &TestServer) -> Command {
    Command::from_bits_retain(server.config.read16(q35::EDU, header::COMMAND))
}

fn claimed_edu() -> Box<TestServer> {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::EDU);
    server.lines.received = Some(NOTIFICATION);
    server
}

#[test]
fn the_owner_gets_its_line_bound_remapped_and_acknowledge_only() {
    let mut server = claimed_edu();
    let edu = server.inventory.get(q35::EDU).unwrap().clone();
    let msi_control = edu.capabilities.msi.unwrap().offset + msi::CONTROL;
    let control = server.config.read16(q35::EDU, msi_control);
    server
        .config
        .write16(q35::EDU, msi_control, control | msi::ENABLE);
    let response = route(&mut server, OWNER, q35::EDU, 3);
    assert_eq!(response.status, 0);
    let reply = IntxRouteReply::read_from_bytes(&response.body).unwrap();
    assert_eq!(
        reply,
        IntxRouteReply {
            gsi: 21,
            irte_handle: 7,
            pin: 1,
            root_device: 5,
            source_id: pci_api::Bdf::from_requester_id(IOAPIC),
            root_pin: 1,
            bridges: 1,
        }
    );
    assert_eq!(response.capability, Some(Selector(22)));
    assert_eq!(
        response.capability_rights,
        InterruptRights::ACKNOWLEDGE.bits(),
        "never REMAP: the owner cannot aim its pin at another entry"
    );
    assert_eq!(
        server.lines.calls,
        vec![
            LineCall::Bind {
                gsi: 21,
                notification: NOTIFICATION,
                bit: 3
            },
            LineCall::Remap {
                line: Selector(22),
                handle: 7
            },
            LineCall::Drop(NOTIFICATION),
        ]
    );
    assert_eq!(server.iommu.2.allocated, vec![(7, 21, OWNER)]);
    assert!(!command(&server).contains(Command::INTX_DISABLE), "INTx on");
    assert_eq!(
        server.config.read16(q35::EDU, msi_control) & msi::ENABLE,
        0,
        "MSI off: a function with MSI enabled does not use INTx"
    );
    // A second route of the same function is refused and changes nothing.
    server.lines.received = Some(NOTIFICATION);
    let calls = server.lines.calls.len();
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 3).status,
        PciError::IntxAlreadyRouted.code()
    );
    assert_eq!(
        server.lines.calls.len(),
        calls + 1,
        "only the notification dropped"
    );
    assert_eq!(
        server.lines.calls.last(),
        Some(&LineCall::Drop(NOTIFICATION))
    );
}

#[test]
fn refusals_before_binding_touch_nothing_but_the_notification() {
    let mut server = claimed_edu();
    server.lines.received = None;
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 0).status,
        PciError::MissingCapability.code()
    );
    assert!(server.lines.calls.is_empty());
    for (caller, bdf, error) in [
        (OTHER, q35::EDU, PciError::NotOwner),
        (OWNER, q35::NVME, PciError::NotOwner),
        (
            OWNER,
            pci_api::Bdf::new(0x30, 0, 0).unwrap(),
            PciError::NoSuchFunction,
        ),
    ] {
        server.lines.received = Some(NOTIFICATION);
        server.lines.calls.clear();
        assert_eq!(
            route(&mut server, caller, bdf, 0).status,
            error.code(),
            "{bdf}"
        );
        assert_eq!(server.lines.calls, vec![LineCall::Drop(NOTIFICATION)]);
    }
    assert!(server.iommu.2.allocated.is_empty());
    // The nvme has no INTx pin in the fake (Interrupt Pin 0).
    claim(&mut server, q35::NVME);
    server.lines.received = Some(NOTIFICATION);
    server.lines.calls.clear();
    assert_eq!(
        route(&mut server, OWNER, q35::NVME, 0).status,
        PciError::NoInterruptPin.code()
    );
    assert_eq!(server.lines.calls, vec![LineCall::Drop(NOTIFICATION)]);
}

#[test]
fn a_busy_line_or_a_refused_entry_is_undone() {
    let mut server = claimed_edu();
    let edu = server.inventory.get(q35::EDU).unwrap().clone();
    let msi_control = edu.capabilities.msi.unwrap().offset + msi::CONTROL;
    let control = server.config.read16(q35::EDU, msi_control);
    server
        .config
        .write16(q35::EDU, msi_control, control | msi::ENABLE);
    let before = server.config.read16(q35::EDU, header::COMMAND);
    server.lines.refuse_bind = Some(Status::Busy);
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 0).status,
        PciError::IntxLineBusy.code()
    );
    assert_eq!(server.lines.calls, vec![LineCall::Drop(NOTIFICATION)]);
    assert!(server.iommu.2.allocated.is_empty());
    assert_eq!(
        server.config.read16(q35::EDU, header::COMMAND),
        before,
        "a refusal puts Command back"
    );
    assert_ne!(
        server.config.read16(q35::EDU, msi_control) & msi::ENABLE,
        0,
        "and MSI"
    );

    server.lines.refuse_bind = None;
    server.lines.received = Some(NOTIFICATION);
    server.lines.calls.clear();
    server.iommu.2.refuse = Some(iommu_api::IommuError::GsiInUse.code());
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 0).status,
        PciError::IntxLineBusy.code()
    );
    server.iommu.2.refuse = Some(iommu_api::IommuError::AmbiguousIoapic.code());
    server.lines.received = Some(NOTIFICATION);
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 0).status,
        PciError::IommuRefused.code()
    );
    assert!(
        server
            .lines
            .calls
            .iter()
            .filter(|call| matches!(call, LineCall::Bind { .. }))
            .count()
            == 2
    );
    assert_eq!(
        server
            .lines
            .calls
            .iter()
            .filter(|call| **call == LineCall::Unbind(Selector(22)))
            .count(),
        2,
        "each bound line taken back"
    );

    server.iommu.2.refuse = None;
    server.lines.refuse_remap = Some(Status::InvalidArgument);
    server.lines.received = Some(NOTIFICATION);
    assert_eq!(
        route(&mut server, OWNER, q35::EDU, 0).status,
        PciError::InterruptRoutingFailed.code()
    );
    assert!(server.iommu.2.allocated.is_empty());
    assert_eq!(server.iommu.2.freed.len(), 1, "the entry freed again");
    assert_eq!(server.config.read16(q35::EDU, header::COMMAND), before);
    assert_ne!(server.config.read16(q35::EDU, msi_control) & msi::ENABLE, 0);
    let calls = &server.lines.calls;
    assert_eq!(
        calls.get(calls.len() - 2..),
        Some(&[LineCall::Unbind(Selector(22)), LineCall::Drop(NOTIFICATION)][..])
    );
    assert!(server.intx.of(q35::EDU).is_none());
}

#[test]
fn release_takes_the_line_back_and_a_new_claim_routes_again() {
    let mut server = claimed_edu();
    assert_eq!(route(&mut server, OWNER, q35::EDU, 1).status, 0);
    let release = pci_api::ReleaseRequest {
        bdf: q35::EDU,
        reserved: 0,
        owner: OWNER,
    };
    assert_eq!(
        server
            .handle(OWNER, Operation::Release as u16, release.as_bytes())
            .status,
        0
    );
    assert!(server.lines.calls.contains(&LineCall::Unbind(Selector(22))));
    assert_eq!(server.iommu.2.freed, vec![7]);
    assert!(server.intx.of(q35::EDU).is_none());
    claim(&mut server, q35::EDU);
    server.lines.received = Some(NOTIFICATION);
    let response = route(&mut server, OWNER, q35::EDU, 1);
    assert_eq!(response.status, 0);
    let reply = IntxRouteReply::read_from_bytes(&response.body).unwrap();
    assert_eq!((reply.gsi, reply.irte_handle), (21, 8));
}
