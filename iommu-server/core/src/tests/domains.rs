//! DMA domains end to end: map, translate through the fake's hardware walk, rights, MSI window,
//! unmap + flush ordering, quarantine, RMRR identity maps, aliases, validation before mutation.

use super::{bdf, Server, CLIENT, OTHER};
use crate::domain::{QuarantineMode, ReservedRegion, QUARANTINE};
use crate::fake::{AccessKind, FakeEvent, FakeVtdConfig};
use crate::invalidation::descriptor::{Descriptor, IotlbGranularity};
use crate::memory::PhysMemory;
use iommu_api::request::{DeviceArguments, MapArguments};
use iommu_api::{Bdf, HostPhys, IoVirt, IommuError, Rights, MAX_ALIASES};

fn device(domain: u32, device: Bdf, aliases: &[Bdf]) -> DeviceArguments {
    let mut list = [Bdf::default(); MAX_ALIASES];
    list[..aliases.len()].copy_from_slice(aliases);
    DeviceArguments {
        domain,
        device,
        alias_count: aliases.len(),
        aliases: list,
    }
}

fn map_args(
    domain: u32,
    memory: u32,
    offset: u64,
    iova: u64,
    size: u64,
    rights: Rights,
) -> MapArguments {
    MapArguments {
        domain,
        memory,
        offset,
        iova: IoVirt(iova),
        size,
        rights,
    }
}

impl Server {
    fn map(
        &mut self,
        owner: crate::domain::ClientId,
        args: MapArguments,
    ) -> Result<(), IommuError> {
        let hw = &mut self.hardware;
        self.manager
            .map(&mut hw.unit, &mut hw.memory, &mut hw.frames, owner, &args)
    }
    fn unmap(
        &mut self,
        owner: crate::domain::ClientId,
        domain: u32,
        iova: u64,
        size: u64,
    ) -> Result<(), IommuError> {
        let hw = &mut self.hardware;
        self.manager.unmap(
            &mut hw.unit,
            &mut hw.memory,
            &mut hw.frames,
            owner,
            domain,
            IoVirt(iova),
            size,
        )
    }
    fn attach(
        &mut self,
        owner: crate::domain::ClientId,
        args: DeviceArguments,
    ) -> Result<(), IommuError> {
        let hw = &mut self.hardware;
        self.manager
            .attach(&mut hw.unit, &mut hw.memory, &mut hw.frames, owner, &args)
    }
    fn detach(
        &mut self,
        owner: crate::domain::ClientId,
        args: DeviceArguments,
    ) -> Result<(), IommuError> {
        let hw = &mut self.hardware;
        self.manager
            .detach(&mut hw.unit, &mut hw.memory, owner, &args)
    }
    fn quarantine(&mut self, device: Bdf, aliases: &[Bdf]) -> Result<(), IommuError> {
        let hw = &mut self.hardware;
        self.manager.quarantine_device(
            &mut hw.unit,
            &mut hw.memory,
            &mut hw.frames,
            device,
            aliases,
        )
    }
    fn dma(&mut self, source: Bdf, iova: u64, kind: AccessKind) -> Result<HostPhys, u8> {
        self.hardware.fake().dma(source, IoVirt(iova), kind)
    }
}

const NIC: Bdf = match Bdf::new(0, 3, 0) {
    Ok(bdf) => bdf,
    Err(_) => Bdf(0),
};

