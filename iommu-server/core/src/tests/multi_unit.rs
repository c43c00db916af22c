//! Two DRHD units, as on a desktop: unit 0 lists the integrated GPU (00:02.0) explicitly, unit
//! 1 is INCLUDE_PCI_ALL and holds the IOAPIC and HPET scopes. Routing, a domain spanning both
//! units, invalidations, faults and IRTEs per unit, units taken down or never brought up.

use super::{bdf, CLIENT, TABLE_FRAMES};
use crate::dmar::{BusWalk, Dmar, Topology, TopologyError};
use crate::domain::{DeviceScope, DomainManager, QuarantineMode, ReservedRegion};
use crate::fake::dmar::{drhd, rmrr, scope, table};
use crate::fake::{AccessKind, FakeClock, FakeFrameAllocator, FakeMemory, FakeVtd, FakeVtdConfig};
use crate::interrupt_remapping::{remappable_msi, InterruptRemapping, IrteTable};
use crate::invalidation::descriptor::{Descriptor, IotlbGranularity};
use crate::registers::capability::PagingLevels;
use crate::unit::VtdUnit;
use crate::units::{UnitMask, UnitSet, Units};
use iommu_api::request::{
    DeliveryMode, DestinationMode, DeviceArguments, IrteSettings, MapArguments, SourceValidation,
    TriggerMode,
};
use iommu_api::{Bdf, DelegatedMemory, HostPhys, IoVirt, IommuError, Rights, MAX_ALIASES};
use std::vec::Vec;

pub const GPU: Bdf = Bdf(0x0010); // 00:02.0
pub const NIC: Bdf = Bdf(0x0300); // 03:00.0
pub const SATA: Bdf = Bdf(0x00b8); // 00:17.0

/// The desktop's DMAR: unit 0 at 0xfed90000 for 00:02.0, unit 1 at 0xfed91000
/// INCLUDE_PCI_ALL with IOAPIC 2 (source f0:1f.0) and HPET 0 (source 00:1f.0); an RMRR for the
/// GPU and one for the USB controller 00:14.0.
pub fn desktop() -> Vec<u8> {
    table(
        39,
        0x1,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(
                1,
                0xfed9_1000,
                &[
                    scope(3, 2, 0xf0, &[(0x1f, 0)]),
                    scope(4, 0, 0, &[(0x1f, 0)]),
                ],
            ),
            rmrr(0x7c00_0000, 0x7c00_ffff, &[scope(1, 0, 0, &[(2, 0)])]),
            rmrr(0x7b80_0000, 0x7b80_3fff, &[scope(1, 0, 0, &[(0x14, 0)])]),
        ],
    )
}

pub struct NoWalk;

impl BusWalk for NoWalk {
    fn secondary_bus(&mut self, _bridge: Bdf) -> Option<u8> {
        None
    }
}

/// A root port 00:1c.0 with buses 3..=4 below it.
pub struct RootPort;

impl BusWalk for RootPort {
    fn secondary_bus(&mut self, bridge: Bdf) -> Option<u8> {
        (bridge == bdf(0, 0x1c, 0)).then_some(3)
    }
    fn bus_range(&mut self, bridge: Bdf) -> Option<(u8, u8)> {
        (bridge == bdf(0, 0x1c, 0)).then_some((3, 4))
    }
}

pub fn topology(bytes: &[u8], walk: &mut impl BusWalk) -> Result<Topology, TopologyError> {
    Topology::from_dmar(&Dmar::parse(bytes).unwrap(), walk)
}

/// Both units up (each a fake over the same memory), the domain manager, remapping on both.
struct TwoUnits {
    memory: FakeMemory,
    frames: FakeFrameAllocator,
    units: UnitSet<FakeVtd, FakeClock>,
    manager: DomainManager,
    remapping: InterruptRemapping,
}

