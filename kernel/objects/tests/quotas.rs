//! Quota accounting, mappings, carving, threads, portals, notifications and interrupts.

mod common;

use common::*;
use kernel_objects::{
    HostPhys, Interrupt, IoPortRange, MappingKind, Object, ObjectModel, Resources,
    ThreadParameters, ThreadState, UserSlice, UserVirt,
};
use sluice_abi::ipc::{ReceiveWindow, TransferItem};
use sluice_abi::syscall::{
    InterruptRights, IoPortRights, MemoryRights, ProtectionDomainRights, Selector, Status,
    ThreadOperation,
};

#[test]
fn a_domain_looping_on_create_hits_its_quota_while_others_still_create() {
    let (mut model, root) = boot();
    let greedy = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    let modest = model
        .create_domain(root, Selector(3), small(), 0b1)
        .unwrap();
    let mut created = 0;
    let mut last = Ok(());
    for selector in 0..32 {
        last = model
            .create_notification(greedy, Selector(selector))
            .map(|_| ());
        if last.is_err() {
            break;
        }
        created += 1;
    }
    assert_eq!(last, Err(Status::QuotaExceeded));
    assert_eq!(created, small().objects);
    let used = model.quota(greedy).unwrap().used();
    assert_eq!(used.objects, small().objects);
    // The refused call changed nothing.
    assert_eq!(model.table_of(greedy).unwrap().occupied(), created as usize);
    // The other domain and the root are unaffected.
    model.create_notification(modest, Selector(0)).unwrap();
    model.create_notification(root, Selector(9)).unwrap();
}

#[test]
fn donation_is_charged_exactly_and_refunded_when_the_domain_goes() {
    let (mut model, root) = boot();
    let before = model.quota(root).unwrap().used();
    model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    let expected = before
        .checked_add(Model::domain_charge())
        .and_then(|r| r.checked_add(small()))
        .unwrap();
    assert_eq!(model.quota(root).unwrap().used(), expected);
    let too_big = Resources {
        objects: 1000,
        ..small()
    };
    assert_eq!(
        model.create_domain(root, Selector(3), too_big, 0b1),
        Err(Status::QuotaExceeded)
    );
    assert_eq!(
        model.quota(root).unwrap().used(),
        expected,
        "refusal changed nothing"
    );
    assert_eq!(
        model.create_domain(root, Selector(3), small(), 1 << 9),
        Err(Status::InvalidArgument),
        "CPU not owned by the creator"
    );
    let mut recorder = Recorder::default();
    model.delete(root, Selector(2), &mut recorder).unwrap();
    assert_eq!(model.quota(root).unwrap().used(), before);
}

#[test]
fn kernel_bytes_are_charged_and_refunded() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    model.charge_kernel_bytes(child, 4096).unwrap();
    assert_eq!(model.quota(child).unwrap().used().bytes, 4096);
    assert_eq!(
        model.charge_kernel_bytes(child, small().bytes),
        Err(Status::QuotaExceeded)
    );
    model.refund_kernel_bytes(child, 4096, &mut Recorder::default());
    assert!(model.quota(child).unwrap().used().is_zero());
}

#[test]
fn map_checks_rights_ranges_and_overlap_and_unmap_is_exact() {
    let (mut model, root) = boot();
    let range = UserSlice::new_pages(0x40_0000, 0x2000).unwrap();
    let read = MemoryRights::READ;
    let ok = |_: &_| Ok(());
    let mapping = model
        .map(
            root,
            ROOT_RAM,
            ROOT_SELF,
            range,
            0,
            read | MemoryRights::WRITE,
            ok,
        )
        .unwrap();
    assert_eq!(mapping.domain, root);
    let overlapping = UserSlice::new_pages(0x40_1000, 0x1000).unwrap();
    assert_eq!(
        model.map(root, ROOT_RAM, ROOT_SELF, overlapping, 0, read, ok),
        Err(Status::AlreadyMapped)
    );
    let elsewhere = UserSlice::new_pages(0x50_0000, 0x1000).unwrap();
    assert_eq!(
        model.map(root, ROOT_RAM, ROOT_SELF, elsewhere, RAM_SIZE, read, ok),
        Err(Status::Overflow)
    );
    assert_eq!(
        model.map(root, ROOT_RAM, ROOT_SELF, elsewhere, 0x800, read, ok),
        Err(Status::Misaligned)
    );
    assert_eq!(
        model.map(
            root,
            ROOT_RAM,
            ROOT_SELF,
            elsewhere,
            0,
            MemoryRights::WRITE,
            ok
        ),
        Err(Status::InvalidRights)
    );
    assert_eq!(
        model.map(
            root,
            ROOT_RAM,
            ROOT_SELF,
            elsewhere,
            0,
            read | MemoryRights::DMA_MAP,
            ok
        ),
        Err(Status::InvalidRights)
    );
    // A read-only copy cannot map writable.
    model
        .derive(root, ROOT_RAM, Selector(2), read.bits())
        .unwrap();
    assert_eq!(
        model.map(
            root,
            Selector(2),
            ROOT_SELF,
            elsewhere,
            0,
            read | MemoryRights::WRITE,
            ok
        ),
        Err(Status::MissingRight)
    );
    // The kernel's install step failing leaves no record and no charge.
    let used = model.quota(root).unwrap().used();
    assert_eq!(
        model.map(root, ROOT_RAM, ROOT_SELF, elsewhere, 0, read, |_| Err(
            Status::QuotaExceeded
        )),
        Err(Status::QuotaExceeded)
    );
    assert_eq!(model.mapping_count(), 1);
    assert_eq!(model.quota(root).unwrap().used(), used);
    assert_eq!(
        model.unmap(root, ROOT_SELF, overlapping),
        Err(Status::NotFound),
        "only whole mappings"
    );
    let removed = model.unmap(root, ROOT_SELF, range).unwrap();
    assert_eq!(removed, mapping);
    assert_eq!(model.mapping_count(), 0);
    assert_eq!(model.quota(root).unwrap().used().mappings, 0);
}

