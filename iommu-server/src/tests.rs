//! The server's request handling end to end on the fake VT-d unit of `iommu-core`: bring-up,
//! who may do what, delegation through (faked) capabilities, device DMA translated and
//! blocked, faults logged, routed and taken, IRTEs checked and programmed.

use iommu_api::{
    Bdf, CreateDomainReply, DelegateMemoryReply, DelegateMemoryRequest, DeviceRequest, FaultReport,
    IoVirt, IommuError, IrteReply, IrteStatusReply, MapRequest, MsiMessageReply, Operation,
    ProgramIrteRequest, ReplyHeader, Rights, SubscribeFaultsRequest, TakeFaultRequest, MAX_ALIASES,
};
use iommu_core::dmar::{Dmar, Topology};
use iommu_core::fake::dmar::{drhd, scope, table};
use iommu_core::fake::{
    AccessKind, FakeClock, FakeFrameAllocator, FakeMemory, FakeVtd, FakeVtdConfig,
};
use iommu_core::registers::{Register32, VtdRegisters};
use iommu_core::HostPhys;
use zerocopy::{FromBytes, IntoBytes};

mod bridge_report;
mod ioapic_pins;
mod multi_unit;

use crate::bringup::{bring_up, Scope, UnitRegisters, FAULT_EVENT_ADDRESS};
use crate::policy::Policy;
use crate::service::{Capabilities, Iommu};

const PCI: u64 = 2;
const OWNER: u64 = 32;
const OTHER_OWNER: u64 = 33;
const DEVICE: Bdf = Bdf(0x0600);
const BUFFER: u64 = 0x0100_0000;

/// Capabilities as a test scripts them.
#[derive(Default)]
struct FakeCapabilities {
    /// What the next request carries: (selector it lands in, rights it allows).
    received: Option<(u32, u64)>,
    /// (selector, base, size) of memory capabilities.
    ranges: Vec<(u32, u64, u64)>,
    signalled: Vec<u32>,
    dropped: Vec<u32>,
}

impl Capabilities for FakeCapabilities {
    fn take_received(&mut self, rights: u64) -> Option<u32> {
        let (selector, allowed) = self.received.take()?;
        (rights & !allowed == 0).then_some(selector)
    }
    fn physical_range(&mut self, memory: u32) -> Option<(u64, u64)> {
        self.ranges
            .iter()
            .find(|(selector, _, _)| *selector == memory)
            .map(|(_, base, size)| (*base, *size))
    }
    fn allows(&mut self, _memory: u32, _rights: Rights) -> bool {
        true
    }
    fn signal(&mut self, notification: u32) {
        self.signalled.push(notification);
    }
    fn drop(&mut self, selector: u32) {
        self.dropped.push(selector);
    }
}

type Server = Iommu<FakeVtd, FakeClock, FakeMemory, FakeFrameAllocator>;

fn policy(insecure: bool) -> Policy {
    Policy {
        device_manager: PCI,
        first_owner: OWNER,
        first_owner_line: 25,
        insecure_no_interrupt_remapping: insecure,
        ioapic_pins: 24,
    }
}

/// QEMU's q35 DMAR shape: one unit without INCLUDE_PCI_ALL listing bus-0 devices, which
/// therefore translates every device.
fn qemu_topology() -> Topology {
    let bytes = table(
        39,
        0x3,
        &[drhd(
            0,
            0xfed9_0000,
            &[scope(3, 0, 0xff, &[(0, 0)]), scope(1, 0, 0, &[(1, 0)])],
        )],
    );
    let dmar = Dmar::parse(&bytes).unwrap();
    Topology::from_dmar(&dmar, &mut NoBridges).unwrap()
}

struct NoBridges;

impl iommu_core::dmar::BusWalk for NoBridges {
    fn secondary_bus(&mut self, _bridge: Bdf) -> Option<u8> {
        None
    }
}

fn server(config: FakeVtdConfig, insecure: bool) -> Server {
    let memory = FakeMemory::new();
    let fake = FakeVtd::new(config, memory.clone());
    let scope = Scope {
        topology: qemu_topology(),
        reserved: heapless::Vec::new(),
        interrupt_remapping: true,
        dmar: None,
    };
    let frames = FakeFrameAllocator::new(HostPhys(0x1000_0000), 512);
    let unit = UnitRegisters {
        index: 0,
        registers: fake,
        clock: FakeClock::default(),
    };
    bring_up([unit], memory, frames, scope, 0x48, policy(insecure)).unwrap()
}

