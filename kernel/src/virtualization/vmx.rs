//! Intel VMX (SDM Vol. 3C, chapters 24-29): per-CPU VMX operation (IA32_FEATURE_CONTROL,
//! CR4.VMXE, VMXON), one VMCS per vCPU with controls adjusted against the capability MSRs,
//! EPT, VPID, I/O and MSR bitmaps that intercept everything, unrestricted guest, the
//! VMLAUNCH/VMRESUME loop, and the exits the kernel keeps (external interrupts, control-register
//! accesses, guest EFER). Field encodings, control adjustment, exit decoding and reply
//! application come from `kernel_virt::vmx`; this file holds the privileged instructions.

use super::{epoch, nested_root, take_reschedule};
use crate::execution::OBJECTS;
use crate::fpu::GuestFpu;
use crate::frames;
use crate::paging::phys_to_virt;
use crate::percpu::{self, MAX_CPUS};
use crate::sync::SpinLock;
use core::arch::naked_asm;
use core::cell::UnsafeCell;
use kernel_virt::asid::{TagAllocator, VcpuTag};
use kernel_virt::vmx::control_register::{handle_control_register_access, ControlRegisterOutcome};
use kernel_virt::vmx::encode::{EXIT_FIELDS, EXIT_FIELD_COUNT};
use kernel_virt::vmx::fields::exit_reason;
use kernel_virt::vmx::{
    self as virt_vmx, ControlRegisterPolicy, Controls, DesiredControls, GuestSegment, VmcsField,
    VmcsRead, VmxCapabilities,
};
use kernel_virt::xsave;
use kernel_virt::{ExitStateTable, SavedRegisters, BASE_STATE};
use sluice_abi::syscall::Status;
use sluice_abi::vcpu::{Gpr, Mtd, Reply, MAX_EXIT_WORDS};

const MSR_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_FEATURE_CONTROL: lock (bit 0), VMX outside SMX (bit 2) (SDM Vol. 3C 23.7).
const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX: u64 = 1 << 2;
const MSR_EFER: u32 = 0xc000_0080;
const CR4_VMXE: u64 = 1 << 13;
/// Guest EFER bits a guest may write: SCE, LME, NXE (LMA follows CR0.PG).
const GUEST_EFER_WRITABLE: u64 = (1 << 0) | (1 << 8) | (1 << 11);
const EFER_LMA: u64 = 1 << 10;
/// VMX-preemption timer value every entry starts from (exit reason 52 when it expires): a
/// backstop only, the LAPIC timer's interrupts exit the guest and drive scheduling.
const PREEMPTION_TIMER_BACKSTOP: u64 = 0xffff_ffff;
/// VM-entry control "IA-32e mode guest" (SDM Vol. 3C, Table 25-17).
const ENTRY_IA32E_MODE: u64 = 1 << 9;

#[repr(C, align(4096))]
struct Bitmap([u8; 4096]);

/// I/O bitmaps A and B and the MSR bitmap, all ones: every port and MSR access exits
/// (SDM Vol. 3C 25.6.4, 25.6.9).
static IO_BITMAP_A: Bitmap = Bitmap([0xff; 4096]);
static IO_BITMAP_B: Bitmap = Bitmap([0xff; 4096]);
static MSR_BITMAP: Bitmap = Bitmap([0xff; 4096]);

/// One CPU's VMX state.
struct VmxCpu {
    capabilities: VmxCapabilities,
    controls: Controls,
    policy: ControlRegisterPolicy,
    tags: TagAllocator,
    /// The vCPU whose VMCS is current here.
    current: Option<u32>,
    /// Exits keep "IA-32e mode guest" equal to EFER.LMA themselves, so entries need not.
    exits_store_lma: bool,
    /// Scratch for decoding replies in place and for the exit's field batch (no per-exit
    /// zeroing or moves).
    reply: Reply,
    exit_fields: [u64; EXIT_FIELD_COUNT],
}

/// Each CPU's VMX state, touched only by that CPU (see [`PerCpu`]).
static CPUS: PerCpu = PerCpu([const { UnsafeCell::new(None) }; MAX_CPUS]);

