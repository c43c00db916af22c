//! Derivation, delegation, lookup errors, deletion and revocation across domains.

mod common;

use common::*;
use kernel_objects::{IgnoreTeardown, MappingKind, Object, UserSlice};
use sluice_abi::ipc::{ReceiveWindow, TransferItem};
use sluice_abi::syscall::{
    MemoryRights, NotificationRights, ObjectType, ProtectionDomainRights, Selector, Status,
    REVOKE_INCLUDING_SELF,
};

#[test]
fn derive_only_narrows_and_preserves_the_object_and_type() {
    let (mut model, root) = boot();
    let rw = (MemoryRights::READ | MemoryRights::WRITE).bits();
    model.derive(root, ROOT_RAM, Selector(2), rw).unwrap();
    let (_, original) = model.lookup_any(root, ROOT_RAM).unwrap();
    let (_, copy) = model.lookup_any(root, Selector(2)).unwrap();
    assert_eq!(copy.object, original.object);
    assert_eq!(copy.object_type, ObjectType::Memory);
    assert_eq!(copy.rights, rw);
    // Widening from the copy fails and changes nothing.
    assert_eq!(
        model.derive(root, Selector(2), Selector(3), MemoryRights::all().bits()),
        Err(Status::InvalidRights)
    );
    assert_eq!(model.lookup_any(root, Selector(3)), Err(Status::EmptySlot));
    // Bits of another type's rights are invalid for memory.
    assert_eq!(
        model.derive(root, ROOT_RAM, Selector(3), 1 << 5),
        Err(Status::InvalidRights)
    );
    assert_eq!(
        model.derive(root, ROOT_RAM, Selector(2), 0),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        model.derive(root, ROOT_RAM, Selector(32), 0),
        Err(Status::InvalidSelector)
    );
    let (parent, _) = model.derivation_of(root, Selector(2)).unwrap();
    assert_eq!(parent.map(|p| p.slot), Some(ROOT_RAM.0));
}

#[test]
fn lookup_errors_are_named() {
    let (model, root) = boot();
    let read = MemoryRights::READ.bits();
    assert!(model
        .lookup(root, ROOT_RAM, ObjectType::Memory, read)
        .is_ok());
    assert_eq!(
        model.lookup(root, Selector(40), ObjectType::Memory, read),
        Err(Status::InvalidSelector)
    );
    assert_eq!(
        model.lookup(root, Selector(9), ObjectType::Memory, read),
        Err(Status::EmptySlot)
    );
    assert_eq!(
        model.lookup(root, ROOT_RAM, ObjectType::Thread, 0),
        Err(Status::WrongType)
    );
    let (_, _) = model
        .lookup(root, ROOT_SELF, ObjectType::ProtectionDomain, 0)
        .unwrap();
    let mut model = model;
    model.derive(root, ROOT_RAM, Selector(2), read).unwrap();
    assert_eq!(
        model.lookup(
            root,
            Selector(2),
            ObjectType::Memory,
            MemoryRights::WRITE.bits()
        ),
        Err(Status::MissingRight)
    );
}

#[test]
fn delegation_lands_in_the_window_and_is_all_or_nothing() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    let window = ReceiveWindow { base: 4, count: 2 };
    let read = MemoryRights::READ.bits();
    let good = TransferItem {
        selector: ROOT_RAM.0,
        destination: 4,
        rights: read,
    };
    let outside = TransferItem {
        selector: ROOT_RAM.0,
        destination: 6,
        rights: read,
    };
    assert_eq!(
        model.transfer(root, child, &[good, outside], window),
        Err(Status::InvalidSelector)
    );
    assert_eq!(
        model.table_of(child).unwrap().occupied(),
        0,
        "nothing delegated"
    );
    let widening = TransferItem {
        selector: 2,
        destination: 5,
        rights: 1 << 7,
    };
    assert_eq!(
        model.transfer(root, child, &[good, widening], window),
        Err(Status::InvalidRights)
    );
    let twice = TransferItem {
        selector: ROOT_RAM.0,
        destination: 4,
        rights: 0,
    };
    assert_eq!(
        model.transfer(root, child, &[good, twice], window),
        Err(Status::SlotOccupied)
    );
    assert_eq!(model.table_of(child).unwrap().occupied(), 0);
    model.transfer(root, child, &[good], window).unwrap();
    let (_, delegated) = model
        .lookup(child, Selector(4), ObjectType::Memory, read)
        .unwrap();
    let (_, original) = model.lookup_any(root, ROOT_RAM).unwrap();
    assert_eq!(delegated.object, original.object);
    assert_eq!(delegated.rights, read);
    // The child cannot widen what it received.
    assert_eq!(
        model.derive(child, Selector(4), Selector(5), MemoryRights::WRITE.bits()),
        Err(Status::InvalidRights)
    );
}