/// Unit `index`'s fake registers.
fn unit_fake(server: &mut Server, index: usize) -> &mut FakeVtd {
    server.units.get_mut(index).unwrap().registers_mut()
}

fn call(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    caller: u64,
    operation: Operation,
    bytes: &[u8],
) -> Result<Vec<u8>, IommuError> {
    let reply = server.handle(kernel, caller, operation as u16, bytes);
    let (header, body) = ReplyHeader::read_from_prefix(reply.as_slice()).unwrap();
    match header.status {
        0 => Ok(body.to_vec()),
        code => Err(IommuError::from_code(code).unwrap()),
    }
}

/// Allocates an IRTE for `owner` and returns its handle (the request must succeed).
fn allocate_irte(server: &mut Server, kernel: &mut FakeCapabilities, owner: u64) -> u16 {
    let body = call(server, kernel, owner, Operation::AllocateIrte, &[0; 4]).unwrap();
    IrteReply::read_from_bytes(&body).unwrap().handle
}

/// Creates a DMA domain for `OWNER` and returns its number (the request must succeed).
fn create_domain(server: &mut Server, kernel: &mut FakeCapabilities) -> u32 {
    let body = call(server, kernel, OWNER, Operation::CreateDomain, &[0; 4]).unwrap();
    CreateDomainReply::read_from_bytes(&body).unwrap().domain
}

fn device_request(domain: u32) -> DeviceRequest {
    DeviceRequest {
        domain,
        device: DEVICE,
        alias_count: 0,
        aliases: [Bdf::default(); MAX_ALIASES],
    }
}

/// A domain of OWNER with BUFFER delegated and mapped at IOVA 0x10_0000, the device attached.
fn owner_with_device(server: &mut Server, kernel: &mut FakeCapabilities) -> u32 {
    call(
        server,
        kernel,
        PCI,
        Operation::AttachDevice,
        device_request(0).as_bytes(),
    )
    .unwrap();
    let body = call(server, kernel, OWNER, Operation::CreateDomain, &[0; 4]).unwrap();
    let domain = CreateDomainReply::read_from_bytes(&body).unwrap();
    assert_eq!(domain.address_width, 39, "QEMU's unit walks three levels");
    kernel.received = Some((40, 0b1011));
    kernel.ranges.push((40, BUFFER, 0x1_0000));
    let request = DelegateMemoryRequest {
        rights: 3,
        reserved: 0,
    };
    let body = call(
        server,
        kernel,
        OWNER,
        Operation::DelegateMemory,
        request.as_bytes(),
    )
    .unwrap();
    let delegated = DelegateMemoryReply::read_from_bytes(&body).unwrap();
    assert_eq!(delegated.size, 0x1_0000);
    let map = MapRequest {
        domain: domain.domain,
        memory: delegated.memory,
        offset: 0,
        iova: IoVirt(0x10_0000),
        size: 0x1_0000,
        rights: 3,
        reserved: 0,
    };
    call(server, kernel, OWNER, Operation::Map, map.as_bytes()).unwrap();
    let attach = device_request(domain.domain);
    assert_eq!(
        call(
            server,
            kernel,
            OWNER,
            Operation::AttachDevice,
            attach.as_bytes()
        ),
        Err(IommuError::NotOwner),
        "an owner cannot attach devices itself"
    );
    call(
        server,
        kernel,
        PCI,
        Operation::AttachDevice,
        attach.as_bytes(),
    )
    .unwrap();
    domain.domain
}

#[test]
fn bring_up_programs_fault_reporting_and_turns_everything_on() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    assert!(server.remapping.enabled().contains(0));
    let registers = unit_fake(&mut server, 0);
    assert_eq!(registers.read32(Register32::FaultEventData), 0x48);
    assert_eq!(
        registers.read32(Register32::FaultEventAddress),
        FAULT_EVENT_ADDRESS
    );
    assert_eq!(
        registers.read32(Register32::FaultEventControl) >> 31,
        0,
        "unmasked"
    );
    assert_eq!(
        unit_fake(&mut server, 0).status() >> 31,
        1,
        "translation enabled"
    );
}

