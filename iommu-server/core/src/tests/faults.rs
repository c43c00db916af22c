//! Faults recorded by the fake unit, read back, formatted as the contract line, routed.

use super::{bdf, Server, CLIENT};
use crate::fake::{AccessKind, FakeVtdConfig};
use crate::fault::{read_and_clear_faults, FaultRecord};
use crate::registers::{Capability, FaultStatus, Register32, VtdRegisters};
use iommu_api::request::DeviceArguments;
use iommu_api::{Bdf, IoVirt, IommuError, MAX_ALIASES};
use std::string::{String, ToString};
use std::vec::Vec;

fn sweep(server: &mut Server) -> (Vec<String>, Vec<FaultRecord>, bool) {
    let capability = server.hardware.unit.config().capability;
    let mut records = Vec::new();
    let result = read_and_clear_faults(server.hardware.fake(), capability, |record| {
        records.push(record)
    });
    (
        records.iter().map(ToString::to_string).collect(),
        records,
        result.overflow,
    )
}

#[test]
fn dma_outside_the_domain_is_reported_once_with_the_exact_line() {
    let mut server = Server::qemu();
    let driver = bdf(0, 4, 0);
    let hw = &mut server.hardware;
    server
        .manager
        .quarantine_device(&mut hw.unit, &mut hw.memory, &mut hw.frames, driver, &[])
        .unwrap();
    let domain = server.create_domain(CLIENT);
    let args = DeviceArguments {
        domain,
        device: driver,
        alias_count: 0,
        aliases: [Bdf::default(); MAX_ALIASES],
    };
    let hw = &mut server.hardware;
    server
        .manager
        .attach(&mut hw.unit, &mut hw.memory, &mut hw.frames, CLIENT, &args)
        .unwrap();
    server.manager.subscribe_faults(CLIENT, driver).unwrap();
    assert_eq!(
        server.manager.subscribe_faults(super::OTHER, driver),
        Err(IommuError::NotOwner)
    );
    assert_eq!(
        server
            .hardware
            .fake()
            .dma(driver, IoVirt(0x7654_3210), AccessKind::Write),
        Err(0x6 - 1)
    );
    let status =
        FaultStatus::from_bits_retain(server.hardware.fake().read32(Register32::FaultStatus));
    assert!(status.contains(FaultStatus::PRIMARY_PENDING_FAULT));
    assert_eq!(status.fault_record_index(), 0);
    let (lines, records, overflow) = sweep(&mut server);
    assert_eq!(
        lines,
        ["iommu: fault bdf=00:04.0 addr=0x76543000 kind=write reason=0x05 (write not permitted)"]
    );
    assert!(!overflow);
    assert_eq!(server.manager.route_fault(&records[0]), Some(CLIENT));
    let report = records[0].report();
    assert_eq!(
        (report.device, report.reason, report.kind, report.address),
        (driver, 5, 0, 0x7654_3000)
    );
    // Cleared: PPF gone, a second sweep finds nothing.
    let status =
        FaultStatus::from_bits_retain(server.hardware.fake().read32(Register32::FaultStatus));
    assert!(!status.contains(FaultStatus::PRIMARY_PENDING_FAULT));
    assert!(sweep(&mut server).0.is_empty());
}

#[test]
fn faults_of_unplaced_devices_and_overflow() {
    let mut server = Server::qemu();
    let stray = bdf(2, 0, 0);
    assert_eq!(
        server
            .hardware
            .fake()
            .dma(stray, IoVirt(0x1000), AccessKind::Read),
        Err(0x1)
    );
    // QEMU has one fault recording register: the second fault overflows.
    assert_eq!(
        server
            .hardware
            .fake()
            .dma(stray, IoVirt(0x2000), AccessKind::Read),
        Err(0x1)
    );
    let (lines, records, overflow) = sweep(&mut server);
    assert_eq!(
        lines,
        ["iommu: fault bdf=02:00.0 addr=0x1000 kind=read reason=0x01 (root entry not present)"]
    );
    assert!(overflow);
    assert_eq!(
        server.manager.route_fault(&records[0]),
        None,
        "nobody owns it"
    );
    let status =
        FaultStatus::from_bits_retain(server.hardware.fake().read32(Register32::FaultStatus));
    assert!(
        !status.contains(FaultStatus::PRIMARY_FAULT_OVERFLOW),
        "PFO cleared"
    );
}

#[test]
fn several_records_are_read_in_order_from_fri() {
    // A unit with 4 fault recording registers (NFR = 3).
    let mut config = FakeVtdConfig::qemu();
    config.capability = (config.capability & !(0xff << 40)) | (3 << 40);
    let mut server = Server::new(config, crate::domain::QuarantineMode::Blocking, &[]);
    assert_eq!(Capability(config.capability).fault_recording_count(), 4);
    for (index, device) in [1u8, 2, 3].iter().enumerate() {
        let kind = if index % 2 == 0 {
            AccessKind::Read
        } else {
            AccessKind::Write
        };
        let _ = server.hardware.fake().dma(
            bdf(0x10, *device, 0),
            IoVirt(0x1000 * (index as u64 + 1)),
            kind,
        );
    }
    let (lines, _, overflow) = sweep(&mut server);
    assert_eq!(
        lines,
        [
            "iommu: fault bdf=10:01.0 addr=0x1000 kind=read reason=0x01 (root entry not present)",
            "iommu: fault bdf=10:02.0 addr=0x2000 kind=write reason=0x01 (root entry not present)",
            "iommu: fault bdf=10:03.0 addr=0x3000 kind=read reason=0x01 (root entry not present)",
        ]
    );
    assert!(!overflow);
}