/// Per-CPU slots without a lock: slot `i` is used only by CPU `i`, inside [`run`], which is
/// never entered twice at once on one CPU (the kernel is not preempted, and the interrupt
/// handlers a vCPU loop dispatches never run a vCPU).
struct PerCpu([UnsafeCell<Option<VmxCpu>>; MAX_CPUS]);

// SAFETY: see the type: no slot is ever shared between CPUs or used re-entrantly.
unsafe impl Sync for PerCpu {}

/// One vCPU.
struct VmxVcpu {
    vmcs: u64,
    vm: u32,
    saved: SavedRegisters,
    tag: VcpuTag,
    /// The CPU its VMCS was launched on (VMRESUME only there; elsewhere VMCLEAR and relaunch).
    launched_on: Option<usize>,
    /// The CPU it was set up for (host state and controls are per CPU).
    prepared_on: Option<usize>,
    /// The state groups its exits carry, per reason.
    exit_state: ExitStateTable,
    /// Its guest's FPU/SSE/AVX registers and XCR0.
    fpu: GuestFpu,
}

static VCPUS: [SpinLock<Option<VmxVcpu>>; OBJECTS] = [const { SpinLock::new(None) }; OBJECTS];

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: callers read only MSRs that exist on a VMX-capable CPU (VmxCapabilities::read
    // checks which ones), and reading has no side effects.
    unsafe { x86::msr::rdmsr(msr) }
}

/// VMREAD of the current VMCS.
struct Current;

impl VmcsRead for Current {
    fn read(&self, field: VmcsField) -> Option<u64> {
        let value: u64;
        let failed: u8;
        // SAFETY: VMREAD of the current VMCS; a bad field only sets the flags (checked).
        unsafe {
            core::arch::asm!("vmread {value}, {field}", "setna {failed}", field = in(reg) u64::from(field.encoding()),
                value = out(reg) value, failed = out(reg_byte) failed, options(nostack))
        };
        (failed == 0).then_some(value)
    }

    fn read_exit_fields(&self, out: &mut [u64; EXIT_FIELD_COUNT]) -> bool {
        vmread_batch!(out.as_mut_ptr(); 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)
    }
}

/// One VMREAD per field of `EXIT_FIELDS` straight into the array at `out`, three instructions
/// each; stops at the first that fails (CF or ZF set, SDM Vol. 3C section 31.2) and yields
/// whether all passed.
macro_rules! vmread_batch {
    ($out:expr; $($index:literal),*) => {{
        const _: () = assert!([$($index),*].len() == EXIT_FIELD_COUNT);
        let failed: u32;
        // SAFETY: VMREADs of the current VMCS into the caller's array, whose slot `index` is at
        // byte offset 8 * index (the indices are exactly 0..EXIT_FIELD_COUNT); a bad field only
        // sets the flags, which end the sequence.
        unsafe {
            core::arch::asm!(
                $(
                    "mov eax, {}",
                    concat!("vmread qword ptr [{out} + 8 * ", $index, "], rax"),
                    "jbe 2f",
                )*
                "xor {failed:e}, {failed:e}",
                "jmp 3f",
                "2:",
                "mov {failed:e}, 1",
                "3:",
                $(const EXIT_FIELDS[$index].encoding(),)*
                out = in(reg) $out,
                failed = out(reg) failed,
                out("rax") _,
                options(nostack),
            )
        };
        failed == 0
    }};
}
use vmread_batch;

fn vmwrite(field: VmcsField, value: u64) -> bool {
    let failed: u8;
    // SAFETY: VMWRITE to the current VMCS, which this CPU owns under the vCPU's lock; a bad
    // field only sets the flags (checked).
    unsafe {
        core::arch::asm!("vmwrite {field}, {value}", "setna {failed}", field = in(reg) u64::from(field.encoding()),
            value = in(reg) value, failed = out(reg_byte) failed, options(nostack))
    };
    failed == 0
}

fn read(field: VmcsField) -> u64 {
    Current.read(field).unwrap_or(0)
}

