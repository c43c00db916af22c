//! VMs and vCPUs: creating them, mapping memory into a VM's guest-physical space, and resolving
//! a vCPU for `vcpu_control`. The kernel binary keeps the EPT/NPT tables and VMCS/VMCB; the model
//! keeps the books (capabilities, quotas, mapping records) as for every other object.

use sluice_abi::syscall::{
    MemoryRights, ObjectType, Selector, Status, VcpuRights, VmRights, PAGE_SIZE,
};

use crate::address::HostPhys;
use crate::mapping::{Mapping, MappingKind};
use crate::model::ObjectModel;
use crate::object::{Object, ObjectId, Vcpu, Vm};

/// Guest-physical addresses a VM may use: 48 bits (4-level EPT/NPT).
pub const GUEST_PHYSICAL_LIMIT: u64 = 1 << 48;

/// The page permissions a guest mapping may carry.
const PAGE_RIGHTS: MemoryRights = MemoryRights::READ
    .union(MemoryRights::WRITE)
    .union(MemoryRights::EXECUTE);

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// `create_vm`: a VM with every right at `destination`, charged to the caller.
    ///
    /// Errors: creation errors.
    pub fn create_vm(
        &mut self,
        caller: ObjectId,
        destination: Selector,
    ) -> Result<ObjectId, Status> {
        let object = Object::Vm(Vm {
            guest_physical_limit: GUEST_PHYSICAL_LIMIT,
        });
        self.create_paid(caller, destination, object, VmRights::all().bits(), None)
    }

    /// `create_vcpu`: a vCPU of the VM named by `vm` (needs `CREATE_VCPU`).
    ///
    /// Errors: lookup errors, creation errors.
    pub fn create_vcpu(
        &mut self,
        caller: ObjectId,
        vm: Selector,
        destination: Selector,
    ) -> Result<ObjectId, Status> {
        let (_, capability) =
            self.lookup(caller, vm, ObjectType::Vm, VmRights::CREATE_VCPU.bits())?;
        let object = Object::Vcpu(Vcpu {
            vm: capability.object,
        });
        self.create_paid(caller, destination, object, VcpuRights::all().bits(), None)
    }

    /// `vm_map`: map `size` bytes at `offset` of the memory object named by `memory` (which
    /// must hold `rights`) at `guest_physical` in the VM named by `vm` (needs `MAP`). `install`
    /// writes the EPT/NPT entries; its error is returned with nothing recorded.
    ///
    /// Errors: lookup errors, `InvalidRights`, `Misaligned`, `Overflow` (beyond the object or
    /// the guest-physical limit), `AlreadyMapped`, `QuotaExceeded`, `OutOfKernelMemory`, or
    /// `install`'s error.
    #[allow(clippy::too_many_arguments)]
    pub fn vm_map<F>(
        &mut self,
        caller: ObjectId,
        memory: Selector,
        vm: Selector,
        guest_physical: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
        install: F,
    ) -> Result<Mapping, Status>
    where
        F: FnOnce(&Mapping) -> Result<(), Status>,
    {
        if !PAGE_RIGHTS.contains(rights) || !rights.contains(MemoryRights::READ) {
            return Err(Status::InvalidRights);
        }
        let (owner, memory_capability) =
            self.lookup(caller, memory, ObjectType::Memory, rights.bits())?;
        let (_, vm_capability) = self.lookup(caller, vm, ObjectType::Vm, VmRights::MAP.bits())?;
        let Some(Object::Memory(object)) = self.object(memory_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        let Some(Object::Vm(target)) = self.object(vm_capability.object).map(|e| e.object) else {
            return Err(Status::WrongType);
        };
        let aligned = [guest_physical, offset, size]
            .iter()
            .all(|value| value.is_multiple_of(PAGE_SIZE));
        if !aligned || size == 0 {
            return Err(Status::Misaligned);
        }
        match (offset.checked_add(size), guest_physical.checked_add(size)) {
            (Some(end), Some(guest_end))
                if end <= object.size && guest_end <= target.guest_physical_limit => {}
            _ => return Err(Status::Overflow),
        }
        let mapping = Mapping {
            domain: vm_capability.object,
            kind: MappingKind::Guest {
                base: guest_physical,
                length: size,
                physical: HostPhys(object.base.0 + offset),
                rights,
            },
        };
        self.record_mapping(caller, owner, mapping, install)
    }

    /// `vcpu_control`: the vCPU named by `vcpu` (needs `RUN`) and its VM.
    ///
    /// Errors: lookup errors.
    #[inline]
    pub fn vcpu_target(
        &self,
        caller: ObjectId,
        vcpu: Selector,
    ) -> Result<(ObjectId, ObjectId), Status> {
        let (_, capability) =
            self.lookup(caller, vcpu, ObjectType::Vcpu, VcpuRights::RUN.bits())?;
        // Matched by reference: copying the whole object out costs more than the lookup.
        match self.object(capability.object).map(|e| &e.object) {
            Some(Object::Vcpu(vcpu)) => Ok((capability.object, vcpu.vm)),
            _ => Err(Status::WrongType),
        }
    }
}
