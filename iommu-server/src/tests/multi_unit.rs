//! The server on a two-unit desktop DMAR (unit 0: the integrated GPU 00:02.0 listed
//! explicitly; unit 1: INCLUDE_PCI_ALL with the IOAPIC): bring-up of each unit given, requests
//! routed to the right unit, faults of either unit routed to the owner, IRTEs placed in the
//! unit of their source, and the named refusals.

use super::*;
use iommu_core::units::Units;

const GPU: Bdf = Bdf(0x0010);
const NIC: Bdf = Bdf(0x0300);

fn desktop() -> Vec<u8> {
    table(
        39,
        0x1,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(1, 0xfed9_1000, &[scope(3, 2, 0xf0, &[(0x1f, 0)])]),
        ],
    )
}

/// A server over the desktop DMAR given register pages for `units` only.
fn desktop_server(units: &[usize]) -> Server {
    let memory = FakeMemory::new();
    let bytes: &'static [u8] = desktop().leak();
    let dmar = Dmar::parse(bytes).unwrap();
    let scope = crate::bringup::scope(&dmar).unwrap();
    let given: Vec<_> = units
        .iter()
        .map(|index| UnitRegisters {
            index: *index,
            registers: FakeVtd::new(FakeVtdConfig::qemu(), memory.clone()),
            clock: FakeClock::default(),
        })
        .collect();
    let frames = FakeFrameAllocator::new(HostPhys(0x1000_0000), 512);
    bring_up(given, memory, frames, scope, 0x48, policy(false)).unwrap()
}

fn attach(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    domain: u32,
    device: Bdf,
) -> Result<Vec<u8>, IommuError> {
    let request = DeviceRequest {
        domain,
        device,
        alias_count: 0,
        aliases: [Bdf::default(); MAX_ALIASES],
    };
    call(
        server,
        kernel,
        PCI,
        Operation::AttachDevice,
        request.as_bytes(),
    )
}

#[test]
fn every_unit_given_comes_up_with_fault_reporting_and_translation() {
    let mut server = desktop_server(&[0, 1]);
    assert_eq!(server.units.iter_up().count(), 2);
    assert!(server.remapping.enabled().contains(0) && server.remapping.enabled().contains(1));
    for index in 0..2 {
        let fake = unit_fake(&mut server, index);
        assert_eq!(fake.read32(Register32::FaultEventData), 0x48);
        assert_eq!(fake.status() >> 31, 1, "unit {index}: translation on");
    }
    assert_eq!(
        server.ioapic(2),
        Some((1, Bdf::new(0xf0, 0x1f, 0).unwrap()))
    );
    assert_eq!(server.ioapic(3), None);
}

#[test]
fn a_domain_over_both_units_translates_each_device_through_its_own_unit() {
    let mut server = desktop_server(&[0, 1]);
    let mut kernel = FakeCapabilities::default();
    attach(&mut server, &mut kernel, 0, GPU).unwrap();
    attach(&mut server, &mut kernel, 0, NIC).unwrap();
    let domain = super::create_domain(&mut server, &mut kernel);
    kernel.received = Some((40, 0b1011));
    kernel.ranges.push((40, BUFFER, 0x1_0000));
    let request = DelegateMemoryRequest {
        rights: 3,
        reserved: 0,
    };
    let body = call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::DelegateMemory,
        request.as_bytes(),
    )
    .unwrap();
    let memory = DelegateMemoryReply::read_from_bytes(&body).unwrap().memory;
    let map = MapRequest {
        domain,
        memory,
        offset: 0,
        iova: IoVirt(0x10_0000),
        size: 0x1_0000,
        rights: 3,
        reserved: 0,
    };
    call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::Map,
        map.as_bytes(),
    )
    .unwrap();
    attach(&mut server, &mut kernel, domain, GPU).unwrap();
    attach(&mut server, &mut kernel, domain, NIC).unwrap();
    assert_eq!(
        unit_fake(&mut server, 0).dma(GPU, IoVirt(0x10_0000), AccessKind::Read),
        Ok(HostPhys(BUFFER))
    );
    assert_eq!(
        unit_fake(&mut server, 1).dma(NIC, IoVirt(0x10_1000), AccessKind::Write),
        Ok(HostPhys(BUFFER + 0x1000))
    );
    // A fault on unit 1 reaches the owner with unit 1's requester id.
    kernel.received = Some((42, 1));
    let subscribe = SubscribeFaultsRequest {
        device: NIC,
        reserved: 0,
    };
    call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::SubscribeFaults,
        subscribe.as_bytes(),
    )
    .unwrap();
    assert!(unit_fake(&mut server, 1)
        .dma(NIC, IoVirt(0x30_0000), AccessKind::Write)
        .is_err());
    assert_eq!(server.sweep_faults(&mut kernel), 1);
    assert_eq!(kernel.signalled, vec![42]);
    let take = TakeFaultRequest { reserved: 0 };
    let body = call(
        &mut server,
        &mut kernel,
        OWNER,
        Operation::TakeFault,
        take.as_bytes(),
    )
    .unwrap();
    let report = FaultReport::read_from_bytes(&body).unwrap();
    assert_eq!(report.device, NIC);
    assert_eq!(report.address, 0x30_0000);
    // An IRTE for the NIC lands in unit 1's table, one for the GPU in unit 0's.
    let mut handles = Vec::new();
    for device in [NIC, GPU] {
        let handle = super::allocate_irte(&mut server, &mut kernel, OWNER);
        let mut request = irte(0x30 + 25, device);
        request.handle = handle;
        let body = call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::ProgramIrte,
            request.as_bytes(),
        )
        .unwrap();
        let message = MsiMessageReply::read_from_bytes(&body).unwrap();
        handles.push((handle, device, message));
    }
    let (nic_handle, _, nic_message) = handles[0];
    let (gpu_handle, _, gpu_message) = handles[1];
    assert_eq!(server.remapping.unit_of(nic_handle), Some(1));
    assert_eq!(server.remapping.unit_of(gpu_handle), Some(0));
    assert_eq!(
        unit_fake(&mut server, 1)
            .interrupt(NIC, nic_message.address_low, nic_message.data)
            .map(|interrupt| interrupt.vector),
        Ok(0x30 + 25)
    );
    assert_eq!(
        unit_fake(&mut server, 0)
            .interrupt(GPU, gpu_message.address_low, gpu_message.data)
            .map(|interrupt| interrupt.vector),
        Ok(0x30 + 25)
    );
    assert!(unit_fake(&mut server, 0)
        .interrupt(NIC, nic_message.address_low, nic_message.data)
        .is_err());
}