#[test]
fn carved_memory_is_a_child_of_its_source_and_goes_with_revocation() {
    let (mut model, root) = boot();
    assert_eq!(
        model.create_memory(root, ROOT_RAM, Selector(2), RAM_SIZE - 0x1000, 0x2000),
        Err(Status::Overflow)
    );
    assert_eq!(
        model.create_memory(root, ROOT_RAM, Selector(2), 0, 0),
        Err(Status::Misaligned)
    );
    let carved = model
        .create_memory(root, ROOT_RAM, Selector(2), 0x3000, 0x2000)
        .unwrap();
    match model.object(carved).unwrap().object {
        Object::Memory(memory) => {
            assert_eq!(memory.base, HostPhys(0x10_0000 + 0x3000));
            assert_eq!(memory.size, 0x2000);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        model.memory_physical(root, Selector(2), 0x1008),
        Ok(HostPhys(0x10_4008))
    );
    assert_eq!(
        model.memory_physical(root, Selector(2), 0x2000),
        Err(Status::Overflow)
    );
    model
        .derive(root, Selector(2), Selector(3), MemoryRights::READ.bits())
        .unwrap();
    assert_eq!(
        model.memory_physical(root, Selector(3), 0),
        Err(Status::MissingRight),
        "DMA_MAP needed"
    );
    let range = UserSlice::new_pages(0x40_0000, 0x1000).unwrap();
    model
        .map(
            root,
            Selector(3),
            ROOT_SELF,
            range,
            0x1000,
            MemoryRights::READ,
            |_| Ok(()),
        )
        .unwrap();
    let mut recorder = Recorder::default();
    model.revoke(root, ROOT_RAM, 0, &mut recorder).unwrap();
    assert!(model.object(carved).is_none(), "carved object destroyed");
    assert_eq!(recorder.mappings.len(), 1);
    assert!(matches!(
        recorder.mappings[0].kind,
        MappingKind::Memory {
            physical: HostPhys(0x10_4000),
            ..
        }
    ));
    assert_eq!(model.quota(root).unwrap().used().objects, 0);
}

fn thread_parameters(cpu: u16) -> ThreadParameters {
    ThreadParameters {
        instruction_pointer: UserVirt::new(0x40_0000).unwrap(),
        stack_pointer: UserVirt::new(0x7000_0000).unwrap(),
        utcb: UserVirt::new(0x7000_1000).unwrap(),
        priority: 10,
        cpu,
    }
}

#[test]
fn threads_portals_and_references_keep_objects_alive() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), small(), 0b10)
        .unwrap();
    assert_eq!(
        model.create_thread(root, Selector(2), Selector(3), thread_parameters(0)),
        Err(Status::InvalidArgument),
        "CPU 0 is not the child's"
    );
    let thread = model
        .create_thread(root, Selector(2), Selector(3), thread_parameters(1))
        .unwrap();
    let portal = model
        .create_portal(root, Selector(3), Selector(4), 77)
        .unwrap();
    let target = model.portal_target(root, Selector(4)).unwrap();
    assert_eq!(
        (target.portal, target.handler, target.portal_id),
        (portal, thread, 77)
    );
    assert_eq!(
        model.thread_control(root, Selector(3), ThreadOperation::SetCpu, 0),
        Err(Status::InvalidArgument)
    );
    model
        .thread_control(root, Selector(3), ThreadOperation::Start, 0)
        .unwrap();
    assert_eq!(
        model.thread_control(root, Selector(3), ThreadOperation::Start, 0),
        Err(Status::Busy)
    );
    model
        .thread_control(root, Selector(3), ThreadOperation::SetPriority, 63)
        .unwrap();
    match model.object(thread).unwrap().object {
        Object::Thread(state) => {
            assert_eq!(state.state, ThreadState::Runnable);
            assert_eq!(state.priority, 63);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut recorder = Recorder::default();
    // Deleting the domain's and the thread's capabilities: the portal still refers to the thread,
    // which refers to the domain, so all three stay until the portal goes.
    model.delete(root, Selector(3), &mut recorder).unwrap();
    model.delete(root, Selector(2), &mut recorder).unwrap();
    assert!(model.object(thread).is_some());
    assert!(model.object(child).is_some());
    assert_eq!(recorder.torn_down, vec![child]);
    model.delete(root, Selector(4), &mut recorder).unwrap();
    assert!(model.object(portal).is_none());
    assert!(model.object(thread).is_none());
    assert!(model.object(child).is_none());
    assert_eq!(model.quota(root).unwrap().used().objects, 0);
    assert_eq!(model.objects().len(), 2, "root and its RAM");
}

#[test]
fn interrupts_bind_once_and_signal_their_notification() {
    let (mut model, root) = boot();
    model
        .install_boot_object(
            root,
            Selector(2),
            Object::Interrupt(Interrupt {
                first_line: 16,
                count: 8,
                binding: None,
            }),
            InterruptRights::all().bits(),
        )
        .unwrap();
    let notification = model.create_notification(root, Selector(3)).unwrap();
    assert_eq!(
        model.create_interrupt(root, Selector(2), Selector(4), 30, Selector(3), 1),
        Err(Status::Overflow)
    );
    model
        .create_interrupt(root, Selector(2), Selector(4), 20, Selector(3), 5)
        .unwrap();
    assert_eq!(
        model.create_interrupt(root, Selector(2), Selector(5), 20, Selector(3), 6),
        Err(Status::Busy)
    );
    assert_eq!(model.interrupt_fired(21), None);
    assert_eq!(model.interrupt_fired(20), Some(notification));
    assert_eq!(model.take_signals(root, Selector(3)), Ok(1 << 5));
    assert_eq!(model.take_signals(root, Selector(3)), Ok(0));
    assert_eq!(model.interrupt_acknowledge(root, Selector(4)), Ok(20));
    assert_eq!(
        model.interrupt_acknowledge(root, Selector(2)),
        Err(Status::NotFound)
    );
    model.signal(root, Selector(3), 0b11).unwrap();
    assert_eq!(
        model.signal(root, Selector(3), 0),
        Err(Status::InvalidArgument)
    );
    assert_eq!(model.take_signals(root, Selector(3)), Ok(0b11));
}

#[test]
fn io_ranges_carve_and_record_access() {
    let (mut model, root) = boot();
    model
        .install_boot_object(
            root,
            Selector(2),
            Object::IoPortRange(IoPortRange {
                first: 0x3f8,
                count: 8,
            }),
            IoPortRights::all().bits(),
        )
        .unwrap();
    assert_eq!(
        model.create_io_range(root, Selector(2), Selector(3), 0x3f8, 9),
        Err(Status::Overflow)
    );
    model
        .create_io_range(root, Selector(2), Selector(3), 0x3f8, 4)
        .unwrap();
    model
        .io_allow(root, Selector(3), ROOT_SELF, |_| Ok(()))
        .unwrap();
    assert_eq!(
        model.io_allow(root, Selector(2), ROOT_SELF, |_| Ok(())),
        Err(Status::AlreadyMapped)
    );
    let mut recorder = Recorder::default();
    model.delete(root, Selector(3), &mut recorder).unwrap();
    assert_eq!(recorder.mappings.len(), 1);
    assert!(matches!(
        recorder.mappings[0].kind,
        MappingKind::IoPorts {
            first: 0x3f8,
            count: 4
        }
    ));
}

#[test]
fn only_the_system_right_allows_shutdown_and_it_is_never_given_to_children() {
    let (mut model, root) = boot();
    assert_eq!(model.check_shutdown(root, ROOT_SELF), Ok(()));
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    assert_eq!(
        model.check_shutdown(root, Selector(2)),
        Err(Status::MissingRight)
    );
    let window = ReceiveWindow { base: 0, count: 4 };
    let narrowed = TransferItem {
        selector: ROOT_SELF.0,
        destination: 0,
        rights: ProtectionDomainRights::MAP.bits(),
    };
    model.transfer(root, child, &[narrowed], window).unwrap();
    assert_eq!(
        model.check_shutdown(child, Selector(0)),
        Err(Status::MissingRight)
    );
}

#[test]
fn full_tables_report_out_of_kernel_memory() {
    let mut model = Box::new(ObjectModel::<2, 4, 3, 1>::new());
    let root = model
        .create_root_domain(generous(), 1, Selector(0))
        .unwrap();
    model.create_domain(root, Selector(1), small(), 1).unwrap();
    assert_eq!(
        model.create_domain(root, Selector(2), small(), 1),
        Err(Status::OutOfKernelMemory),
        "no capability table left"
    );
    model.create_notification(root, Selector(2)).unwrap();
    assert_eq!(
        model.create_notification(root, Selector(3)),
        Err(Status::OutOfKernelMemory)
    );
}
