//! The ownership state machine with a recording IOMMU binding.

use super::*;
use crate::fake::{desktop, q35, FakeEvent, IommuCall, RecordingDelay, RecordingIommu};
use crate::ownership::{OwnerState, Ownership, OwnershipError, Platform, Transition};
use crate::registers::header;
use crate::{ConfigSpace, OwnerId};

struct World {
    config: FakeConfigSpace,
    inventory: Inventory,
    ownership: Ownership,
    delay: RecordingDelay,
    iommu: RecordingIommu,
}

fn world() -> World {
    let (mut config, inventory) = q35();
    let ownership = Ownership::new(&mut config, &inventory);
    config.clear_log();
    World {
        config,
        inventory,
        ownership,
        delay: RecordingDelay::default(),
        iommu: RecordingIommu::default(),
    }
}

macro_rules! platform {
    ($w:expr) => {
        Platform {
            config: &mut $w.config,
            delay: &mut $w.delay,
            iommu: &mut $w.iommu,
        }
    };
}

#[test]
fn every_endpoint_starts_unassigned_with_bus_mastering_off() {
    let (mut config, inventory) = desktop();
    assert_eq!(config.read16(desktop::GPU, header::COMMAND) & 0x4, 0x4);
    let ownership = Ownership::new(&mut config, &inventory);
    assert_eq!(ownership.state(desktop::GPU), Some(OwnerState::Unassigned));
    assert_eq!(
        config.read16(desktop::GPU, header::COMMAND) & 0x4,
        0,
        "bus master off"
    );
    assert_eq!(
        config.read16(desktop::GPU_ROOT_PORT, header::COMMAND) & 0x4,
        0x4,
        "bridges forward DMA"
    );
}

#[test]
fn edu_goes_through_quarantine_to_its_owner_and_back() {
    let mut w = world();
    let owner = OwnerId(7);
    w.ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::EDU)
        .unwrap();
    assert_eq!(w.ownership.state(q35::EDU), Some(OwnerState::Quarantined));
    w.ownership
        .assign(&mut platform!(w), &w.inventory, q35::EDU, owner)
        .unwrap();
    assert_eq!(
        w.ownership.state(q35::EDU),
        Some(OwnerState::Assigned(owner))
    );
    assert_eq!(w.ownership.check_owner(q35::EDU, owner), Ok(()));
    // The owner turns bus mastering on; release turns it off again.
    w.config.write16(q35::EDU, header::COMMAND, 0x0006);
    w.ownership
        .release(&mut platform!(w), &w.inventory, q35::EDU, owner)
        .unwrap();
    assert_eq!(w.ownership.state(q35::EDU), Some(OwnerState::Quarantined));
    assert_eq!(w.config.read16(q35::EDU, header::COMMAND) & 0x4, 0);
    let resets = w
        .config
        .events()
        .iter()
        .filter(|e| **e == FakeEvent::SecondaryBusReset(q35::ROOT_PORT_EDU))
        .count();
    assert_eq!(resets, 3, "a reset on every ownership change");
    let kinds: Vec<&'static str> = w
        .iommu
        .calls
        .iter()
        .map(|call| match call {
            IommuCall::Quarantine(_) => "quarantine",
            IommuCall::Owner(o, _) if *o == owner => "owner",
            IommuCall::Owner(..) => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["quarantine", "owner", "quarantine"]);
}