/// Enters VMX operation on this CPU (once) and returns its state.
fn enable_on_this_cpu(cpu: usize, slot: &mut Option<VmxCpu>) -> Result<(), Status> {
    if slot.is_some() {
        return Ok(());
    }
    let capabilities = VmxCapabilities::read(rdmsr);
    let controls = capabilities
        .adjust(&DesiredControls::sluice())
        .map_err(|error| {
            kprintln!("sluice: vmx: {error}");
            Status::NotImplemented
        })?;
    let unrestricted = true;
    let policy = ControlRegisterPolicy::new(capabilities.cr0, capabilities.cr4, unrestricted);
    let region = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
    // SAFETY: VMX is present (the backend was chosen from CPUID and the capability MSRs). The
    // steps are SDM Vol. 3C 24.7 / 24.8: enable VMX in IA32_FEATURE_CONTROL if firmware left it
    // unlocked, make CR0/CR4 satisfy the fixed bits, write the revision into the VMXON region.
    unsafe {
        let feature = rdmsr(MSR_FEATURE_CONTROL);
        if feature & FEATURE_CONTROL_LOCK == 0 {
            x86::msr::wrmsr(
                MSR_FEATURE_CONTROL,
                feature | FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX,
            );
        } else if feature & FEATURE_CONTROL_VMX == 0 {
            kprintln!("sluice: vmx: disabled by firmware (IA32_FEATURE_CONTROL locked)");
            return Err(Status::NotImplemented);
        }
        let cr0: u64;
        let cr4: u64;
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        let cr0 = capabilities.cr0.apply(cr0);
        let cr4 = capabilities.cr4.apply(cr4 | CR4_VMXE);
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        core::ptr::write_volatile(
            phys_to_virt(region) as *mut u32,
            capabilities.vmcs_revision(),
        );
        let failed: u8;
        core::arch::asm!("vmxon [{}]", "setna {}", in(reg) &region, out(reg_byte) failed, options(nostack));
        if failed != 0 {
            kprintln!("sluice: vmx: VMXON failed");
            return Err(Status::NotImplemented);
        }
    }
    *slot = Some(VmxCpu {
        exits_store_lma: capabilities.exits_store_lma(),
        capabilities,
        controls,
        policy,
        tags: TagAllocator::vpid(cpu as u32),
        current: None,
        reply: Reply::default(),
        exit_fields: [0; EXIT_FIELD_COUNT],
    });
    Ok(())
}

/// Creates vCPU `index` of VM `vm` (its VMCS is filled the first time it runs on a CPU).
pub fn create_vcpu(index: u32, vm: u32) -> Result<(), Status> {
    nested_root(vm).ok_or(Status::Aborted)?;
    let frame = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
    let fpu = GuestFpu::new().inspect_err(|_| frames::free(frame))?;
    *VCPUS[index as usize % OBJECTS].lock() = Some(VmxVcpu {
        vmcs: frame,
        vm,
        saved: SavedRegisters::default(),
        tag: VcpuTag::new(),
        launched_on: None,
        prepared_on: None,
        exit_state: ExitStateTable::new(),
        fpu,
    });
    Ok(())
}

/// Makes vCPU `index`'s exits of `reason` carry `groups` beyond the base state
/// (`kernel_virt::ExitStateTable::set`).
pub fn set_exit_state(index: u32, reason: u64, groups: Mtd) -> Result<(), Status> {
    let mut guard = VCPUS[index as usize % OBJECTS].lock();
    let vcpu = guard.as_mut().ok_or(Status::Aborted)?;
    vcpu.exit_state
        .set(reason, groups)
        .map_err(|_| Status::InvalidArgument)
}

/// Frees vCPU `index`.
pub fn destroy_vcpu(index: u32) {
    if let Some(vcpu) = VCPUS[index as usize % OBJECTS].lock().take() {
        // SAFETY: VMCLEAR makes the VMCS inactive on whatever CPU it was current, so the frame
        // may be reused (SDM Vol. 3C 25.11.1); it fails harmlessly if VMX is off here.
        unsafe { core::arch::asm!("vmclear [{}]", in(reg) &vcpu.vmcs, options(nostack)) };
        frames::free(vcpu.vmcs);
        vcpu.fpu.free();
    }
}

fn segment(which: GuestSegment, selector: u64, base: u64, limit: u64, access_rights: u64) {
    let fields = which.fields();
    vmwrite(fields.selector, selector);
    vmwrite(fields.base, base);
    vmwrite(fields.limit, limit);
    vmwrite(fields.access_rights, access_rights);
}