impl TwoUnits {
    fn new(first: FakeVtdConfig, second: FakeVtdConfig, reserved: &[ReservedRegion]) -> Self {
        let mut memory = FakeMemory::new();
        let mut frames = FakeFrameAllocator::new(TABLE_FRAMES, 4096);
        let mut units = UnitSet::new(topology(&desktop(), &mut NoWalk).unwrap());
        let mut remapping = InterruptRemapping::new();
        for (index, config) in [first, second].into_iter().enumerate() {
            let fake = FakeVtd::new(config, memory.clone());
            let mut unit = VtdUnit::initialize(
                fake,
                FakeClock::default(),
                &mut memory,
                &mut frames,
                PagingLevels::Three,
            )
            .unwrap();
            if let Ok(table) = IrteTable::enable(&mut unit, &mut memory, &mut frames) {
                remapping.install(index, table).unwrap();
            }
            units.install(index, unit).unwrap();
        }
        assert!(units.retain_compatible().is_empty());
        let manager = DomainManager::new(
            &units,
            &mut memory,
            &mut frames,
            DeviceScope::All,
            reserved,
            QuarantineMode::Blocking,
        )
        .unwrap();
        for (_, unit) in units.iter_up_mut() {
            unit.enable_translation().unwrap();
        }
        Self {
            memory,
            frames,
            units,
            manager,
            remapping,
        }
    }

    fn desktop() -> Self {
        Self::new(FakeVtdConfig::qemu(), FakeVtdConfig::qemu(), &[])
    }

    fn fake(&mut self, unit: usize) -> &mut FakeVtd {
        self.units.get_mut(unit).unwrap().registers_mut()
    }

    fn descriptors(&mut self, unit: usize) -> Vec<Descriptor> {
        self.fake(unit).descriptors()
    }

    fn context_present(&self, unit: usize, device: Bdf) -> bool {
        self.units
            .get(unit)
            .unwrap()
            .root_table()
            .context(&self.memory, device)
            .is_some()
    }

    fn quarantine(&mut self, device: Bdf) -> Result<(), IommuError> {
        self.manager.quarantine_device(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            device,
            &[],
        )
    }

    fn attach(&mut self, domain: u32, device: Bdf, aliases: &[Bdf]) -> Result<(), IommuError> {
        let mut list = [Bdf::default(); MAX_ALIASES];
        list[..aliases.len()].copy_from_slice(aliases);
        let arguments = DeviceArguments {
            domain,
            device,
            alias_count: aliases.len(),
            aliases: list,
        };
        self.manager.attach(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            CLIENT,
            &arguments,
        )
    }

    fn domain_with_memory(&mut self) -> (u32, u32) {
        let domain = self
            .manager
            .create_domain(&mut self.memory, &mut self.frames, CLIENT)
            .unwrap();
        let memory = self
            .manager
            .accept_delegation(
                CLIENT,
                DelegatedMemory {
                    base: HostPhys(0x20_0000),
                    size: 0x10_0000,
                    rights: Rights::READ | Rights::WRITE,
                },
            )
            .unwrap();
        (domain, memory)
    }

    fn map(&mut self, domain: u32, memory: u32, iova: u64) -> Result<(), IommuError> {
        let arguments = MapArguments {
            domain,
            memory,
            offset: 0,
            iova: IoVirt(iova),
            size: 0x4000,
            rights: Rights::READ | Rights::WRITE,
        };
        self.manager.map(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            CLIENT,
            &arguments,
        )
    }

    fn unmap(&mut self, domain: u32, iova: u64) -> Result<(), IommuError> {
        self.manager.unmap(
            &mut self.units,
            &mut self.memory,
            &mut self.frames,
            CLIENT,
            domain,
            IoVirt(iova),
            0x4000,
        )
    }
}

fn domain_flushes(descriptors: &[Descriptor], did: crate::DomainId) -> usize {
    descriptors
        .iter()
        .filter(|descriptor| {
            matches!(descriptor, Descriptor::Iotlb { granularity: IotlbGranularity::Domain(d), .. } if *d == did)
        })
        .count()
}