#[test]
fn revocation_reaches_grandchildren_in_other_tables_and_reports_their_mappings() {
    let (mut model, root) = boot();
    let a = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    let b = model
        .create_domain(root, Selector(3), small(), 0b1)
        .unwrap();
    let window = ReceiveWindow { base: 0, count: 32 };
    let rw = (MemoryRights::READ | MemoryRights::WRITE).bits();
    let item = |selector: u32, destination: u32, rights: u64| TransferItem {
        selector,
        destination,
        rights,
    };
    // root -> a (read/write), a -> b (read); b also gets a capability to itself with MAP.
    model
        .transfer(root, a, &[item(ROOT_RAM.0, 1, rw)], window)
        .unwrap();
    model
        .transfer(a, b, &[item(1, 1, MemoryRights::READ.bits())], window)
        .unwrap();
    let map = ProtectionDomainRights::MAP.bits();
    model.transfer(root, b, &[item(3, 0, map)], window).unwrap();
    model.transfer(root, a, &[item(2, 0, map)], window).unwrap();
    let range_b = UserSlice::new_pages(0x40_0000, 0x2000).unwrap();
    let range_a = UserSlice::new_pages(0x80_0000, 0x1000).unwrap();
    model
        .map(
            b,
            Selector(1),
            Selector(0),
            range_b,
            0x1000,
            MemoryRights::READ,
            |_| Ok(()),
        )
        .unwrap();
    model
        .map(
            a,
            Selector(1),
            Selector(0),
            range_a,
            0,
            MemoryRights::READ | MemoryRights::WRITE,
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(model.mapping_count(), 2);
    assert_eq!(model.quota(b).unwrap().used().mappings, 1);

    let mut recorder = Recorder::default();
    model.revoke(root, ROOT_RAM, 0, &mut recorder).unwrap();
    assert_eq!(model.lookup_any(a, Selector(1)), Err(Status::EmptySlot));
    assert_eq!(model.lookup_any(b, Selector(1)), Err(Status::EmptySlot));
    assert!(
        model.lookup_any(root, ROOT_RAM).is_ok(),
        "revoke keeps the capability itself"
    );
    assert_eq!(recorder.mappings.len(), 2);
    let reported_b = recorder
        .mappings
        .iter()
        .find(|m| m.domain == b)
        .expect("b's mapping reported");
    match reported_b.kind {
        MappingKind::Memory {
            range, physical, ..
        } => {
            assert_eq!(range, range_b);
            assert_eq!(physical.0, 0x10_0000 + 0x1000);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(recorder.mappings.iter().any(|m| m.domain == a));
    assert_eq!(model.mapping_count(), 0);
    assert_eq!(
        model.quota(a).unwrap().used().mappings,
        0,
        "mapping charge refunded"
    );
    assert_eq!(model.quota(b).unwrap().used().mappings, 0);
    // The boot RAM object still exists (root still holds it), nothing was destroyed.
    assert!(recorder.destroyed.is_empty());
}

#[test]
fn delete_moves_children_up_so_revocation_from_above_still_reaches_them() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    let read = MemoryRights::READ.bits();
    model.derive(root, ROOT_RAM, Selector(3), read).unwrap();
    let window = ReceiveWindow { base: 0, count: 8 };
    let item = TransferItem {
        selector: 3,
        destination: 0,
        rights: read,
    };
    model.transfer(root, child, &[item], window).unwrap();
    let mut recorder = Recorder::default();
    model.delete(root, Selector(3), &mut recorder).unwrap();
    let (parent, _) = model.derivation_of(child, Selector(0)).unwrap();
    assert_eq!(
        parent.map(|p| p.slot),
        Some(ROOT_RAM.0),
        "grandchild moved up"
    );
    model.revoke(root, ROOT_RAM, 0, &mut recorder).unwrap();
    assert_eq!(model.lookup_any(child, Selector(0)), Err(Status::EmptySlot));
}

#[test]
fn an_object_goes_with_its_last_capability_and_its_charge_is_refunded_exactly() {
    let (mut model, root) = boot();
    let before = model.quota(root).unwrap().used();
    let id = model.create_notification(root, Selector(5)).unwrap();
    let charged = model.quota(root).unwrap().used();
    assert_eq!(charged.objects, before.objects + 1);
    model
        .derive(
            root,
            Selector(5),
            Selector(6),
            NotificationRights::SIGNAL.bits(),
        )
        .unwrap();
    assert_eq!(model.object(id).unwrap().capabilities, 2);
    let mut recorder = Recorder::default();
    model.delete(root, Selector(5), &mut recorder).unwrap();
    assert!(model.object(id).is_some(), "one capability remains");
    assert!(recorder.destroyed.is_empty());
    model.delete(root, Selector(6), &mut recorder).unwrap();
    assert!(model.object(id).is_none());
    assert_eq!(recorder.destroyed.len(), 1);
    assert!(matches!(recorder.destroyed[0].1, Object::Notification(_)));
    assert_eq!(model.quota(root).unwrap().used(), before);
    assert_eq!(
        model.delete(root, Selector(6), &mut recorder),
        Err(Status::EmptySlot)
    );
}

#[test]
fn deleting_a_domain_tears_it_down_and_refunds_its_creator() {
    let (mut model, root) = boot();
    let before = model.quota(root).unwrap().used();
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    // The child creates objects of its own, and gets a capability to itself.
    model.create_notification(child, Selector(0)).unwrap();
    model.create_notification(child, Selector(1)).unwrap();
    let window = ReceiveWindow { base: 0, count: 32 };
    let item = TransferItem {
        selector: 2,
        destination: 2,
        rights: 0,
    };
    model.transfer(root, child, &[item], window).unwrap();
    assert_eq!(model.quota(child).unwrap().used().objects, 2);
    let mut recorder = Recorder::default();
    // Deleting root's capability alone leaves the child's copy: the domain lives on.
    model.delete(root, Selector(2), &mut recorder).unwrap();
    assert!(model.object(child).is_some());
    assert!(recorder.torn_down.is_empty());
    // Revoking from... there is nothing above now; the child deletes its own last capability.
    model.delete(child, Selector(2), &mut recorder).unwrap();
    assert_eq!(recorder.torn_down, vec![child]);
    assert!(model.object(child).is_none());
    assert_eq!(
        recorder.destroyed.len(),
        3,
        "two notifications and the domain"
    );
    assert_eq!(model.quota(root).unwrap().used(), before);
}

#[test]
fn revoke_including_self_and_bad_flags() {
    let (mut model, root) = boot();
    let mut sink = IgnoreTeardown;
    assert_eq!(
        model.revoke(root, ROOT_RAM, 2, &mut sink),
        Err(Status::InvalidArgument)
    );
    model.create_notification(root, Selector(4)).unwrap();
    model.derive(root, Selector(4), Selector(5), 0).unwrap();
    model
        .revoke(root, Selector(4), REVOKE_INCLUDING_SELF, &mut sink)
        .unwrap();
    assert_eq!(model.lookup_any(root, Selector(4)), Err(Status::EmptySlot));
    assert_eq!(model.lookup_any(root, Selector(5)), Err(Status::EmptySlot));
}