/// The architectural reset state (SDM Vol. 3A 9.1.1): real mode at F000:FFF0.
fn write_reset_state(policy: &ControlRegisterPolicy) {
    segment(GuestSegment::Cs, 0xf000, 0xffff_0000, 0xffff, 0x9b);
    for which in [
        GuestSegment::Ds,
        GuestSegment::Es,
        GuestSegment::Ss,
        GuestSegment::Fs,
        GuestSegment::Gs,
    ] {
        segment(which, 0, 0, 0xffff, 0x93);
    }
    segment(GuestSegment::Ldtr, 0, 0, 0xffff, 0x82);
    segment(GuestSegment::Tr, 0, 0, 0xffff, 0x8b);
    vmwrite(VmcsField::GuestGdtrBase, 0);
    vmwrite(VmcsField::GuestGdtrLimit, 0xffff);
    vmwrite(VmcsField::GuestIdtrBase, 0);
    vmwrite(VmcsField::GuestIdtrLimit, 0xffff);
    let cr0 = 0x6000_0010;
    vmwrite(VmcsField::Cr0ReadShadow, cr0);
    vmwrite(VmcsField::GuestCr0, policy.guest_cr0(cr0));
    vmwrite(VmcsField::Cr0GuestHostMask, policy.cr0_mask());
    vmwrite(VmcsField::Cr4ReadShadow, 0);
    vmwrite(VmcsField::GuestCr4, policy.guest_cr4(0));
    vmwrite(VmcsField::Cr4GuestHostMask, policy.cr4_mask());
    vmwrite(VmcsField::GuestCr3, 0);
    vmwrite(VmcsField::GuestDr7, 0x400);
    vmwrite(VmcsField::GuestRflags, 0x2);
    vmwrite(VmcsField::GuestRip, 0xfff0);
    vmwrite(VmcsField::GuestRsp, 0);
    vmwrite(VmcsField::GuestEfer, 0);
    vmwrite(VmcsField::GuestPat, 0x0007_0406_0007_0406);
    vmwrite(VmcsField::GuestActivityState, 0);
    vmwrite(VmcsField::GuestInterruptibility, 0);
    vmwrite(VmcsField::GuestPendingDebugExceptions, 0);
    vmwrite(VmcsField::VmcsLinkPointer, u64::MAX);
}

fn control_register(read: fn() -> u64) -> u64 {
    read()
}

fn cr0() -> u64 {
    let value: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) value, options(nomem, nostack)) };
    value
}

fn cr3() -> u64 {
    let value: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

fn cr4() -> u64 {
    let value: u64;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) value, options(nomem, nostack)) };
    value
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

fn descriptor_base(store: impl Fn(*mut DescriptorPointer)) -> u64 {
    let mut pointer = DescriptorPointer { limit: 0, base: 0 };
    store(&mut pointer);
    pointer.base
}

/// Host state of this CPU (SDM Vol. 3C 25.5): the kernel's selectors, GDT/IDT/TSS, GS base.
fn write_host_state(cpu: usize) {
    use crate::gdt;
    vmwrite(VmcsField::HostCr0, control_register(cr0));
    vmwrite(VmcsField::HostCr4, control_register(cr4));
    for field in [
        VmcsField::HostSsSelector,
        VmcsField::HostDsSelector,
        VmcsField::HostEsSelector,
        VmcsField::HostFsSelector,
        VmcsField::HostGsSelector,
    ] {
        vmwrite(field, u64::from(gdt::KERNEL_DATA));
    }
    vmwrite(VmcsField::HostCsSelector, u64::from(gdt::KERNEL_CODE));
    vmwrite(VmcsField::HostTrSelector, u64::from(gdt::TSS_SELECTOR));
    // SAFETY: SGDT/SIDT store the descriptor-table registers into the local pointer.
    let gdt_base =
        descriptor_base(|p| unsafe { core::arch::asm!("sgdt [{}]", in(reg) p, options(nostack)) });
    // SAFETY: as above.
    let idt_base =
        descriptor_base(|p| unsafe { core::arch::asm!("sidt [{}]", in(reg) p, options(nostack)) });
    vmwrite(VmcsField::HostGdtrBase, gdt_base);
    vmwrite(VmcsField::HostIdtrBase, idt_base);
    vmwrite(VmcsField::HostTrBase, gdt::tss_base(cpu));
    vmwrite(VmcsField::HostFsBase, 0);
    vmwrite(VmcsField::HostGsBase, rdmsr(0xc000_0101));
    vmwrite(VmcsField::HostEfer, rdmsr(MSR_EFER));
    vmwrite(VmcsField::HostPat, rdmsr(0x277));
    vmwrite(VmcsField::HostSysenterCs, 0);
    vmwrite(VmcsField::HostSysenterEsp, 0);
    vmwrite(VmcsField::HostSysenterEip, 0);
    // Every VM exit lands in `vmx_enter`, which sets HOST_RSP itself before each entry.
    vmwrite(VmcsField::HostRip, sluice_vmx_exit as *const () as u64);
}