#[test]
fn mapped_memory_translates_like_hardware() {
    let mut server = Server::qemu();
    let domain = server.create_domain(CLIENT);
    let memory = server.delegate(CLIENT, 0x20_0000, 0x40_0000, Rights::READ | Rights::WRITE);
    server.quarantine(NIC, &[]).unwrap();
    server.attach(CLIENT, device(domain, NIC, &[])).unwrap();
    // 2 MiB at a 2 MiB-aligned IOVA and phys: one superpage; plus a 4 KiB read-only page.
    server
        .map(
            CLIENT,
            map_args(
                domain,
                memory,
                0,
                0x4000_0000,
                0x20_0000,
                Rights::READ | Rights::WRITE,
            ),
        )
        .unwrap();
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0x20_1000, 0x1000, 0x1000, Rights::READ),
        )
        .unwrap();
    let translation = server
        .manager
        .translate(&server.hardware.memory, domain, IoVirt(0x4012_3456))
        .unwrap();
    assert_eq!(translation.page_size, 0x20_0000);
    assert_eq!(
        server.dma(NIC, 0x4012_3456, AccessKind::Write),
        Ok(HostPhys(0x32_3456))
    );
    assert_eq!(
        server.dma(NIC, 0x1008, AccessKind::Read),
        Ok(HostPhys(0x40_1008))
    );
    assert_eq!(
        server.dma(NIC, 0x1008, AccessKind::Write),
        Err(0x5),
        "read-only page refuses writes"
    );
    assert_eq!(
        server.dma(NIC, 0x9000, AccessKind::Read),
        Err(0x6),
        "unmapped page"
    );
    assert_eq!(
        server.dma(NIC, 1 << 39, AccessKind::Read),
        Err(0x4),
        "beyond the 39-bit width"
    );
    assert_eq!(
        server.dma(bdf(0, 4, 0), 0x1000, AccessKind::Read),
        Err(0x2),
        "device never placed"
    );
}

#[test]
fn rights_and_ranges_are_checked_before_anything_changes() {
    let mut server = Server::qemu();
    let domain = server.create_domain(CLIENT);
    let read_only = server.delegate(CLIENT, 0x10_0000, 0x10_000, Rights::READ);
    let others = server.delegate(OTHER, 0x80_0000, 0x1000, Rights::READ | Rights::WRITE);
    let frames_before = server.hardware.frames.allocated_count();
    let cases = [
        (
            map_args(domain, read_only, 0, 0x1000, 0x1000, Rights::WRITE),
            IommuError::RightsExceeded,
        ),
        (
            map_args(
                domain,
                read_only,
                0,
                0x1000,
                0x1000,
                Rights::READ | Rights::WRITE,
            ),
            IommuError::RightsExceeded,
        ),
        (
            map_args(domain, read_only, 0x10_000, 0x1000, 0x1000, Rights::READ),
            IommuError::RangeOutsideMemory,
        ),
        (
            map_args(domain, read_only, 0x8000, 0x1000, 0x9000, Rights::READ),
            IommuError::RangeOutsideMemory,
        ),
        (
            map_args(domain, read_only, 0x800, 0x1000, 0x1000, Rights::READ),
            IommuError::Misaligned,
        ),
        (
            map_args(domain, read_only, 0, 0x1000, 0, Rights::READ),
            IommuError::ZeroSize,
        ),
        (
            map_args(domain, read_only, 0, 1 << 39, 0x1000, Rights::READ),
            IommuError::AddressBeyondWidth,
        ),
        (
            map_args(domain, read_only, 0, u64::MAX - 0xfff, 0x1000, Rights::READ),
            IommuError::AddressOverflow,
        ),
        (
            map_args(domain, others, 0, 0x1000, 0x1000, Rights::READ),
            IommuError::UnknownMemory,
        ),
        (
            map_args(domain, 99, 0, 0x1000, 0x1000, Rights::READ),
            IommuError::UnknownMemory,
        ),
        (
            map_args(domain + 1, read_only, 0, 0x1000, 0x1000, Rights::READ),
            IommuError::UnknownDomain,
        ),
        (
            map_args(QUARANTINE, read_only, 0, 0x1000, 0x1000, Rights::READ),
            IommuError::QuarantineDomain,
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(server.map(CLIENT, args), Err(expected), "{args:?}");
    }
    assert_eq!(
        server.map(
            OTHER,
            map_args(domain, others, 0, 0x1000, 0x1000, Rights::READ)
        ),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        server.hardware.frames.allocated_count(),
        frames_before,
        "no table was allocated"
    );
    assert_eq!(server.manager.mapping_count(domain), 0);
    server
        .map(
            CLIENT,
            map_args(domain, read_only, 0, 0x1000, 0x2000, Rights::READ),
        )
        .unwrap();
    assert_eq!(
        server.map(
            CLIENT,
            map_args(domain, read_only, 0x4000, 0x2000, 0x1000, Rights::READ)
        ),
        Err(IommuError::AlreadyMapped)
    );
}

#[test]
fn the_msi_window_is_never_mapped() {
    let mut server = Server::qemu();
    let domain = server.create_domain(CLIENT);
    let memory = server.delegate(CLIENT, 0x100_0000, 0x20_0000, Rights::READ | Rights::WRITE);
    for iova in [0xfee0_0000, 0xfeef_f000, 0xfedf_f000] {
        let size = if iova == 0xfedf_f000 { 0x2000 } else { 0x1000 };
        assert_eq!(
            server.map(
                CLIENT,
                map_args(domain, memory, 0, iova, size, Rights::WRITE)
            ),
            Err(IommuError::MsiWindow),
            "{iova:#x}"
        );
    }
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0, 0xfef0_0000, 0x1000, Rights::WRITE),
        )
        .unwrap();
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0x1000, 0xfedf_f000, 0x1000, Rights::WRITE),
        )
        .unwrap();
    let window = server.delegate(CLIENT, 0xfee0_0000, 0x1000, Rights::WRITE);
    assert_eq!(
        server.map(
            CLIENT,
            map_args(domain, window, 0, 0x1000, 0x1000, Rights::WRITE)
        ),
        Err(IommuError::MsiWindowPhysical)
    );
}