#[test]
fn a_domain_spanning_both_units_has_entries_and_invalidations_in_each() {
    let mut two = TwoUnits::desktop();
    two.quarantine(GPU).unwrap();
    two.quarantine(NIC).unwrap();
    two.quarantine(SATA).unwrap();
    assert!(two.context_present(1, SATA) && !two.context_present(0, SATA));
    assert!(two.context_present(0, GPU) && !two.context_present(1, GPU));
    assert!(two.context_present(1, NIC) && !two.context_present(0, NIC));
    assert_eq!(two.manager.device_unit(GPU), Some(0));
    assert_eq!(two.manager.device_unit(NIC), Some(1));
    let (domain, memory) = two.domain_with_memory();
    let did = two.manager.hardware_id(domain).unwrap();
    two.attach(domain, GPU, &[]).unwrap();
    two.attach(domain, NIC, &[]).unwrap();
    let mut expected = UnitMask::default();
    expected.insert(0);
    expected.insert(1);
    assert_eq!(two.manager.attached_units(domain), expected);
    for (unit, device) in [(0, GPU), (1, NIC)] {
        let entry = two
            .units
            .get(unit)
            .unwrap()
            .root_table()
            .context(&two.memory, device)
            .unwrap();
        assert_eq!(entry.domain, did, "unit {unit}");
    }
    two.map(domain, memory, 0x10_0000).unwrap();
    assert_eq!(
        two.fake(0).dma(GPU, IoVirt(0x10_1008), AccessKind::Write),
        Ok(HostPhys(0x20_1008))
    );
    assert_eq!(
        two.fake(1).dma(NIC, IoVirt(0x10_2000), AccessKind::Read),
        Ok(HostPhys(0x20_2000))
    );
    assert_eq!(
        two.fake(1).dma(GPU, IoVirt(0x10_1000), AccessKind::Read),
        Err(0x2),
        "unit 1 has a context table for bus 0 but no entry for the GPU"
    );
    let before = [
        domain_flushes(&two.descriptors(0), did),
        domain_flushes(&two.descriptors(1), did),
    ];
    two.unmap(domain, 0x10_0000).unwrap();
    assert_eq!(domain_flushes(&two.descriptors(0), did), before[0] + 1);
    assert_eq!(domain_flushes(&two.descriptors(1), did), before[1] + 1);
    assert_eq!(
        two.fake(1).dma(NIC, IoVirt(0x10_2000), AccessKind::Read),
        Err(0x6)
    );
}

#[test]
fn invalidations_follow_each_units_caching_mode() {
    let mut two = TwoUnits::new(
        FakeVtdConfig::qemu().with_caching_mode(),
        FakeVtdConfig::qemu().without_large_pages(),
        &[],
    );
    assert!(!two.manager_large_pages());
    two.quarantine(GPU).unwrap();
    two.quarantine(NIC).unwrap();
    let (domain, memory) = two.domain_with_memory();
    let did = two.manager.hardware_id(domain).unwrap();
    two.attach(domain, GPU, &[]).unwrap();
    two.attach(domain, NIC, &[]).unwrap();
    let before = [two.descriptors(0).len(), two.descriptors(1).len()];
    two.map(domain, memory, 0x10_0000).unwrap();
    let first = two.descriptors(0);
    assert!(first[before[0]..].iter().any(|d| matches!(
        d,
        Descriptor::Iotlb { granularity: IotlbGranularity::Pages { domain, .. }, .. } if *domain == did
    )), "caching mode: the new entries are invalidated");
    assert_eq!(
        two.descriptors(1).len(),
        before[1],
        "no caching mode: nothing to invalidate on unit 1"
    );
}

impl TwoUnits {
    fn manager_large_pages(&self) -> bool {
        let parameters = self.units.parameters();
        parameters.large_pages.two_mib || parameters.large_pages.one_gib
    }
}