/// Makes the vCPU's VMCS current on `cpu`, setting it up when it is new here.
fn load(vcpu: &mut VmxVcpu, state: &mut VmxCpu, index: u32, cpu: usize) -> Result<(), Status> {
    if state.current == Some(index) && vcpu.prepared_on == Some(cpu) {
        // Still current here since its last run: every other VMPTRLD on this CPU changes
        // `current`, and a recreated vCPU of this index starts unprepared.
        return Ok(());
    }
    if vcpu.prepared_on.is_some_and(|c| c != cpu) {
        // Migrating: VMCLEAR flushes it to memory; it is launched again here.
        // SAFETY: VMCLEAR of this vCPU's own VMCS region.
        unsafe { core::arch::asm!("vmclear [{}]", in(reg) &vcpu.vmcs, options(nostack)) };
        vcpu.launched_on = None;
    }
    let fresh = vcpu.prepared_on.is_none();
    if fresh {
        // SAFETY: a new VMCS region gets the revision identifier and is cleared (SDM 25.11.3).
        unsafe {
            core::ptr::write_volatile(
                phys_to_virt(vcpu.vmcs) as *mut u32,
                state.capabilities.vmcs_revision(),
            );
            core::arch::asm!("vmclear [{}]", in(reg) &vcpu.vmcs, options(nostack));
        }
    }
    let failed: u8;
    // SAFETY: VMPTRLD of this vCPU's cleared or already-current VMCS.
    unsafe {
        core::arch::asm!("vmptrld [{}]", "setna {}", in(reg) &vcpu.vmcs, out(reg_byte) failed, options(nostack))
    };
    if failed != 0 {
        return Err(Status::Aborted);
    }
    state.current = Some(index);
    if vcpu.prepared_on != Some(cpu) {
        for (field, value) in state.controls.vmcs_writes() {
            vmwrite(field, value);
        }
        vmwrite(VmcsField::IoBitmapA, &raw const IO_BITMAP_A as u64);
        vmwrite(VmcsField::IoBitmapB, &raw const IO_BITMAP_B as u64);
        vmwrite(VmcsField::MsrBitmap, &raw const MSR_BITMAP as u64);
        vmwrite(
            VmcsField::EptPointer,
            nested_root(vcpu.vm).ok_or(Status::Aborted)?,
        );
        vmwrite(VmcsField::ExceptionBitmap, 0);
        // The backstop: exits do not save the timer's value, so every entry starts from this.
        vmwrite(VmcsField::PreemptionTimerValue, PREEMPTION_TIMER_BACKSTOP);
        write_host_state(cpu);
        if fresh {
            write_reset_state(&state.policy);
        }
        vcpu.prepared_on = Some(cpu);
    }
    Ok(())
}

/// Guest RDMSR/WRMSR of EFER, kept by the kernel (LMA follows CR0.PG; the entry control is
/// kept in step before each entry). Returns false for other MSRs.
fn handle_efer(basic: u16, saved: &mut SavedRegisters) -> bool {
    if saved.gpr.get(Gpr::Rcx) & 0xffff_ffff != u64::from(MSR_EFER) {
        return false;
    }
    let efer = read(VmcsField::GuestEfer);
    if basic == exit_reason::RDMSR {
        saved.gpr.set(Gpr::Rax, efer & 0xffff_ffff);
        saved.gpr.set(Gpr::Rdx, efer >> 32);
    } else {
        let value = (saved.gpr.get(Gpr::Rdx) << 32) | (saved.gpr.get(Gpr::Rax) & 0xffff_ffff);
        vmwrite(
            VmcsField::GuestEfer,
            (efer & !GUEST_EFER_WRITABLE) | (value & GUEST_EFER_WRITABLE),
        );
    }
    let length = read(VmcsField::ExitInstructionLength);
    vmwrite(VmcsField::GuestRip, read(VmcsField::GuestRip) + length);
    true
}

