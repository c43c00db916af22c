//! Malformed capability lists, topologies and BARs: errors are reported, walks end.

use super::*;
use crate::bar::{BarIssue, BarKind};
use crate::capability::CapabilityIssue;
use crate::fake::{edu, nic_82574l, root_port, FakeFunction};
use crate::inventory::MAX_DEPTH;
use crate::TopologyError;

fn plain() -> FakeFunction {
    FakeFunction::endpoint(0x1234, 0x5678, 0x020000, 0)
}

#[test]
fn a_capability_pointing_at_itself_is_a_loop() {
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), edu());
    config.poke(b(0, 2, 0), 0x41, &[0x40]);
    let inventory = enumerate(&mut config);
    let caps = &inventory.get(b(0, 2, 0)).unwrap().capabilities;
    assert_eq!(
        caps.issues.as_slice(),
        &[CapabilityIssue::Loop { offset: 0x40 }]
    );
    assert_eq!(caps.standard.len(), 1);
    assert!(caps.msi.is_some());
}

#[test]
fn a_longer_capability_cycle_is_a_loop_too() {
    let function = plain()
        .raw(0x06, &[0x10, 0x00])
        .raw(0x34, &[0x50])
        .raw(0x50, &[0x09, 0x60])
        .raw(0x60, &[0x09, 0x70])
        .raw(0x70, &[0x09, 0x50]);
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), function);
    let inventory = enumerate(&mut config);
    let caps = &inventory.get(b(0, 2, 0)).unwrap().capabilities;
    assert_eq!(
        caps.issues.as_slice(),
        &[CapabilityIssue::Loop { offset: 0x50 }]
    );
    assert_eq!(caps.vendor_specific, 3);
}

#[test]
fn a_pointer_into_the_header_ends_the_walk() {
    let function = plain()
        .raw(0x06, &[0x10, 0x00])
        .raw(0x34, &[0x50])
        .raw(0x50, &[0x09, 0x20]);
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), function);
    let inventory = enumerate(&mut config);
    let caps = &inventory.get(b(0, 2, 0)).unwrap().capabilities;
    assert_eq!(
        caps.issues.as_slice(),
        &[CapabilityIssue::PointerIntoHeader { pointer: 0x20 }]
    );
}

#[test]
fn extended_capability_loops_and_bad_pointers_end_the_walk() {
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), nic_82574l(1));
    // AER at 0x100 points at DSN at 0x148 (builder layout); make DSN point back at 0x100.
    let dsn = 0x100 + 0x48;
    config.poke(b(0, 2, 0), dsn, &[0x03, 0x00, 0x01, 0x10]);
    let inventory = enumerate(&mut config);
    let caps = &inventory.get(b(0, 2, 0)).unwrap().capabilities;
    assert_eq!(
        caps.issues.as_slice(),
        &[CapabilityIssue::Loop { offset: 0x100 }]
    );
    config.poke(b(0, 2, 0), dsn, &[0x03, 0x00, 0x01, 0x08]);
    let inventory = enumerate(&mut config);
    let caps = &inventory.get(b(0, 2, 0)).unwrap().capabilities;
    assert_eq!(
        caps.issues.as_slice(),
        &[CapabilityIssue::ExtendedPointerOutOfRange { pointer: 0x80 }]
    );
}

#[test]
fn bridges_with_bad_bus_numbers_are_reported_and_skipped() {
    let cases: [(FakeFunction, TopologyError); 3] = [
        (
            root_port(0, 0, 0, true),
            TopologyError::SecondaryNotBelowBridge {
                bridge: b(0, 1, 0),
                secondary: 0,
            },
        ),
        (
            root_port(0, 5, 3, true),
            TopologyError::SubordinateBelowSecondary {
                bridge: b(0, 1, 0),
                secondary: 5,
                subordinate: 3,
            },
        ),
        (
            root_port(0, 1, 1, true),
            TopologyError::OutsideParentRange {
                bridge: b(0, 1, 0),
                secondary: 1,
                subordinate: 1,
                parent_first: 0,
                parent_last: 0,
            },
        ),
    ];
    for (index, (bridge, expected)) in cases.into_iter().enumerate() {
        let mut config = FakeConfigSpace::new()
            .with(b(0, 1, 0), bridge)
            .with(b(1, 0, 0), edu());
        let region = if index == 2 {
            crate::EcamRegion::new(crate::HostPhys(0xb000_0000), 0, 0, 0).unwrap()
        } else {
            q35_ecam()
        };
        let inventory = Inventory::enumerate(&mut config, &region, EnumerationOptions::default());
        assert_eq!(inventory.errors(), &[expected]);
        assert!(inventory.get(b(1, 0, 0)).is_none());
    }
}

#[test]
fn overlapping_siblings_and_loops_back_up_are_refused() {
    let mut config = FakeConfigSpace::new()
        .with(b(0, 1, 0), root_port(0, 1, 3, true))
        .with(b(0, 2, 0), root_port(0, 2, 4, true))
        .with(b(1, 0, 0), root_port(1, 1, 1, true))
        .with(b(1, 1, 0), root_port(1, 2, 2, true))
        .with(b(2, 0, 0), edu());
    let inventory = enumerate(&mut config);
    assert!(inventory
        .errors()
        .contains(&TopologyError::BusAlreadyClaimed {
            bridge: b(0, 2, 0),
            bus: 2
        }));
    assert!(inventory
        .errors()
        .contains(&TopologyError::SecondaryNotBelowBridge {
            bridge: b(1, 0, 0),
            secondary: 1
        }));
    // 01:01.0 -> bus 2 is inside 00:01.0's range and legitimate.
    assert_eq!(inventory.get(b(2, 0, 0)).unwrap().parent, Some(b(1, 1, 0)));
}

#[test]
fn an_absurdly_deep_chain_stops_at_the_depth_limit() {
    let mut config = FakeConfigSpace::new();
    for bus in 0..60u8 {
        config.insert(b(bus, 0, 0), root_port(bus, bus + 1, 60, true));
    }
    let inventory = enumerate(&mut config);
    assert!(inventory
        .errors()
        .iter()
        .any(|e| matches!(e, TopologyError::TooDeep { .. })));
    assert_eq!(inventory.functions().len(), MAX_DEPTH + 1);
}

#[test]
fn odd_bars_are_reported() {
    let function = plain()
        .raw(0x24, &[0x04, 0, 0, 0]) // 64-bit BAR in the last slot
        .raw_writable32(0x24, 0xffff_f000)
        .raw(0x10, &[0x06, 0, 0, 0]) // reserved memory type 11b
        .raw_writable32(0x10, 0xffff_f000)
        .raw(0x14, &[0, 0, 0, 0])
        .raw_writable32(0x14, 0xff0f_0000) // holes in the mask
        .raw(0x18, &[0, 0, 0, 0]); // unimplemented
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), function);
    let inventory = enumerate(&mut config);
    let bars = &inventory.get(b(0, 2, 0)).unwrap().bars;
    assert_eq!(
        bars.issues.as_slice(),
        &[
            BarIssue::ReservedMemoryType { index: 0 },
            BarIssue::NonContiguousMask { index: 1 },
            BarIssue::Memory64InLastSlot { index: 5 },
        ]
    );
    assert_eq!(bars.bars.len(), 1);
    assert_eq!(
        (bars.bars[0].index, bars.bars[0].kind, bars.bars[0].size),
        (1, BarKind::Memory32, 0x1_0000)
    );
}