#[test]
fn unmap_flushes_before_tables_are_reused() {
    let mut server = Server::qemu();
    let domain = server.create_domain(CLIENT);
    let did = server.manager.hardware_id(domain).unwrap();
    let memory = server.delegate(CLIENT, 0x20_0000, 0x10_0000, Rights::READ | Rights::WRITE);
    server.quarantine(NIC, &[]).unwrap();
    server.attach(CLIENT, device(domain, NIC, &[])).unwrap();
    let frames_empty = server.hardware.frames.allocated_count();
    server
        .map(
            CLIENT,
            map_args(
                domain,
                memory,
                0,
                0x7000_0000,
                0x3000,
                Rights::READ | Rights::WRITE,
            ),
        )
        .unwrap();
    assert_eq!(
        server.hardware.frames.allocated_count(),
        frames_empty + 2,
        "level-2 and level-1 tables"
    );
    assert_eq!(
        server.dma(NIC, 0x7000_2000, AccessKind::Read),
        Ok(HostPhys(0x20_2000))
    );
    let events_before = server.hardware.fake().events.len();
    assert_eq!(
        server.unmap(CLIENT, domain, 0x7000_0000, 0x1000),
        Err(IommuError::NotMapped),
        "must be a whole mapping"
    );
    server.unmap(CLIENT, domain, 0x7000_0000, 0x3000).unwrap();
    let new_events: std::vec::Vec<_> = server.hardware.fake().events[events_before..].to_vec();
    assert!(
        new_events.contains(&FakeEvent::Descriptor(Descriptor::Iotlb {
            granularity: IotlbGranularity::Domain(did),
            drain_reads: true,
            drain_writes: true,
        }))
    );
    assert_eq!(
        server.hardware.frames.allocated_count(),
        frames_empty,
        "emptied tables released after the flush"
    );
    assert!(server.hardware.frames.bad_frees.is_empty());
    assert_eq!(server.dma(NIC, 0x7000_2000, AccessKind::Read), Err(0x6));
    assert_eq!(
        server.unmap(CLIENT, domain, 0x7000_0000, 0x3000),
        Err(IommuError::NotMapped)
    );
}

