//! Interrupt remapping against the fake: enable order, IRTE contents bit-exact, remappable MSI
//! messages delivered through the table, source-id verification, free, timeouts.

use super::{bdf, Harness};
use crate::fake::{FakeEvent, FakeVtdConfig, RemappedInterrupt};
use crate::interrupt_remapping::{remappable_msi, IrteTable};
use crate::invalidation::descriptor::{Descriptor, InterruptEntryGranularity};
use crate::registers::GlobalStatus;
use iommu_api::request::{
    DeliveryMode, DestinationMode, IrteSettings, SourceValidation, TriggerMode,
};
use iommu_api::IommuError;

fn settings(source_id: iommu_api::Bdf) -> IrteSettings {
    IrteSettings {
        vector: 0x41,
        destination: 0x02,
        delivery_mode: DeliveryMode::Fixed,
        trigger_mode: TriggerMode::Edge,
        destination_mode: DestinationMode::Physical,
        redirection_hint: false,
        source: SourceValidation::RequesterId {
            source_id,
            qualifier: 0,
        },
    }
}

#[test]
fn enable_program_deliver_free() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    let events_before = harness.fake().events.len();
    let mut table =
        IrteTable::enable(&mut harness.unit, &mut harness.memory, &mut harness.frames).unwrap();
    let status = GlobalStatus::from_bits_retain(harness.fake().status());
    assert!(status.contains(
        GlobalStatus::INTERRUPT_REMAPPING | GlobalStatus::INTERRUPT_REMAPPING_TABLE_POINTER
    ));
    assert!(!status.contains(GlobalStatus::COMPATIBILITY_FORMAT_INTERRUPT));
    // Order: SIRTP, then a global interrupt entry cache invalidation, then IRE.
    let events = harness.fake().events[events_before..].to_vec();
    let sirtp = events
        .iter()
        .position(|e| matches!(e, FakeEvent::Command(v) if v & (1 << 24) != 0))
        .unwrap();
    let iec = events
        .iter()
        .position(|e| {
            *e == FakeEvent::Descriptor(Descriptor::InterruptEntryCache(
                InterruptEntryGranularity::Global,
            ))
        })
        .unwrap();
    let ire = events
        .iter()
        .position(|e| matches!(e, FakeEvent::Command(v) if v & (1 << 25) != 0))
        .unwrap();
    assert!(sirtp < iec && iec < ire);

    let nic = bdf(0, 3, 0);
    let handle = table.allocate(7).unwrap();
    assert_eq!(handle, 0);
    let entry = table
        .program(
            &mut harness.unit,
            &mut harness.memory,
            7,
            handle,
            &settings(nic),
        )
        .unwrap();
    // P | V=0x41 << 16 | DST: xAPIC id 2 in bits 47:40; SID 00:03.0 = 0x18, SVT = 01b.
    assert_eq!(entry.0, [0x0000_0200_0041_0001, 0x0004_0018]);
    assert_eq!(table.read(&harness.memory, handle), Some(entry));
    assert_eq!(
        harness.fake().descriptors().iter().rev().nth(1),
        Some(&Descriptor::InterruptEntryCache(
            InterruptEntryGranularity::Index {
                index: 0,
                index_mask: 0
            }
        ))
    );
    let message = remappable_msi(handle);
    let delivered = harness
        .fake()
        .interrupt(nic, message.address as u32, message.data);
    assert_eq!(
        delivered,
        Ok(RemappedInterrupt {
            index: 0,
            vector: 0x41,
            destination: 0x0200,
            delivery_mode: 0,
            level_triggered: false
        })
    );
    // Another requester may not use the entry.
    assert_eq!(
        harness
            .fake()
            .interrupt(bdf(0, 4, 0), message.address as u32, 0),
        Err(0x26)
    );
    // Compatibility format is blocked while IR is on.
    assert_eq!(harness.fake().interrupt(nic, 0xfee0_0000, 0x41), Err(0x25));
    // Ownership.
    assert_eq!(
        table.program(
            &mut harness.unit,
            &mut harness.memory,
            8,
            handle,
            &settings(nic)
        ),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        table.free(&mut harness.unit, &mut harness.memory, 7, 5),
        Err(IommuError::UnknownIrte)
    );
    table
        .free(&mut harness.unit, &mut harness.memory, 7, handle)
        .unwrap();
    assert_eq!(
        harness.fake().interrupt(nic, message.address as u32, 0),
        Err(0x22)
    );
    assert_eq!(table.allocate(9), Ok(0), "freed entry is reused");
}

#[test]
fn irte_settings_are_validated_and_bus_ranges_work() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    let mut table =
        IrteTable::enable(&mut harness.unit, &mut harness.memory, &mut harness.frames).unwrap();
    let handle = table.allocate(1).unwrap();
    let mut bad = settings(bdf(0, 3, 0));
    bad.vector = 0x0f;
    assert_eq!(
        table.program(&mut harness.unit, &mut harness.memory, 1, handle, &bad),
        Err(IommuError::InvalidIrteConfiguration)
    );
    bad.vector = 0x50;
    bad.destination = 0x100;
    assert_eq!(
        table.program(&mut harness.unit, &mut harness.memory, 1, handle, &bad),
        Err(IommuError::InvalidIrteConfiguration)
    );
    assert_eq!(
        table.read(&harness.memory, handle).unwrap().0,
        [0, 0],
        "refused program wrote nothing"
    );
    let mut range = settings(bdf(0, 0, 0));
    range.source = SourceValidation::BusRange {
        start_bus: 5,
        end_bus: 6,
    };
    range.trigger_mode = TriggerMode::Level;
    let entry = table
        .program(&mut harness.unit, &mut harness.memory, 1, handle, &range)
        .unwrap();
    assert_eq!(entry.0[1], (2 << 18) | 0x0506);
    assert_eq!(entry.0[0] & (1 << 4), 1 << 4);
    let message = remappable_msi(handle);
    assert!(harness
        .fake()
        .interrupt(bdf(6, 0, 0), message.address as u32, 0)
        .is_ok());
    assert_eq!(
        harness
            .fake()
            .interrupt(bdf(7, 0, 0), message.address as u32, 0),
        Err(0x26)
    );
    for _ in 1..crate::interrupt_remapping::IRTE_ENTRIES {
        table.allocate(1).unwrap();
    }
    assert_eq!(table.allocate(1), Err(IommuError::IrteExhausted));
}

#[test]
fn no_interrupt_remapping_without_ir_or_qi() {
    for config in [
        FakeVtdConfig::qemu().without_interrupt_remapping(),
        FakeVtdConfig::qemu().without_queued_invalidation(),
    ] {
        let mut harness = Harness::new(config);
        let result = IrteTable::enable(&mut harness.unit, &mut harness.memory, &mut harness.frames);
        assert_eq!(
            result.err(),
            Some(IommuError::InterruptRemappingUnavailable)
        );
    }
}

#[test]
fn enabling_ir_times_out_when_the_unit_never_answers() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    harness.fake().stall_commands = true;
    let allocated = harness.frames.allocated_count();
    let result = IrteTable::enable(&mut harness.unit, &mut harness.memory, &mut harness.frames);
    assert_eq!(result.err(), Some(IommuError::HardwareTimeout));
    assert_eq!(
        harness.frames.allocated_count(),
        allocated,
        "table frame returned"
    );
}
