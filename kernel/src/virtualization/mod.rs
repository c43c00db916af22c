//! VMs and vCPUs in the kernel: the nested page tables of each VM and the VMCB (AMD SVM) or
//! VMCS (Intel VMX) of each vCPU, behind one vCPU model. Everything the kernel does not need
//! itself leaves as a `sluice_abi::vcpu::ExitMessage` for the VMM thread that called
//! `vcpu_run`; its next `vcpu_run` carries the reply.
//!
//! Locking: VM tables change under the kernel lock (create, map, teardown). A vCPU runs with
//! the kernel lock released (its own lock held), so interrupts taken while the guest runs reach
//! the kernel's handlers normally.

mod nested;
pub mod svm;
pub mod vmx;

use crate::execution::OBJECTS;
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use kernel_virt::nested_paging::{
    EptTables, MapError, MemoryType, NptTables, PageSize, PendingFlush, Rights, TableConfig,
};
use kernel_virt::{GuestPhys, HostPhys};
use nested::{DirectMap, KernelFrames};
use sluice_abi::syscall::{MemoryRights, Status};
use sluice_abi::vcpu::Mtd;

/// Which CPU virtualization the kernel drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    None,
    Svm,
    Vmx,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);
/// log2 of the largest page the nested tables may use (`CpuFeatures::largest_nested_page_shift`).
static LARGEST_NESTED_PAGE: AtomicU8 = AtomicU8::new(12);

/// Records the backend the boot CPU found and the largest nested page it supports (log2 of
/// its size: 12, 21 or 30).
pub fn set_backend(backend: Backend, largest_page_shift: u8) {
    BACKEND.store(backend as u8, Ordering::Relaxed);
    LARGEST_NESTED_PAGE.store(largest_page_shift, Ordering::Relaxed);
}

fn largest_nested_page() -> PageSize {
    match LARGEST_NESTED_PAGE.load(Ordering::Relaxed) {
        30 => PageSize::Size1G,
        21 => PageSize::Size2M,
        _ => PageSize::Size4K,
    }
}

/// The backend in use.
pub fn backend() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        1 => Backend::Svm,
        2 => Backend::Vmx,
        _ => Backend::None,
    }
}

/// Guest-physical address width of every VM (4-level nested tables).
const GUEST_ADDRESS_BITS: u8 = 48;

/// A VM's nested page tables: NPT (AMD) or EPT (Intel).
enum Tables {
    Npt(NptTables),
    Ept(EptTables),
}

impl Tables {
    fn map(
        &mut self,
        gpa: u64,
        hpa: u64,
        size: u64,
        rights: Rights,
        memory_type: MemoryType,
    ) -> Result<u64, MapError> {
        let (gpa, hpa) = (GuestPhys(gpa), HostPhys(hpa));
        match self {
            Tables::Npt(t) => t
                .map(
                    &mut DirectMap,
                    &mut KernelFrames,
                    gpa,
                    hpa,
                    size,
                    rights,
                    memory_type,
                )
                .map(|report| report.tables_created),
            Tables::Ept(t) => t
                .map(
                    &mut DirectMap,
                    &mut KernelFrames,
                    gpa,
                    hpa,
                    size,
                    rights,
                    memory_type,
                )
                .map(|report| report.tables_created),
        }
    }

    fn unmap(&mut self, gpa: u64, size: u64) -> Result<PendingFlush, MapError> {
        match self {
            Tables::Npt(t) => t.unmap(&mut DirectMap, GuestPhys(gpa), size),
            Tables::Ept(t) => t.unmap(&mut DirectMap, GuestPhys(gpa), size),
        }
    }

    fn finish_flush(&mut self, pending: PendingFlush) {
        match self {
            Tables::Npt(t) => drop(t.finish_flush(&mut DirectMap, &mut KernelFrames, pending)),
            Tables::Ept(t) => drop(t.finish_flush(&mut DirectMap, &mut KernelFrames, pending)),
        }
    }

    fn destroy(self) {
        match self {
            Tables::Npt(t) => drop(t.destroy(&mut DirectMap, &mut KernelFrames)),
            Tables::Ept(t) => drop(t.destroy(&mut DirectMap, &mut KernelFrames)),
        }
    }

    /// N_CR3 (SVM) or the EPT pointer (VMX).
    fn root(&self) -> u64 {
        match self {
            Tables::Npt(t) => t.nested_cr3(),
            Tables::Ept(t) => t.eptp(false),
        }
    }
}

/// One VM: its nested page tables and a flush epoch bumped on every unmap.
pub struct VmState {
    tables: Tables,
    epoch: u64,
}

static VMS: SpinLock<[Option<VmState>; OBJECTS]> = SpinLock::new([const { None }; OBJECTS]);
/// Each VM's flush epoch, readable without the VM lock at VM entry.
static EPOCHS: [AtomicU64; OBJECTS] = [const { AtomicU64::new(0) }; OBJECTS];

/// Per CPU: the running vCPU's thread should give the CPU up (set by the timer and IPIs).
static RESCHEDULE: [AtomicBool; crate::percpu::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::percpu::MAX_CPUS];

/// Asks the vCPU loop on `cpu` (if any) to return to the scheduler at its next exit.
pub fn request_reschedule(cpu: usize) {
    RESCHEDULE[cpu % crate::percpu::MAX_CPUS].store(true, Ordering::Release);
}

fn take_reschedule(cpu: usize) -> bool {
    RESCHEDULE[cpu % crate::percpu::MAX_CPUS].swap(false, Ordering::AcqRel)
}