#[test]
fn device_dma_reaches_only_the_owners_mapping_and_faults_go_to_the_owner() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    owner_with_device(&mut server, &mut kernel);
    let fake = unit_fake(&mut server, 0);
    assert_eq!(
        fake.dma(DEVICE, IoVirt(0x10_0800), AccessKind::Write),
        Ok(HostPhys(BUFFER + 0x800))
    );
    assert!(fake
        .dma(DEVICE, IoVirt(0x20_0000), AccessKind::Write)
        .is_err());
    // Nobody subscribed yet: the fault is logged but queued for no one.
    assert_eq!(server.sweep_faults(&mut kernel), 1);
    let take = TakeFaultRequest { reserved: 0 };
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::TakeFault,
            take.as_bytes()
        ),
        Err(IommuError::NoFaultPending)
    );
    let subscribe = SubscribeFaultsRequest {
        device: DEVICE,
        reserved: 0,
    };
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::SubscribeFaults,
            subscribe.as_bytes()
        ),
        Err(IommuError::MissingCapability),
        "the notification must come with the request"
    );
    kernel.received = Some((41, 1));
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OTHER_OWNER,
            Operation::SubscribeFaults,
            subscribe.as_bytes()
        ),
        Err(IommuError::NotOwner)
    );
    assert_eq!(kernel.dropped, vec![41]);
    kernel.received = Some((42, 1));
    call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::SubscribeFaults,
        subscribe.as_bytes(),
    )
    .unwrap();
    let fake = unit_fake(&mut server, 0);
    assert!(fake
        .dma(DEVICE, IoVirt(0x0abc_d000), AccessKind::Read)
        .is_err());
    assert_eq!(server.sweep_faults(&mut kernel), 1);
    assert_eq!(kernel.signalled, vec![42]);
    let body = call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::TakeFault,
        take.as_bytes(),
    )
    .unwrap();
    let report = FaultReport::read_from_bytes(&body).unwrap();
    assert_eq!(
        (report.device, report.address, report.kind),
        (DEVICE, 0x0abc_d000, 1)
    );
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OTHER_OWNER,
            Operation::TakeFault,
            take.as_bytes()
        ),
        Err(IommuError::NoFaultPending)
    );
}

fn irte(vector: u8, source: Bdf) -> ProgramIrteRequest {
    ProgramIrteRequest {
        handle: 0,
        source_id: source,
        source_validation: 1,
        vector,
        ..Default::default()
    }
}

#[test]
fn irtes_target_only_the_owners_line_and_device() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    owner_with_device(&mut server, &mut kernel);
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            PCI,
            Operation::AllocateIrte,
            &[0; 4]
        ),
        Err(IommuError::NotOwner)
    );
    let handle = allocate_irte(&mut server, &mut kernel, OWNER);
    let mut request = irte(0x30 + 26, DEVICE);
    request.handle = handle;
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::ProgramIrte,
            request.as_bytes()
        ),
        Err(IommuError::VectorNotOwned)
    );
    request.vector = 0x30 + 25;
    request.source_id = Bdf(0x0700);
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::ProgramIrte,
            request.as_bytes()
        ),
        Err(IommuError::NotOwner),
        "the source must be a device in the caller's domain"
    );
    request.source_id = DEVICE;
    let body = call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::ProgramIrte,
        request.as_bytes(),
    )
    .unwrap();
    let message = MsiMessageReply::read_from_bytes(&body).unwrap();
    assert_eq!(message.address_low & 0xfff0_0000, 0xfee0_0000);
    assert_eq!(message.address_low & (1 << 4), 1 << 4, "remappable format");
    let fake = unit_fake(&mut server, 0);
    let delivered = fake
        .interrupt(DEVICE, message.address_low, message.data)
        .unwrap();
    assert_eq!(delivered.vector, 0x30 + 25);
    assert!(fake
        .interrupt(Bdf(0x0700), message.address_low, message.data)
        .is_err());
}

/// Asks (as `caller`) what IRTE `handle` says.
fn query(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    caller: u64,
    handle: u16,
) -> Result<IrteStatusReply, IommuError> {
    let request = iommu_api::IrteRequest {
        handle,
        reserved: 0,
    };
    call(
        server,
        kernel,
        caller,
        Operation::QueryIrte,
        request.as_bytes(),
    )
    .map(|body| IrteStatusReply::read_from_bytes(&body).unwrap())
}

