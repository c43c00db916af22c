//! Bringing a unit up against the fake: adaptation to CAP/ECAP, commands, invalidation paths,
//! bounded waits.

use super::{Harness, TABLE_FRAMES};
use crate::fake::{FakeClock, FakeEvent, FakeFrameAllocator, FakeMemory, FakeVtd, FakeVtdConfig};
use crate::invalidation::descriptor::{ContextGranularity, Descriptor, IotlbGranularity};
use crate::registers::capability::PagingLevels;
use crate::registers::GlobalStatus;
use crate::unit::VtdUnit;
use iommu_api::IommuError;

#[test]
fn qemu_unit_comes_up_with_queued_invalidation() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    let config = *harness.unit.config();
    assert_eq!(config.levels, PagingLevels::Three);
    assert!(config.queued_invalidation && config.interrupt_remapping);
    assert!(!config.caching_mode && !config.write_buffer_flush);
    assert!(config.large_pages.two_mib && config.large_pages.one_gib);
    let root = harness.unit.root_table().address();
    let status = GlobalStatus::from_bits_retain(harness.fake().status());
    assert!(status.contains(GlobalStatus::ROOT_TABLE_POINTER | GlobalStatus::QUEUED_INVALIDATION));
    assert!(!status.contains(GlobalStatus::TRANSLATION_ENABLED));
    assert_eq!(harness.fake().latched_root_table(), Some(root));
    let descriptors = harness.fake().descriptors();
    assert_eq!(
        descriptors[0],
        Descriptor::ContextCache(ContextGranularity::Global)
    );
    assert!(matches!(
        descriptors[1],
        Descriptor::Wait {
            status_write: Some(_),
            ..
        }
    ));
    assert!(matches!(
        descriptors[2],
        Descriptor::Iotlb {
            granularity: IotlbGranularity::Global,
            ..
        }
    ));
    harness.unit.enable_translation().unwrap();
    assert!(GlobalStatus::from_bits_retain(harness.fake().status())
        .contains(GlobalStatus::TRANSLATION_ENABLED));
    // No RWBF: no write-buffer flush was ever issued.
    assert!(!harness
        .fake()
        .events
        .iter()
        .any(|event| matches!(event, FakeEvent::Command(value) if value & (1 << 27) != 0)));
}

#[test]
fn wider_sagaw_gives_four_levels_when_asked() {
    let harness = Harness::with_levels(FakeVtdConfig::qemu().with_48_bit(), PagingLevels::Four);
    assert_eq!(harness.unit.config().levels, PagingLevels::Four);
    let narrow = Harness::with_levels(FakeVtdConfig::qemu(), PagingLevels::Four);
    assert_eq!(
        narrow.unit.config().levels,
        PagingLevels::Three,
        "falls back to what SAGAW offers"
    );
}

#[test]
fn register_based_invalidation_without_qi() {
    let mut harness = Harness::new(FakeVtdConfig::qemu().without_queued_invalidation());
    assert!(!harness.unit.uses_queued_invalidation());
    assert!(!harness.unit.config().interrupt_remapping);
    let events = harness.fake().events.clone();
    assert!(harness.fake().descriptors().is_empty());
    // CCMD: ICC | CIRG=01 (global).
    assert!(events.contains(&FakeEvent::ContextCommand((1 << 63) | (1 << 61))));
    // IOTLB: IVT | IIRG=01 (global) | DR | DW (QEMU has DRD/DWD).
    assert!(events.contains(&FakeEvent::IotlbCommand(
        0,
        (1 << 63) | (1 << 60) | (1 << 49) | (1 << 48)
    )));
    let status = GlobalStatus::from_bits_retain(harness.fake().status());
    assert!(!status.contains(GlobalStatus::QUEUED_INVALIDATION));
}

#[test]
fn write_buffer_is_flushed_when_rwbf() {
    let mut harness = Harness::new(FakeVtdConfig::qemu().with_write_buffer_flushing());
    harness.unit.enable_translation().unwrap();
    let flushes = harness
        .fake()
        .events
        .iter()
        .filter(|event| matches!(event, FakeEvent::Command(value) if value & (1 << 27) != 0))
        .count();
    assert_eq!(flushes, 1);
}

#[test]
fn stalled_command_times_out() {
    let mut memory = FakeMemory::new();
    let mut frames = FakeFrameAllocator::new(TABLE_FRAMES, 64);
    let mut fake = FakeVtd::new(FakeVtdConfig::qemu(), memory.clone());
    fake.stall_commands = true;
    let result = VtdUnit::initialize(
        fake,
        FakeClock::default(),
        &mut memory,
        &mut frames,
        PagingLevels::Three,
    );
    assert_eq!(result.err(), Some(IommuError::HardwareTimeout));
}

#[test]
fn stalled_invalidation_queue_times_out() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    harness.fake().stall_invalidations = true;
    let before = harness.unit.clock_mut().reads;
    let result = harness.unit.flush_all(&mut harness.memory);
    assert_eq!(result, Err(IommuError::HardwareTimeout));
    assert!(
        harness.unit.clock_mut().reads > before,
        "the wait was bounded by the clock"
    );
}

#[test]
fn stalled_register_invalidation_times_out() {
    let mut harness = Harness::new(FakeVtdConfig::qemu().without_queued_invalidation());
    harness.fake().stall_invalidations = true;
    assert_eq!(
        harness.unit.flush_all(&mut harness.memory),
        Err(IommuError::HardwareTimeout)
    );
}

#[test]
fn invalid_descriptor_reports_queue_error() {
    use crate::memory::PhysMemory;
    use crate::registers::{Register64, VtdRegisters};
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    // Write garbage (type 0xf) where the next descriptor goes and move the tail past it.
    let base = harness.fake().read64(Register64::InvalidationQueueAddress) & !0xfff;
    let tail = harness.fake().read64(Register64::InvalidationQueueTail) >> 4;
    harness
        .memory
        .write_u64(iommu_api::HostPhys(base + tail * 16), 0xf);
    harness
        .fake()
        .write64(Register64::InvalidationQueueTail, (tail + 1) << 4);
    assert_eq!(
        harness.unit.flush_all(&mut harness.memory),
        Err(IommuError::InvalidationError)
    );
}