/// The guest's XSETBV: a value `xsave::check_guest_xcr0` accepts from ring 0 becomes the
/// guest's XCR0 and the instruction completes; anything else gets #GP(0) (SDM Vol. 2C XSETBV),
/// without an error code in real mode, where VM entry refuses one (SDM Vol. 3C 27.2.1.3).
fn handle_xsetbv(vcpu: &mut VmxVcpu, fpu: &mut crate::fpu::Loaded) {
    let gpr = &vcpu.saved.gpr;
    let index = gpr.get(Gpr::Rcx) as u32;
    let value = (gpr.get(Gpr::Rdx) << 32) | (gpr.get(Gpr::Rax) & 0xffff_ffff);
    // SS.DPL is the CPL (SDM Vol. 3C 25.4.1); access rights bits 6:5.
    let cpl = (read(VmcsField::GuestSsAccessRights) >> 5) & 3;
    if cpl == 0 && xsave::check_guest_xcr0(index, value, crate::fpu::host_xcr0()).is_ok() {
        vcpu.fpu.set_xcr0(value, fpu);
        let length = read(VmcsField::ExitInstructionLength);
        vmwrite(VmcsField::GuestRip, read(VmcsField::GuestRip) + length);
        return;
    }
    let event = xsave::refused_xsetbv_event(read(VmcsField::GuestCr0) & 1 != 0);
    vmwrite(VmcsField::EntryInterruptionInfo, event & 0xffff_ffff);
    vmwrite(VmcsField::EntryExceptionErrorCode, event >> 32);
}

/// Before an entry: the "IA-32e mode guest" control follows the guest's EFER.LMA, which the CPU
/// updates when the guest turns paging on with LME set (SDM Vol. 3C 27.3.1.1). Only needed
/// where VM exits do not store LMA into the control themselves (IA32_VMX_MISC bit 5 clear);
/// the kernel's own EFER writes either set the control with it (a reply's EFER group, the
/// control-register emulation) or leave LMA alone (`handle_efer`).
fn sync_long_mode() {
    let lma = read(VmcsField::GuestEfer) & EFER_LMA != 0;
    let controls = read(VmcsField::EntryControls);
    let wanted = if lma {
        controls | ENTRY_IA32E_MODE
    } else {
        controls & !ENTRY_IA32E_MODE
    };
    if wanted != controls {
        vmwrite(VmcsField::EntryControls, wanted);
    }
}