#[test]
fn detached_devices_wait_in_quarantine() {
    let scratch = HostPhys(0x5000_0000);
    let mut server = Server::new(
        FakeVtdConfig::qemu(),
        QuarantineMode::ScratchPage(scratch),
        &[],
    );
    server.quarantine(NIC, &[]).unwrap();
    assert_eq!(server.manager.device_domain(NIC), Some(QUARANTINE));
    assert_eq!(
        server.dma(NIC, 0x1234_5678, AccessKind::Write),
        Ok(HostPhys(0x5000_0678)),
        "scratch page only"
    );
    let domain = server.create_domain(CLIENT);
    let memory = server.delegate(CLIENT, 0x20_0000, 0x1000, Rights::READ | Rights::WRITE);
    server
        .map(
            CLIENT,
            map_args(
                domain,
                memory,
                0,
                0x1000,
                0x1000,
                Rights::READ | Rights::WRITE,
            ),
        )
        .unwrap();
    server.attach(CLIENT, device(domain, NIC, &[])).unwrap();
    assert_eq!(
        server.dma(NIC, 0x1000, AccessKind::Read),
        Ok(HostPhys(0x20_0000))
    );
    assert_eq!(
        server.attach(OTHER, device(domain, NIC, &[])),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        server.detach(CLIENT, device(domain, bdf(0, 9, 0), &[])),
        Err(IommuError::DeviceNotAttached)
    );
    assert_eq!(
        server.hardware.unit.registers_mut().status() & (1 << 31),
        1 << 31,
        "translation stays on"
    );
    let hw = &mut server.hardware;
    assert_eq!(
        server
            .manager
            .destroy_domain(&mut hw.unit, &mut hw.memory, &mut hw.frames, CLIENT, domain),
        Err(IommuError::DomainInUse)
    );
    server.detach(CLIENT, device(domain, NIC, &[])).unwrap();
    assert_eq!(server.manager.device_domain(NIC), Some(QUARANTINE));
    assert_eq!(
        server.dma(NIC, 0x1000, AccessKind::Read),
        Ok(HostPhys(0x5000_0000)),
        "back to the scratch page"
    );
    let hw = &mut server.hardware;
    server
        .manager
        .destroy_domain(&mut hw.unit, &mut hw.memory, &mut hw.frames, CLIENT, domain)
        .unwrap();
    assert!(server.hardware.frames.bad_frees.is_empty());
}

#[test]
fn blocking_quarantine_faults_every_request() {
    let mut server = Server::qemu();
    server.quarantine(NIC, &[]).unwrap();
    assert_eq!(server.dma(NIC, 0x1000, AccessKind::Read), Err(0x6));
    assert_eq!(server.quarantine(NIC, &[]), Ok(()), "idempotent");
    assert_eq!(
        server.quarantine(bdf(0, 5, 0), &[NIC]),
        Err(IommuError::DeviceBusy),
        "alias belongs to another device"
    );
}

#[test]
fn aliases_follow_their_device() {
    let mut server = Server::qemu();
    let bridge_alias = bdf(5, 0, 0);
    let behind = bdf(6, 1, 0);
    server.quarantine(behind, &[bridge_alias]).unwrap();
    let domain = server.create_domain(CLIENT);
    let memory = server.delegate(CLIENT, 0x30_0000, 0x1000, Rights::READ);
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0, 0x8000, 0x1000, Rights::READ),
        )
        .unwrap();
    assert_eq!(server.attach(CLIENT, device(domain, behind, &[])), Ok(()));
    assert_eq!(
        server.dma(bridge_alias, 0x8000, AccessKind::Read),
        Err(0x6),
        "alias still quarantined"
    );
    assert_eq!(
        server.detach(CLIENT, device(domain, behind, &[bridge_alias])),
        Err(IommuError::InvalidAliases)
    );
    server.detach(CLIENT, device(domain, behind, &[])).unwrap();
    server
        .attach(CLIENT, device(domain, behind, &[bridge_alias]))
        .unwrap();
    assert_eq!(
        server.dma(bridge_alias, 0x8000, AccessKind::Read),
        Ok(HostPhys(0x30_0000))
    );
    assert_eq!(
        server.dma(behind, 0x8000, AccessKind::Read),
        Ok(HostPhys(0x30_0000))
    );
    let second = server.create_domain(OTHER);
    assert_eq!(
        server.attach(OTHER, device(second, bdf(7, 0, 0), &[bridge_alias])),
        Err(IommuError::DeviceBusy)
    );
}

