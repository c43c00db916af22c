//! Host tests against the fake VT-d unit: DMAR blobs, unit bring-up, DMA domains, faults,
//! interrupt remapping, and a model-based property test of the page tables.

mod bridges;
mod dmar_blobs;
mod domains;
mod faults;
mod interrupts;
mod model;
mod multi_unit;
mod topology;
mod unit;

use crate::domain::{ClientId, DeviceScope, DomainManager, QuarantineMode, ReservedRegion};
use crate::fake::{FakeClock, FakeFrameAllocator, FakeMemory, FakeVtd, FakeVtdConfig};
use crate::registers::capability::PagingLevels;
use crate::unit::VtdUnit;
use iommu_api::{Bdf, DelegatedMemory, HostPhys, Rights};

/// Frames for tables come from 256 MiB upwards; client memory lives below.
pub const TABLE_FRAMES: HostPhys = HostPhys(0x1000_0000);

pub fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::new(bus, device, function).unwrap()
}

pub struct Harness {
    pub memory: FakeMemory,
    pub frames: FakeFrameAllocator,
    pub unit: VtdUnit<FakeVtd, FakeClock>,
}

impl Harness {
    pub fn new(config: FakeVtdConfig) -> Self {
        Self::with_levels(config, PagingLevels::Three)
    }

    pub fn with_levels(config: FakeVtdConfig, preferred: PagingLevels) -> Self {
        let mut memory = FakeMemory::new();
        let mut frames = FakeFrameAllocator::new(TABLE_FRAMES, 4096);
        let fake = FakeVtd::new(config, memory.clone());
        let unit = VtdUnit::initialize(
            fake,
            FakeClock::default(),
            &mut memory,
            &mut frames,
            preferred,
        )
        .unwrap();
        Self {
            memory,
            frames,
            unit,
        }
    }

    pub fn fake(&mut self) -> &mut FakeVtd {
        self.unit.registers_mut()
    }
}

/// A unit with translation on, a domain manager with the given quarantine mode and RMRRs.
pub struct Server {
    pub hardware: Harness,
    pub manager: DomainManager,
}

pub const CLIENT: ClientId = ClientId(7);
pub const OTHER: ClientId = ClientId(8);

impl Server {
    pub fn new(
        config: FakeVtdConfig,
        quarantine: QuarantineMode,
        reserved: &[ReservedRegion],
    ) -> Self {
        let mut hardware = Harness::new(config);
        let manager = DomainManager::new(
            &hardware.unit,
            &mut hardware.memory,
            &mut hardware.frames,
            DeviceScope::All,
            reserved,
            quarantine,
        )
        .unwrap();
        hardware.unit.enable_translation().unwrap();
        Self { hardware, manager }
    }

    pub fn qemu() -> Self {
        Self::new(FakeVtdConfig::qemu(), QuarantineMode::Blocking, &[])
    }

    pub fn create_domain(&mut self, owner: ClientId) -> u32 {
        self.manager
            .create_domain(&mut self.hardware.memory, &mut self.hardware.frames, owner)
            .unwrap()
    }

    pub fn delegate(&mut self, owner: ClientId, base: u64, size: u64, rights: Rights) -> u32 {
        self.manager
            .accept_delegation(
                owner,
                DelegatedMemory {
                    base: HostPhys(base),
                    size,
                    rights,
                },
            )
            .unwrap()
    }
}