/// Runs vCPU `index` until an exit the VMM must see and delivers its message through `output`
/// (`super::run`).
pub fn run(
    index: u32,
    reply: &[u64],
    output: super::ExitOutput<'_>,
) -> Result<super::Delivered, Status> {
    let cpu = percpu::current_index();
    let mut guard = VCPUS[index as usize % OBJECTS].lock();
    let vcpu = guard.as_mut().ok_or(Status::Aborted)?;
    // SAFETY: this CPU's own slot, in `run` (see `PerCpu`).
    let cpu_state = unsafe { &mut *CPUS.0[cpu % MAX_CPUS].get() };
    enable_on_this_cpu(cpu, cpu_state)?;
    let state = cpu_state.as_mut().ok_or(Status::Aborted)?;
    load(vcpu, state, index, cpu)?;
    if !reply.is_empty() {
        virt_vmx::apply_reply_words(
            reply,
            &Current,
            &mut vcpu.saved,
            &state.policy,
            &mut state.reply,
            |field, value| {
                vmwrite(field, value);
            },
        )
        .map_err(|_| Status::InvalidArgument)?;
    }
    // The guest's FPU registers, in this CPU until the run returns (saved then; `crate::fpu`).
    let mut fpu = vcpu.fpu.load(cpu);
    loop {
        // Active before the epoch is read: a shootdown either sees this CPU and interrupts the
        // guest, or its new epoch is seen here and the entry flushes.
        crate::smp::ensure_active();
        let entry = state.tags.prepare_entry(&mut vcpu.tag, epoch(vcpu.vm));
        if entry.changed {
            vmwrite(VmcsField::VirtualProcessorId, u64::from(entry.tag));
        }
        if entry.tlb.flush_all_tags || entry.tlb.flush_guest_physical {
            invept_all();
        }
        vmwrite(VmcsField::HostCr3, cr3());
        if !state.exits_store_lma {
            sync_long_mode();
        }
        let launched = vcpu.launched_on == Some(cpu);
        // SAFETY: the VMCS is current on this CPU with host state for this CPU, EPT over memory
        // the VMM was given, and bitmaps that make every port and MSR access exit.
        // The stub loads and stores the GPRs in place except RSP (it lives in the VMCS), whose
        // saved slot is left alone.
        // The CPU stays marked active after the exit (nothing here waits for a lock), so
        // `execution::vcpu_run` can return to the VMM without marking it again; it stops
        // counting as active before interrupt handlers run (they take the kernel lock) and
        // before anything is printed.
        let failed = unsafe { vmx_enter(vcpu.saved.gpr.as_mut_array(), u64::from(launched)) };
        if failed != 0 {
            crate::smp::set_active(false);
            let error = read(VmcsField::InstructionError);
            kprintln!("sluice: vcpu {index}: VM entry failed (VM-instruction error {error})");
            return Err(Status::Aborted);
        }
        vcpu.launched_on = Some(cpu);
        let basic = (read(VmcsField::ExitReason) & 0xffff) as u16;
        match basic {
            exit_reason::PREEMPTION_TIMER if !take_reschedule(cpu) => continue,
            exit_reason::EXTERNAL_INTERRUPT => {
                crate::smp::set_active(false);
                let information = read(VmcsField::ExitInterruptionInfo);
                dispatch_interrupt((information & 0xff) as u8);
                if !take_reschedule(cpu) {
                    continue;
                }
            }
            exit_reason::CONTROL_REGISTER_ACCESS => {
                match handle_control_register_access(&Current, &vcpu.saved, &state.policy) {
                    Ok(ControlRegisterOutcome::Handled(writes)) => {
                        for write in &writes {
                            vmwrite(write.field, write.value);
                        }
                        continue;
                    }
                    Ok(ControlRegisterOutcome::Forward) => {}
                    Err(error) => {
                        crate::smp::set_active(false);
                        kprintln!("sluice: vcpu {index}: control-register exit: {error}");
                    }
                }
            }
            exit_reason::RDMSR | exit_reason::WRMSR if handle_efer(basic, &mut vcpu.saved) => {
                continue
            }
            exit_reason::XSETBV => {
                handle_xsetbv(vcpu, &mut fpu);
                continue;
            }
            _ => {}
        }
        // Preemption exits (they may reschedule) never go straight to the UTCB.
        let direct = match &output.direct {
            Some(direct) if !preempts(basic) => direct.words(),
            _ => None,
        };
        let (out, is_direct) = match direct {
            Some(words) => (words, true),
            None => (&mut *output.scratch, false),
        };
        // The groups the VMM chose for this reason, when it chose any: one general decode
        // tells the reason (only for VMMs that asked for more than the base state).
        let encoded = if vcpu.exit_state.base_only() {
            virt_vmx::encode_exit_with(
                &Current,
                &vcpu.saved,
                BASE_STATE,
                &mut state.exit_fields,
                out,
            )
        } else {
            encode_chosen(vcpu, out)
        };
        return match encoded {
            Ok(count) if is_direct => {
                if let Some(direct) = &output.direct {
                    direct.finish(count);
                }
                Ok(super::Delivered::Direct(count))
            }
            Ok(count) => Ok(super::Delivered::Scratch(count)),
            Err(error) => {
                crate::smp::set_active(false);
                kprintln!("sluice: vcpu {index}: exit {basic} not decodable: {error}");
                Err(Status::Aborted)
            }
        };
    }
}