#[test]
fn the_pci_server_alone_learns_whose_line_an_irte_serves_and_nothing_changes() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    owner_with_device(&mut server, &mut kernel);
    let handle = allocate_irte(&mut server, &mut kernel, OWNER);
    // Allocated, not programmed: not present, nobody's.
    let status = query(&mut server, &mut kernel, PCI, handle).unwrap();
    assert_eq!((status.present, status.owner), (0, 0));
    let mut request = irte(0x30 + 25, DEVICE);
    request.handle = handle;
    call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::ProgramIrte,
        request.as_bytes(),
    )
    .unwrap();
    let before = server.remapping.read(&server.memory, handle);
    assert_eq!(before.map(|(unit, _)| unit), Some(0));
    let status = query(&mut server, &mut kernel, PCI, handle).unwrap();
    assert_eq!(
        status,
        IrteStatusReply {
            owner: OWNER as u32,
            present: 1,
            source_validation: 1,
            source_qualifier: 0,
            vector: 0x30 + 25,
            source_id: DEVICE,
            reserved: 0,
        }
    );
    assert_eq!(
        server.remapping.read(&server.memory, handle),
        before,
        "a query writes nothing"
    );
    // Owners may not ask (not even about their own entries); handles beyond the table are unknown.
    assert_eq!(
        query(&mut server, &mut kernel, OWNER, handle),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        query(&mut server, &mut kernel, OTHER_OWNER, handle),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        query(&mut server, &mut kernel, PCI, 256),
        Err(IommuError::UnknownIrte)
    );
    // A freed entry is no one's again.
    let free = iommu_api::IrteRequest {
        handle,
        reserved: 0,
    };
    call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::FreeIrte,
        free.as_bytes(),
    )
    .unwrap();
    let status = query(&mut server, &mut kernel, PCI, handle).unwrap();
    assert_eq!((status.present, status.owner), (0, 0));
}

#[test]
fn without_interrupt_remapping_passthrough_is_refused_unless_allowed() {
    let config = FakeVtdConfig::qemu().without_interrupt_remapping();
    let mut strict = server(config, false);
    let mut kernel = FakeCapabilities::default();
    assert!(strict.remapping.enabled().is_empty());
    call(
        &mut strict,
        &mut kernel,
        PCI,
        Operation::AttachDevice,
        device_request(0).as_bytes(),
    )
    .unwrap();
    let domain = create_domain(&mut strict, &mut kernel);
    assert_eq!(
        call(
            &mut strict,
            &mut kernel,
            PCI,
            Operation::AttachDevice,
            device_request(domain).as_bytes()
        ),
        Err(IommuError::InterruptRemappingUnavailable)
    );
    assert_eq!(
        call(
            &mut strict,
            &mut kernel,
            OWNER,
            Operation::AllocateIrte,
            &[0; 4]
        ),
        Err(IommuError::InterruptRemappingUnavailable)
    );
    let mut allowed = server(config, true);
    call(
        &mut allowed,
        &mut kernel,
        PCI,
        Operation::AttachDevice,
        device_request(0).as_bytes(),
    )
    .unwrap();
    let domain = create_domain(&mut allowed, &mut kernel);
    call(
        &mut allowed,
        &mut kernel,
        PCI,
        Operation::AttachDevice,
        device_request(domain).as_bytes(),
    )
    .unwrap();
}

#[test]
fn delegations_are_checked_before_anything_is_recorded() {
    let mut server = server(FakeVtdConfig::qemu(), false);
    let mut kernel = FakeCapabilities::default();
    let request = DelegateMemoryRequest {
        rights: 3,
        reserved: 0,
    };
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::DelegateMemory,
            request.as_bytes()
        ),
        Err(IommuError::MissingCapability)
    );
    kernel.received = Some((50, 0b1001));
    kernel.ranges.push((50, BUFFER, 0x1000));
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::DelegateMemory,
            request.as_bytes()
        ),
        Err(IommuError::MissingCapability),
        "the capability lacks WRITE"
    );
    kernel.received = Some((51, 0b1011));
    kernel.ranges.push((51, 0xfee0_0000, 0x1000));
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::DelegateMemory,
            request.as_bytes()
        ),
        Err(IommuError::MsiWindowPhysical)
    );
    assert_eq!(kernel.dropped, vec![51]);
    assert_eq!(server.manager.device_domain(DEVICE), None);
    assert_eq!(
        call(&mut server, &mut kernel, OWNER, Operation::Map, &[0; 7]),
        Err(IommuError::MalformedMessage)
    );
}
