//! SR-IOV enabling and VF enumeration on QEMU's nvme.

use super::*;
use crate::fake::{
    nvme_with_sriov, q35, root_port, FakeEvent, FakeFunction, FakeSriov, RecordingDelay,
};
use crate::reset::{reset_method, ResetMethod};
use crate::sriov::{enable_virtual_functions, virtual_function_bdf, SriovError};
use crate::ConfigSpace;

#[test]
fn enables_vfs_and_lists_them() {
    let (mut config, mut inventory) = q35();
    let mut delay = RecordingDelay::default();
    let added =
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::NVME, 3).unwrap();
    assert_eq!(added, 3);
    assert!(config
        .events()
        .contains(&FakeEvent::VirtualFunctionsEnabled(q35::NVME, 3)));
    assert!(delay.waits.contains(&100_000), "100 ms after VF Enable");
    for n in 1..=3u8 {
        let vf = inventory.get(b(1, 0, n)).unwrap();
        assert_eq!((vf.vendor_id, vf.device_id), (0x1b36, 0x0010));
        assert_eq!(vf.physical_function, Some(q35::NVME));
        assert_eq!(vf.parent, Some(q35::ROOT_PORT_NVME));
        assert_eq!(
            vf.bars.bars[0].address,
            0x8_0000_0000 + u64::from(n - 1) * (16 << 10)
        );
        assert_eq!(vf.bars.bars[0].size, 16 << 10);
        assert_eq!(reset_method(&inventory, vf.bdf), ResetMethod::Flr);
        assert_ne!(inventory.group_of(vf.bdf), inventory.group_of(q35::NVME));
    }
    let sriov = inventory
        .get(q35::NVME)
        .unwrap()
        .capabilities
        .sriov
        .unwrap();
    assert!(sriov.vfs_enabled && sriov.ari_capable_hierarchy);
    assert_eq!(sriov.num_vfs, 3);
    // ARI forwarding turned on in the root port above.
    let port = inventory
        .get(q35::ROOT_PORT_NVME)
        .unwrap()
        .capabilities
        .pcie
        .unwrap();
    assert_ne!(
        config.read16(q35::ROOT_PORT_NVME, port.offset + 0x28) & (1 << 5),
        0
    );
    // A fresh enumeration finds the enabled VFs too.
    let again = enumerate(&mut config);
    assert!(again.get(b(1, 0, 3)).is_some());
    assert_eq!(again.functions().len(), inventory.functions().len());
}

#[test]
fn bad_requests_change_nothing() {
    let (mut config, mut inventory) = q35();
    let mut delay = RecordingDelay::default();
    config.clear_log();
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::NVME, 0),
        Err(SriovError::BadCount {
            requested: 0,
            total: 4
        })
    );
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::NVME, 5),
        Err(SriovError::BadCount {
            requested: 5,
            total: 4
        })
    );
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::EDU, 1),
        Err(SriovError::NoSriovCapability(q35::EDU))
    );
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, b(0x33, 0, 0), 1),
        Err(SriovError::NoSuchFunction(b(0x33, 0, 0)))
    );
    assert!(config.writes().is_empty());
    enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::NVME, 1).unwrap();
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, q35::NVME, 1),
        Err(SriovError::AlreadyEnabled(q35::NVME))
    );
}

#[test]
fn vfs_beyond_the_bridge_bus_range_are_refused_and_undone() {
    let template = crate::fake::nvme_virtual_function();
    let pf = FakeFunction::endpoint(0x1b36, 0x0010, 0x010802, 2)
        .pcie(0, true)
        .sriov(
            FakeSriov {
                total_vfs: 4,
                first_offset: 0x100,
                stride: 1,
                vf_device_id: 0x10,
                vf_bar_address: 0x9_0000_0000,
                vf_bar_size: 0x4000,
            },
            template,
        );
    let mut config = FakeConfigSpace::new()
        .with(b(0, 1, 0), root_port(0, 1, 1, true))
        .with(b(1, 0, 0), pf);
    let mut inventory = enumerate(&mut config);
    let mut delay = RecordingDelay::default();
    assert_eq!(
        enable_virtual_functions(&mut config, &mut delay, &mut inventory, b(1, 0, 0), 2),
        Err(SriovError::RoutingOutOfRange(b(1, 0, 0)))
    );
    let sriov = inventory
        .get(b(1, 0, 0))
        .unwrap()
        .capabilities
        .sriov
        .unwrap();
    assert_eq!(
        config.read16(b(1, 0, 0), sriov.offset + 0x10),
        0,
        "NumVFs restored"
    );
    assert_eq!(config.read16(b(1, 0, 0), sriov.offset + 0x08) & 1, 0);
    assert!(config.events().is_empty());
    assert_eq!(inventory.functions().len(), 2);
}

#[test]
fn vf_routing_ids_follow_offset_and_stride() {
    let pf = b(3, 0, 0);
    assert_eq!(virtual_function_bdf(pf, 1, 1, 0), Some(b(3, 0, 1)));
    assert_eq!(
        virtual_function_bdf(pf, 0x80, 2, 3),
        Some(Bdf::from_bus_devfn(3, 0x86))
    );
    assert_eq!(virtual_function_bdf(pf, 0x100, 1, 0), Some(b(4, 0, 0)));
    assert_eq!(
        virtual_function_bdf(Bdf::from_requester_id(0xffff), 1, 1, 0),
        None
    );
    assert_eq!(virtual_function_bdf(pf, 1, 0xffff, 0xffff), None);
    let _ = nvme_with_sriov(1);
}