/// Encodes the current exit with the state groups the VMM chose for its reason, through the
/// general decoder (out of line and apart from `encode_exit_with`, which keeps one call site
/// with the base state; only VMMs that asked for more pay the decodes).
#[cold]
#[inline(never)]
fn encode_chosen(
    vcpu: &VmxVcpu,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, kernel_virt::ExitError> {
    let reason = virt_vmx::decode_exit(&Current, &vcpu.saved, Mtd::empty())?.reason;
    let requested = vcpu.exit_state.groups(&reason);
    virt_vmx::decode_exit(&Current, &vcpu.saved, requested)?
        .to_words(out)
        .map_err(kernel_virt::ExitError::MessageEncoding)
}

/// Whether exit `basic` reaches the VMM as `ExitReason::Preempted`: an external interrupt, the
/// preemption timer, or an NMI (exit interruption type 2, SDM Vol. 3C Table 25-19).
fn preempts(basic: u16) -> bool {
    match basic {
        exit_reason::EXTERNAL_INTERRUPT | exit_reason::PREEMPTION_TIMER => true,
        exit_reason::EXCEPTION_OR_NMI => (read(VmcsField::ExitInterruptionInfo) >> 8) & 7 == 2,
        _ => false,
    }
}

/// An external interrupt acknowledged on exit: run its handler as if the IDT had delivered it.
fn dispatch_interrupt(vector: u8) {
    let mut frame = crate::trap::TrapFrame {
        cs: u64::from(crate::gdt::KERNEL_CODE),
        ..Default::default()
    };
    if vector >= 32 {
        crate::interrupts::handle(vector, &mut frame);
    }
}

extern "C" {
    /// The VM-exit landing inside [`vmx_enter`] (never called: only its address is used).
    fn sluice_vmx_exit();
}

/// INVEPT all-context (type 2): drops every guest-physical translation on this CPU.
fn invept_all() {
    let descriptor = [0u64; 2];
    // SAFETY: INVEPT only invalidates TLB entries; type 2 is supported by every EPT-capable CPU
    // the adjusted controls accept.
    unsafe {
        core::arch::asm!("invept {}, [{}]", in(reg) 2u64, in(reg) &descriptor, options(nostack))
    };
}

/// Enters the guest with VMLAUNCH (`launched` = 0) or VMRESUME: rdi = guest GPRs (16 words,
/// `Gpr` order; RSP lives in the VMCS). The VM exit lands at `sluice_vmx_exit` (HOST_RIP) with
/// RSP = HOST_RSP, where the guest GPRs are saved. Returns 0, or 1 when the entry itself failed.
///
/// # Safety
/// A VMCS must be current on this CPU with valid host and guest state.
#[unsafe(naked)]
unsafe extern "C" fn vmx_enter(registers: *mut [u64; 16], launched: u64) -> u64 {
    naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdi",
        "push rsi",
        "mov rax, 0x6c14", // HOST_RSP (HOST_RIP is `sluice_vmx_exit`, written once)
        "vmwrite rax, rsp",
        "mov rax, [rdi]",
        "mov rcx, [rdi + 8]",
        "mov rdx, [rdi + 16]",
        "mov rbx, [rdi + 24]",
        "mov rbp, [rdi + 40]",
        "mov rsi, [rdi + 48]",
        "mov r8, [rdi + 64]",
        "mov r9, [rdi + 72]",
        "mov r10, [rdi + 80]",
        "mov r11, [rdi + 88]",
        "mov r12, [rdi + 96]",
        "mov r13, [rdi + 104]",
        "mov r14, [rdi + 112]",
        "mov r15, [rdi + 120]",
        "mov rdi, [rdi + 56]",
        "cmp qword ptr [rsp], 0",
        "je 3f",
        "vmresume",
        "jmp 4f",
        "3:",
        "vmlaunch",
        "4:",
        // The entry failed: host callee-saved registers come back from the stack.
        "add rsp, 16",
        "mov eax, 1",
        "jmp 5f",
        ".globl sluice_vmx_exit",
        "sluice_vmx_exit:",
        "push rdi",
        "mov rdi, [rsp + 16]",
        "mov [rdi], rax",
        "mov [rdi + 8], rcx",
        "mov [rdi + 16], rdx",
        "mov [rdi + 24], rbx",
        "mov [rdi + 40], rbp",
        "mov [rdi + 48], rsi",
        "mov [rdi + 64], r8",
        "mov [rdi + 72], r9",
        "mov [rdi + 80], r10",
        "mov [rdi + 88], r11",
        "mov [rdi + 96], r12",
        "mov [rdi + 104], r13",
        "mov [rdi + 112], r14",
        "mov [rdi + 120], r15",
        "pop rax",
        "mov [rdi + 56], rax",
        "add rsp, 16",
        "xor eax, eax",
        "5:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
    );
}