/// Creates the nested page tables of VM object `index`.
pub fn create_vm(index: u32) -> Result<(), Status> {
    if backend() == Backend::None {
        return Err(Status::NotImplemented);
    }
    let config = TableConfig {
        guest_address_bits: GUEST_ADDRESS_BITS,
        largest_page: largest_nested_page(),
    };
    let out_of_memory = |_| Status::OutOfKernelMemory;
    let tables = match backend() {
        Backend::Vmx => {
            Tables::Ept(EptTables::new(config, &mut KernelFrames).map_err(out_of_memory)?)
        }
        _ => Tables::Npt(NptTables::new(config, &mut KernelFrames).map_err(out_of_memory)?),
    };
    VMS.lock()[index as usize % OBJECTS] = Some(VmState { tables, epoch: 0 });
    Ok(())
}

/// The root of VM `index`'s nested tables (N_CR3 or the EPT pointer), if it exists.
pub fn nested_root(index: u32) -> Option<u64> {
    VMS.lock()[index as usize % OBJECTS]
        .as_ref()
        .map(|vm| vm.tables.root())
}

/// Maps `[gpa, gpa + size)` to `hpa` in VM `index` (all or nothing); returns the number of
/// table frames it added (at most `tables_bound(gpa, size)`).
pub fn map(
    index: u32,
    gpa: u64,
    hpa: u64,
    size: u64,
    rights: MemoryRights,
    uncached: bool,
) -> Result<u64, Status> {
    let mut vms = VMS.lock();
    let vm = vms[index as usize % OBJECTS]
        .as_mut()
        .ok_or(Status::Aborted)?;
    let mut nested = Rights::READ;
    if rights.contains(MemoryRights::WRITE) {
        nested |= Rights::WRITE;
    }
    if rights.contains(MemoryRights::EXECUTE) {
        nested |= Rights::EXECUTE;
    }
    let memory_type = if uncached {
        MemoryType::Uncacheable
    } else {
        MemoryType::WriteBack
    };
    vm.tables
        .map(gpa, hpa, size, nested, memory_type)
        .map_err(|error| match error {
            MapError::OutOfFrames { .. } => Status::OutOfKernelMemory,
            MapError::AlreadyMapped(_) => Status::AlreadyMapped,
            _ => Status::InvalidArgument,
        })
}

/// Removes `[gpa, gpa + size)` from VM `index`; the next entry of each vCPU takes a fresh
/// ASID (flushing the old translations) before the freed tables can matter.
pub fn unmap(index: u32, gpa: u64, size: u64) {
    let mut vms = VMS.lock();
    let Some(vm) = vms[index as usize % OBJECTS].as_mut() else {
        return;
    };
    if let Ok(pending) = vm.tables.unmap(gpa, size) {
        vm.epoch += 1;
        EPOCHS[index as usize % OBJECTS].store(vm.epoch, Ordering::Release);
        crate::smp::flush_everywhere();
        vm.tables.finish_flush(pending);
    }
}

/// Frees VM `index`'s tables (its vCPUs are gone: they hold a reference to it).
pub fn destroy_vm(index: u32) {
    if let Some(vm) = VMS.lock()[index as usize % OBJECTS].take() {
        vm.tables.destroy();
    }
}

/// The flush epoch of VM `index`.
pub fn epoch(index: u32) -> u64 {
    EPOCHS[index as usize % OBJECTS].load(Ordering::Acquire)
}

/// Makes vCPU `index`'s exits of `reason` (an `ExitReason` code, or 0 for every reason) carry
/// `groups` beyond the base state (`vcpu_control(vcpu, VCPU_SET_EXIT_STATE, ..)`).
pub fn set_exit_state(index: u32, reason: u64, groups: Mtd) -> Result<(), Status> {
    match backend() {
        Backend::Svm => svm::set_exit_state(index, reason, groups),
        Backend::Vmx => vmx::set_exit_state(index, reason, groups),
        Backend::None => Err(Status::NotImplemented),
    }
}

/// Creates vCPU object `index` of VM `vm`.
pub fn create_vcpu(index: u32, vm: u32) -> Result<(), Status> {
    match backend() {
        Backend::Svm => svm::create_vcpu(index, vm),
        Backend::Vmx => vmx::create_vcpu(index, vm),
        Backend::None => Err(Status::NotImplemented),
    }
}

/// Frees vCPU object `index`.
pub fn destroy_vcpu(index: u32) {
    match backend() {
        Backend::Svm => svm::destroy_vcpu(index),
        Backend::Vmx => vmx::destroy_vcpu(index),
        Backend::None => {}
    }
}

/// Where a vCPU's exit message goes: into `scratch`, or (when `direct` allows it at the time
/// of the exit) straight into the VMM's UTCB.
pub struct ExitOutput<'a> {
    /// Words the caller copies to the UTCB under the kernel lock.
    pub scratch: &'a mut [u64; sluice_abi::vcpu::MAX_EXIT_WORDS],
    /// The UTCB, written without the kernel lock only if nothing changed since it was
    /// translated (`execution::vcpu_run::DirectExit`).
    pub direct: Option<crate::execution::DirectExit>,
}

/// Where [`run`] put the exit message, and how many words it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// In the scratch words.
    Scratch(usize),
    /// In the UTCB already (tag included): the thread can go straight back.
    Direct(usize),
}

/// Runs vCPU `index` on this CPU: applies `reply` (message words; empty = no changes), enters
/// the guest, and delivers the exit message the VMM must see through `output`. A direct
/// delivery is never a preemption exit (those go through the scheduler).
pub fn run(index: u32, reply: &[u64], output: ExitOutput<'_>) -> Result<Delivered, Status> {
    const SVM: u8 = Backend::Svm as u8;
    const VMX: u8 = Backend::Vmx as u8;
    match BACKEND.load(Ordering::Relaxed) {
        SVM => svm::run(index, reply, output),
        VMX => vmx::run(index, reply, output),
        _ => Err(Status::NotImplemented),
    }
}