#[test]
fn devices_of_a_unit_without_a_register_page_are_refused() {
    let mut server = desktop_server(&[0]);
    let mut kernel = FakeCapabilities::default();
    assert_eq!(server.units.iter_up().count(), 1);
    assert_eq!(server.units.route(NIC), Err(IommuError::UnitNotBroughtUp));
    assert_eq!(
        attach(&mut server, &mut kernel, 0, NIC),
        Err(IommuError::UnitNotBroughtUp)
    );
    attach(&mut server, &mut kernel, 0, GPU).unwrap();
    let handle = super::allocate_irte(&mut server, &mut kernel, OWNER);
    let mut request = irte(0x30 + 25, NIC);
    request.handle = handle;
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            OWNER,
            Operation::ProgramIrte,
            request.as_bytes()
        ),
        Err(IommuError::NotOwner),
        "the policy check comes first: the owner holds no NIC"
    );
    assert_eq!(server.remapping.unit_of(handle), None);
}

#[test]
fn a_device_no_unit_covers_is_refused() {
    let bytes = table(
        39,
        0x1,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 0, &[(3, 0)])]),
        ],
    );
    let dmar = Dmar::parse(bytes.leak()).unwrap();
    let scope = crate::bringup::scope(&dmar).unwrap();
    let memory = FakeMemory::new();
    let given: Vec<_> = (0..2)
        .map(|index| UnitRegisters {
            index,
            registers: FakeVtd::new(FakeVtdConfig::qemu(), memory.clone()),
            clock: FakeClock::default(),
        })
        .collect();
    let frames = FakeFrameAllocator::new(HostPhys(0x1000_0000), 512);
    let mut server = bring_up(given, memory, frames, scope, 0x48, policy(false)).unwrap();
    let mut kernel = FakeCapabilities::default();
    assert_eq!(
        attach(&mut server, &mut kernel, 0, NIC),
        Err(IommuError::NoUnitForDevice)
    );
    attach(&mut server, &mut kernel, 0, Bdf::new(0, 3, 0).unwrap()).unwrap();
}

#[test]
fn inconsistent_dmars_are_refused_before_any_unit_is_touched() {
    let overlap = table(
        39,
        0x1,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(1, 0xfed9_1000, &[scope(1, 0, 0, &[(2, 0)])]),
        ],
    );
    let dmar = Dmar::parse(overlap.leak()).unwrap();
    assert!(matches!(
        crate::bringup::scope(&dmar),
        Err(iommu_core::dmar::TopologyError::Overlap { .. })
    ));
    let empty = table(39, 0x1, &[]);
    let dmar = Dmar::parse(empty.leak()).unwrap();
    assert!(matches!(
        crate::bringup::scope(&dmar),
        Err(iommu_core::dmar::TopologyError::NoUnits)
    ));
}