#[test]
fn rmrr_devices_get_identity_maps() {
    let usb = bdf(0, 0x14, 0);
    let region = ReservedRegion {
        device: usb,
        base: HostPhys(0x7b80_0000),
        size: 0x24_0000,
    };
    let mut server = Server::new(FakeVtdConfig::qemu(), QuarantineMode::Blocking, &[region]);
    server.quarantine(usb, &[]).unwrap();
    let domain = server.create_domain(CLIENT);
    let memory = server.delegate(CLIENT, 0x20_0000, 0x1000, Rights::READ);
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0, 0x7b90_0000, 0x1000, Rights::READ),
        )
        .unwrap();
    assert_eq!(
        server.attach(CLIENT, device(domain, usb, &[])),
        Err(IommuError::RmrrConflict)
    );
    assert_eq!(
        server.manager.device_domain(usb),
        Some(QUARANTINE),
        "refused attach changed nothing"
    );
    server.unmap(CLIENT, domain, 0x7b90_0000, 0x1000).unwrap();
    server.attach(CLIENT, device(domain, usb, &[])).unwrap();
    assert_eq!(
        server.dma(usb, 0x7b80_0040, AccessKind::Write),
        Ok(HostPhys(0x7b80_0040))
    );
    assert_eq!(
        server.dma(usb, 0x7ba3_fff0, AccessKind::Read),
        Ok(HostPhys(0x7ba3_fff0))
    );
    assert_eq!(server.dma(usb, 0x7ba4_0000, AccessKind::Read), Err(0x6));
    assert_eq!(
        server.unmap(CLIENT, domain, 0x7b80_0000, 0x24_0000),
        Err(IommuError::NotMapped),
        "clients cannot unmap RMRRs"
    );
}

#[test]
fn caching_mode_invalidates_new_entries() {
    let mut server = Server::new(
        FakeVtdConfig::qemu().with_caching_mode(),
        QuarantineMode::Blocking,
        &[],
    );
    server.quarantine(NIC, &[]).unwrap();
    let domain = server.create_domain(CLIENT);
    let did = server.manager.hardware_id(domain).unwrap();
    let memory = server.delegate(CLIENT, 0x20_0000, 0x4000, Rights::READ);
    server
        .map(
            CLIENT,
            map_args(domain, memory, 0, 0x4000, 0x4000, Rights::READ),
        )
        .unwrap();
    let last = server.hardware.fake().descriptors();
    assert!(last.contains(&Descriptor::Iotlb {
        granularity: IotlbGranularity::Pages {
            domain: did,
            address: IoVirt(0x4000),
            address_mask: 2,
            invalidation_hint: false
        },
        drain_reads: true,
        drain_writes: true,
    }));
}

#[test]
fn domain_ids_stay_within_nd() {
    let mut server = Server::qemu();
    let mut handles = std::vec::Vec::new();
    while let Ok(handle) = server.manager.create_domain(
        &mut server.hardware.memory,
        &mut server.hardware.frames,
        CLIENT,
    ) {
        handles.push(handle);
    }
    assert_eq!(handles.len(), crate::domain::MAX_DOMAINS);
    let dids: std::collections::BTreeSet<_> = handles
        .iter()
        .map(|h| server.manager.hardware_id(*h).unwrap())
        .collect();
    assert_eq!(dids.len(), handles.len(), "distinct DIDs");
    assert!(!dids.contains(&crate::DomainId(0)) && !dids.contains(&crate::domain::QUARANTINE_DID));
    let _ = server.hardware.memory.read_u64(HostPhys(0));
}