#[test]
fn bad_transitions_are_named_and_change_nothing() {
    let mut w = world();
    let owner = OwnerId(1);
    let error = w
        .ownership
        .assign(&mut platform!(w), &w.inventory, q35::EDU, owner)
        .unwrap_err();
    assert_eq!(
        error,
        OwnershipError::InvalidTransition {
            bdf: q35::EDU,
            from: OwnerState::Unassigned,
            requested: Transition::Assign
        }
    );
    let error = w
        .ownership
        .release(&mut platform!(w), &w.inventory, q35::EDU, owner)
        .unwrap_err();
    assert!(matches!(
        error,
        OwnershipError::InvalidTransition {
            requested: Transition::Release,
            ..
        }
    ));
    assert_eq!(
        w.ownership
            .quarantine(&mut platform!(w), &w.inventory, q35::ROOT_PORT_EDU),
        Err(OwnershipError::NotAssignable(q35::ROOT_PORT_EDU))
    );
    assert_eq!(
        w.ownership
            .quarantine(&mut platform!(w), &w.inventory, b(0x42, 0, 0)),
        Err(OwnershipError::NoSuchFunction(b(0x42, 0, 0)))
    );
    assert!(w.config.writes().is_empty() && w.config.events().is_empty());
    assert!(w.iommu.calls.is_empty());
    assert_eq!(w.ownership.state(q35::EDU), Some(OwnerState::Unassigned));

    w.ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::EDU)
        .unwrap();
    let error = w
        .ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::EDU)
        .unwrap_err();
    assert!(matches!(
        error,
        OwnershipError::InvalidTransition {
            from: OwnerState::Quarantined,
            ..
        }
    ));
    w.ownership
        .assign(&mut platform!(w), &w.inventory, q35::EDU, owner)
        .unwrap();
    let calls = w.iommu.calls.len();
    let error = w
        .ownership
        .release(&mut platform!(w), &w.inventory, q35::EDU, OwnerId(2))
        .unwrap_err();
    assert_eq!(
        error,
        OwnershipError::NotOwner {
            bdf: q35::EDU,
            caller: OwnerId(2)
        }
    );
    assert_eq!(
        w.ownership.state(q35::EDU),
        Some(OwnerState::Assigned(owner))
    );
    assert_eq!(w.iommu.calls.len(), calls);
    assert_eq!(pci_api::PciError::from(error), pci_api::PciError::NotOwner);
}

#[test]
fn a_group_is_never_split_between_owners() {
    let mut w = world();
    for bdf in [q35::CONVENTIONAL_E1000, q35::CONVENTIONAL_RTL8139] {
        w.ownership
            .quarantine(&mut platform!(w), &w.inventory, bdf)
            .unwrap();
    }
    w.ownership
        .assign(
            &mut platform!(w),
            &w.inventory,
            q35::CONVENTIONAL_E1000,
            OwnerId(1),
        )
        .unwrap();
    assert_eq!(
        w.ownership.assign(
            &mut platform!(w),
            &w.inventory,
            q35::CONVENTIONAL_RTL8139,
            OwnerId(2)
        ),
        Err(OwnershipError::GroupConflict {
            bdf: q35::CONVENTIONAL_RTL8139,
            other: q35::CONVENTIONAL_E1000
        })
    );
    assert_eq!(
        w.ownership.state(q35::CONVENTIONAL_RTL8139),
        Some(OwnerState::Quarantined)
    );
    w.ownership
        .assign(
            &mut platform!(w),
            &w.inventory,
            q35::CONVENTIONAL_RTL8139,
            OwnerId(1),
        )
        .unwrap();
}

#[test]
fn the_iommu_gets_the_dma_aliases() {
    let mut w = world();
    w.ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::CONVENTIONAL_E1000)
        .unwrap();
    let IommuCall::Quarantine(identity) = &w.iommu.calls[0] else {
        panic!("expected quarantine")
    };
    assert_eq!(
        identity.requester_ids.as_slice(),
        &[q35::CONVENTIONAL_E1000, b(7, 0, 0)]
    );
}

#[test]
fn an_iommu_refusal_leaves_the_state_alone() {
    let mut w = world();
    w.iommu.refuse = Some(9);
    let error = w
        .ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::NVME)
        .unwrap_err();
    assert_eq!(
        error,
        OwnershipError::Iommu(crate::ownership::IommuRefusal(9))
    );
    assert_eq!(w.ownership.state(q35::NVME), Some(OwnerState::Unassigned));
    assert!(
        w.config.events().is_empty(),
        "no reset without the quarantine attachment"
    );
    w.iommu.refuse = None;
    w.ownership
        .quarantine(&mut platform!(w), &w.inventory, q35::NVME)
        .unwrap();
    w.iommu.refuse = Some(3);
    assert!(w
        .ownership
        .assign(&mut platform!(w), &w.inventory, q35::NVME, OwnerId(4))
        .is_err());
    assert_eq!(w.ownership.state(q35::NVME), Some(OwnerState::Quarantined));
}