#[test]
fn units_without_a_common_paging_depth_are_taken_out() {
    let four_only = FakeVtdConfig {
        capability: (FakeVtdConfig::qemu().capability & !(0x1f << 8)) | (0b100 << 8),
        ..FakeVtdConfig::qemu()
    };
    let mut memory = FakeMemory::new();
    let mut frames = FakeFrameAllocator::new(TABLE_FRAMES, 4096);
    let mut units = UnitSet::new(topology(&desktop(), &mut NoWalk).unwrap());
    for (index, config) in [FakeVtdConfig::qemu(), four_only].into_iter().enumerate() {
        let fake = FakeVtd::new(config, memory.clone());
        let unit = VtdUnit::initialize(
            fake,
            FakeClock::default(),
            &mut memory,
            &mut frames,
            PagingLevels::Three,
        )
        .unwrap();
        units.install(index, unit).unwrap();
    }
    assert_eq!(units.retain_compatible(), UnitMask::single(1));
    assert_eq!(units.parameters().levels, PagingLevels::Three);
    assert_eq!(units.route(GPU), Ok(0));
    assert_eq!(units.route(NIC), Err(IommuError::UnitNotBroughtUp));
    let mut shared = UnitSet::new(topology(&desktop(), &mut NoWalk).unwrap());
    for (index, config) in [FakeVtdConfig::qemu().with_48_bit(), four_only]
        .into_iter()
        .enumerate()
    {
        let fake = FakeVtd::new(config, memory.clone());
        let unit = VtdUnit::initialize(
            fake,
            FakeClock::default(),
            &mut memory,
            &mut frames,
            PagingLevels::Three,
        )
        .unwrap();
        shared.install(index, unit).unwrap();
    }
    assert!(shared.retain_compatible().is_empty());
    assert_eq!(
        shared.parameters().levels,
        PagingLevels::Four,
        "the depth both SAGAWs have"
    );
}

#[test]
fn devices_of_a_unit_that_is_down_are_refused_and_nothing_changes() {
    let mut memory = FakeMemory::new();
    let mut frames = FakeFrameAllocator::new(TABLE_FRAMES, 4096);
    let mut units = UnitSet::new(topology(&desktop(), &mut NoWalk).unwrap());
    let fake = FakeVtd::new(FakeVtdConfig::qemu(), memory.clone());
    let unit = VtdUnit::initialize(
        fake,
        FakeClock::default(),
        &mut memory,
        &mut frames,
        PagingLevels::Three,
    )
    .unwrap();
    units.install(0, unit).unwrap();
    let mut manager = DomainManager::new(
        &units,
        &mut memory,
        &mut frames,
        DeviceScope::All,
        &[],
        QuarantineMode::Blocking,
    )
    .unwrap();
    assert_eq!(
        manager.quarantine_device(&mut units, &mut memory, &mut frames, NIC, &[]),
        Err(IommuError::UnitNotBroughtUp)
    );
    assert_eq!(
        manager.quarantine_device(&mut units, &mut memory, &mut frames, GPU, &[NIC]),
        Err(IommuError::UnitNotBroughtUp),
        "an alias behind the missing unit refuses the whole request"
    );
    assert_eq!(manager.device_domain(GPU), None, "nothing changed");
    assert!(units
        .get(0)
        .unwrap()
        .root_table()
        .context(&memory, GPU)
        .is_none());
    manager
        .quarantine_device(&mut units, &mut memory, &mut frames, GPU, &[])
        .unwrap();
    let listed = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 0, &[(3, 0)])]),
        ],
    );
    let set: UnitSet<FakeVtd, FakeClock> = UnitSet::new(topology(&listed, &mut NoWalk).unwrap());
    assert_eq!(set.route(SATA), Err(IommuError::NoUnitForDevice));
}

#[test]
fn faults_of_the_second_unit_are_read_with_its_requester_id() {
    let mut two = TwoUnits::desktop();
    two.quarantine(GPU).unwrap();
    two.quarantine(NIC).unwrap();
    assert_eq!(
        two.fake(1).dma(NIC, IoVirt(0x5000), AccessKind::Write),
        Err(0x5),
        "quarantine on unit 1 blocks"
    );
    assert_eq!(
        two.fake(0).dma(GPU, IoVirt(0x7000), AccessKind::Read),
        Err(0x6),
        "quarantine on unit 0 blocks"
    );
    let mut seen = Vec::new();
    let (count, overflowed) = two
        .units
        .read_faults(|unit, record| seen.push((unit, std::format!("{record}"))));
    assert_eq!(count, 2);
    assert!(overflowed.is_empty());
    assert_eq!(
        seen,
        [
            (
                0,
                "iommu: fault bdf=00:02.0 addr=0x7000 kind=read reason=0x06 (read not permitted)"
                    .to_string()
            ),
            (
                1,
                "iommu: fault bdf=03:00.0 addr=0x5000 kind=write reason=0x05 (write not permitted)"
                    .to_string()
            ),
        ]
    );
    let (again, _) = two.units.read_faults(|_, _| {});
    assert_eq!(again, 0, "records were cleared on both units");
}

