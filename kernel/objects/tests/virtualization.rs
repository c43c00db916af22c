//! VMs and vCPUs in the object model: creation, rights, guest mappings, teardown, delegation.

mod common;

use common::*;
use kernel_objects::{MappingKind, Object};
use sluice_abi::syscall::{
    MemoryRights, ObjectType, ProtectionDomainRights, Selector, Status, VcpuRights, VmRights,
};

const VM: Selector = Selector(4);
const VCPU: Selector = Selector(5);

#[test]
fn a_vm_takes_vcpus_and_guest_mappings_within_its_memory_rights() {
    let (mut model, root) = boot();
    model.create_vm(root, VM).unwrap();
    model.create_vcpu(root, VM, VCPU).unwrap();
    let (vcpu, vm) = model.vcpu_target(root, VCPU).unwrap();
    assert_eq!(
        model.object(vcpu).map(|e| e.object),
        Some(Object::Vcpu(kernel_objects::Vcpu { vm }))
    );
    let rw = MemoryRights::READ | MemoryRights::WRITE;
    let mut installed = None;
    let mapping = model
        .vm_map(root, ROOT_RAM, VM, 0x10_0000, 0x2000, 0x4000, rw, |m| {
            installed = Some(*m);
            Ok(())
        })
        .unwrap();
    assert_eq!(installed, Some(mapping));
    let MappingKind::Guest {
        base,
        length,
        physical,
        rights,
    } = mapping.kind
    else {
        panic!("guest mapping")
    };
    assert_eq!(
        (base, length, physical.0, rights),
        (0x10_0000, 0x4000, 0x10_2000, rw)
    );
    // Overlap, beyond the object, misalignment, and rights the memory cap lacks.
    assert_eq!(
        model.vm_map(root, ROOT_RAM, VM, 0x10_2000, 0, 0x1000, rw, |_| Ok(())),
        Err(Status::AlreadyMapped)
    );
    assert_eq!(
        model.vm_map(root, ROOT_RAM, VM, 0, RAM_SIZE, 0x1000, rw, |_| Ok(())),
        Err(Status::Overflow)
    );
    assert_eq!(
        model.vm_map(root, ROOT_RAM, VM, 0x800, 0, 0x1000, rw, |_| Ok(())),
        Err(Status::Misaligned)
    );
    model
        .derive(root, ROOT_RAM, Selector(6), MemoryRights::READ.bits())
        .unwrap();
    assert_eq!(
        model.vm_map(root, Selector(6), VM, 0, 0, 0x1000, rw, |_| Ok(())),
        Err(Status::MissingRight)
    );
    // A failing install records nothing.
    assert_eq!(
        model.vm_map(root, ROOT_RAM, VM, 0x20_0000, 0, 0x1000, rw, |_| Err(
            Status::OutOfKernelMemory
        )),
        Err(Status::OutOfKernelMemory)
    );
    assert_eq!(model.mapping_count(), 1);
}

#[test]
fn rights_on_vms_and_vcpus_are_checked() {
    let (mut model, root) = boot();
    model.create_vm(root, VM).unwrap();
    model
        .derive(root, VM, Selector(6), VmRights::MAP.bits())
        .unwrap();
    assert_eq!(
        model.create_vcpu(root, Selector(6), VCPU),
        Err(Status::MissingRight)
    );
    model.create_vcpu(root, VM, VCPU).unwrap();
    model.derive(root, VCPU, Selector(7), 0).unwrap();
    assert_eq!(
        model.vcpu_target(root, Selector(7)),
        Err(Status::MissingRight)
    );
    assert_eq!(model.vcpu_target(root, VM), Err(Status::WrongType));
    assert_eq!(
        model
            .lookup(root, VCPU, ObjectType::Vcpu, VcpuRights::RUN.bits())
            .map(|_| ()),
        Ok(())
    );
}