fn settings(source: Bdf) -> IrteSettings {
    IrteSettings {
        vector: 0x49,
        destination: 0,
        delivery_mode: DeliveryMode::Fixed,
        trigger_mode: TriggerMode::Edge,
        destination_mode: DestinationMode::Physical,
        redirection_hint: false,
        source: SourceValidation::RequesterId {
            source_id: source,
            qualifier: 0,
        },
    }
}

#[test]
fn irtes_live_in_the_unit_that_translates_their_source() {
    let mut two = TwoUnits::desktop();
    let owner = 64;
    let gpu_handle = two.remapping.allocate(owner).unwrap();
    let nic_handle = two.remapping.allocate(owner).unwrap();
    assert_ne!(gpu_handle, nic_handle, "one handle space over both units");
    for (handle, device) in [(gpu_handle, GPU), (nic_handle, NIC)] {
        let unit = two.units.route(device).unwrap();
        two.remapping
            .program(
                &mut two.units,
                &mut two.memory,
                owner,
                handle,
                unit,
                &settings(device),
            )
            .unwrap();
    }
    assert_eq!(two.remapping.unit_of(gpu_handle), Some(0));
    assert_eq!(two.remapping.unit_of(nic_handle), Some(1));
    let nic = remappable_msi(nic_handle);
    let address = nic.address as u32;
    assert_eq!(
        two.fake(1)
            .interrupt(NIC, address, nic.data)
            .map(|i| i.vector),
        Ok(0x49)
    );
    assert!(
        two.fake(0).interrupt(NIC, address, nic.data).is_err(),
        "unit 0's table has no entry for the NIC's handle"
    );
    let gpu = remappable_msi(gpu_handle);
    assert_eq!(
        two.fake(0)
            .interrupt(GPU, gpu.address as u32, gpu.data)
            .map(|i| i.vector),
        Ok(0x49)
    );
    // Reprogrammed for a device of the other unit: moved, with the old entry cleared.
    two.remapping
        .program(
            &mut two.units,
            &mut two.memory,
            owner,
            gpu_handle,
            1,
            &settings(SATA),
        )
        .unwrap();
    assert_eq!(two.remapping.unit_of(gpu_handle), Some(1));
    assert!(two
        .fake(0)
        .interrupt(GPU, gpu.address as u32, gpu.data)
        .is_err());
    assert_eq!(
        two.fake(1)
            .interrupt(SATA, gpu.address as u32, gpu.data)
            .map(|i| i.vector),
        Ok(0x49)
    );
    assert_eq!(
        two.remapping
            .free(&mut two.units, &mut two.memory, 65, nic_handle),
        Err(IommuError::NotOwner)
    );
    two.remapping
        .free(&mut two.units, &mut two.memory, owner, nic_handle)
        .unwrap();
    assert!(two.fake(1).interrupt(NIC, address, nic.data).is_err());
    assert_eq!(two.remapping.unit_of(nic_handle), None);
    assert_eq!(
        two.remapping.allocate(owner),
        Ok(nic_handle),
        "the freed handle is free in every unit again"
    );
}

#[test]
fn rmrr_identity_maps_reach_the_device_through_its_own_unit() {
    let gpu_region = ReservedRegion {
        device: GPU,
        base: HostPhys(0x7c00_0000),
        size: 0x1_0000,
    };
    let mut two = TwoUnits::new(FakeVtdConfig::qemu(), FakeVtdConfig::qemu(), &[gpu_region]);
    two.quarantine(GPU).unwrap();
    let (domain, _) = two.domain_with_memory();
    two.attach(domain, GPU, &[]).unwrap();
    assert_eq!(
        two.fake(0).dma(GPU, IoVirt(0x7c00_0040), AccessKind::Read),
        Ok(HostPhys(0x7c00_0040))
    );
    assert_eq!(two.manager.attached_units(domain), UnitMask::single(0));
}