#[test]
fn deleting_the_vm_reports_its_guest_mappings_once_its_vcpus_are_gone() {
    let (mut model, root) = boot();
    model.create_vm(root, VM).unwrap();
    model.create_vcpu(root, VM, VCPU).unwrap();
    model
        .vm_map(root, ROOT_RAM, VM, 0, 0, 0x1000, MemoryRights::READ, |_| {
            Ok(())
        })
        .unwrap();
    let mut sink = Recorder::default();
    model.delete(root, VM, &mut sink).unwrap();
    assert!(sink.mappings.is_empty(), "the vCPU keeps the VM alive");
    model.delete(root, VCPU, &mut sink).unwrap();
    assert_eq!(sink.mappings.len(), 1);
    assert!(sink
        .destroyed
        .iter()
        .any(|(_, o)| matches!(o, Object::Vm(_))));
    assert_eq!(model.mapping_count(), 0);
}

#[test]
fn delegate_equips_another_domain_and_revocation_reaches_the_copy() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), generous_child(), 0b1)
        .unwrap();
    model
        .delegate(
            root,
            ROOT_RAM,
            Selector(2),
            Selector(3),
            MemoryRights::READ.bits(),
        )
        .unwrap();
    let (_, copy) = model.lookup_any(child, Selector(3)).unwrap();
    assert_eq!(copy.rights, MemoryRights::READ.bits());
    assert_eq!(
        model.delegate(root, ROOT_RAM, Selector(2), Selector(3), 0),
        Err(Status::SlotOccupied)
    );
    assert_eq!(
        model.delegate(
            root,
            ROOT_RAM,
            Selector(2),
            Selector(4),
            MemoryRights::all().bits() << 8
        ),
        Err(Status::InvalidRights)
    );
    // Without MAP on the domain capability, no delegation.
    model
        .derive(
            root,
            Selector(2),
            Selector(6),
            ProtectionDomainRights::CREATE_THREAD.bits(),
        )
        .unwrap();
    assert_eq!(
        model.delegate(root, ROOT_RAM, Selector(6), Selector(4), 0),
        Err(Status::MissingRight)
    );
    let mut sink = Recorder::default();
    model.revoke(root, ROOT_RAM, 0, &mut sink).unwrap();
    assert_eq!(model.lookup_any(child, Selector(3)), Err(Status::EmptySlot));
}

fn generous_child() -> kernel_objects::Resources {
    kernel_objects::Resources {
        bytes: 1 << 20,
        objects: 8,
        mappings: 4,
    }
}

#[test]
fn nested_table_memory_is_charged_to_the_vms_payer_and_refunded_with_the_vm() {
    let (mut model, root) = boot();
    let child = model
        .create_domain(root, Selector(2), small(), 0b1)
        .unwrap();
    // The child creates its own VM, so the child pays for it.
    let before = model.quota(child).unwrap().used();
    model.create_vm(child, VM).unwrap();
    let (_, capability) = model.lookup(child, VM, ObjectType::Vm, 0).unwrap();
    let vm = capability.object;
    let with_vm = model.quota(child).unwrap().used();
    assert!(with_vm.bytes > before.bytes);

    model.charge_to_object(vm, 3 * 4096).unwrap();
    assert_eq!(
        model.quota(child).unwrap().used().bytes,
        with_vm.bytes + 3 * 4096
    );
    // More than the quota holds: refused, nothing changes.
    assert_eq!(
        model.charge_to_object(vm, small().bytes),
        Err(Status::QuotaExceeded)
    );
    assert_eq!(
        model.quota(child).unwrap().used().bytes,
        with_vm.bytes + 3 * 4096
    );
    // Refunds never reach below the VM's own creation charge.
    model.refund_to_object(vm, 4096);
    assert_eq!(
        model.quota(child).unwrap().used().bytes,
        with_vm.bytes + 2 * 4096
    );
    model.refund_to_object(vm, 1 << 40);
    assert_eq!(model.quota(child).unwrap().used(), with_vm);
    // What is still charged comes back when the VM is freed.
    model.charge_to_object(vm, 5 * 4096).unwrap();
    let mut sink = Recorder::default();
    model.delete(child, VM, &mut sink).unwrap();
    assert_eq!(model.quota(child).unwrap().used(), before);
    // Unknown objects are refused.
    assert_eq!(
        model.charge_to_object(vm, 4096),
        Err(Status::InvalidSelector)
    );
}
