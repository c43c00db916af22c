//! AMD SVM (APM Vol. 2, chapter 15): per-CPU enablement (EFER.SVME, VM_HSAVE_PA), one VMCB per
//! vCPU, the VMRUN loop, and the exits the kernel keeps (physical interrupts, guest EFER
//! accesses). Layout, intercepts, exit decoding and reply application come from
//! `kernel_virt::svm`; this file holds the privileged instructions.

use super::{epoch, nested_root, take_reschedule};
use crate::execution::OBJECTS;
use crate::fpu::GuestFpu;
use crate::frames;
use crate::paging::phys_to_virt;
use crate::percpu::{self, MAX_CPUS};
use crate::sync::SpinLock;
use core::arch::naked_asm;
use kernel_virt::asid::{TagAllocator, VcpuTag};
use kernel_virt::svm::setup::{configure, ControlSetup};
use kernel_virt::svm::{
    self as virt_svm, exit_code, SvmFeatures, Vmcb, VmcbField, VmcbSegment, VMCB_SIZE,
};
use kernel_virt::xsave;
use kernel_virt::{ExitStateTable, HostPhys, SavedRegisters, BASE_STATE};
use sluice_abi::syscall::Status;
use sluice_abi::vcpu::{Gpr, Mtd, Reply, MAX_EXIT_WORDS};

/// IA32_EFER and its SVME bit (APM Vol. 2, 15.4), VM_HSAVE_PA (15.30.4).
const MSR_EFER: u32 = 0xc000_0080;
const EFER_SVME: u64 = 1 << 12;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
/// Guest EFER bits a guest may set: SCE, LME, LMA (read-only to the guest), NXE.
const GUEST_EFER_WRITABLE: u64 = (1 << 0) | (1 << 8) | (1 << 11);
/// V_INTR_MASKING (VIRTUAL_INTERRUPT bit 24): physical interrupts follow the host's RFLAGS.IF
/// while the guest runs, so they always exit to the host (APM Vol. 2, 15.21.1).
const V_INTR_MASKING: u64 = 1 << 24;

#[repr(C, align(4096))]
struct PermissionMap<const N: usize>([u8; N]);

/// Every port and every MSR is intercepted (APM Vol. 2, 15.10.1 and 15.11): all ones.
static IO_PERMISSION_MAP: PermissionMap<{ 3 * 4096 }> = PermissionMap([0xff; 3 * 4096]);
static MSR_PERMISSION_MAP: PermissionMap<{ 2 * 4096 }> = PermissionMap([0xff; 2 * 4096]);

/// One CPU's SVM state.
struct SvmCpu {
    /// Where VMSAVE/VMLOAD keep the host's FS/GS/TR/LDTR and syscall MSRs.
    host_area: u64,
    tags: TagAllocator,
    /// Scratch for decoding replies in place (no per-exit zeroing or moves).
    reply: Reply,
}

static CPUS: [SpinLock<Option<SvmCpu>>; MAX_CPUS] = [const { SpinLock::new(None) }; MAX_CPUS];

/// One vCPU.
struct SvmVcpu {
    vmcb: u64,
    vm: u32,
    saved: SavedRegisters,
    tag: VcpuTag,
    /// The state groups its exits carry, per reason.
    exit_state: ExitStateTable,
    /// Its guest's FPU/SSE/AVX registers and XCR0.
    fpu: GuestFpu,
}

static VCPUS: [SpinLock<Option<SvmVcpu>>; OBJECTS] = [const { SpinLock::new(None) }; OBJECTS];

/// CPUID 0x8000_000A EDX (the SVM feature flags, APM Vol. 3, E.4.9), read once when the first
/// CPU enables SVM: every CPU reports the same, and a CPUID per exit costs a VM exit's worth
/// under nested virtualization.
static FEATURE_FLAGS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

fn features() -> SvmFeatures {
    SvmFeatures::from_cpuid_edx(FEATURE_FLAGS.load(core::sync::atomic::Ordering::Relaxed))
}

fn asid_count() -> u32 {
    core::arch::x86_64::__cpuid_count(0x8000_000a, 0).ebx
}

fn vmcb(physical: u64) -> Vmcb<&'static mut [u8; VMCB_SIZE]> {
    // SAFETY: `physical` is a VMCB frame owned by one vCPU, used under that vCPU's lock only;
    // it lies in the direct map.
    Vmcb::new(unsafe { &mut *(phys_to_virt(physical) as *mut [u8; VMCB_SIZE]) })
}

/// Enables SVM on this CPU (once: `slot` is this CPU's state, empty until then).
fn enable_on_this_cpu(cpu: usize, slot: &mut Option<SvmCpu>) -> Result<(), Status> {
    if slot.is_some() {
        return Ok(());
    }
    FEATURE_FLAGS.store(
        core::arch::x86_64::__cpuid_count(0x8000_000a, 0).edx,
        core::sync::atomic::Ordering::Relaxed,
    );
    let host_save = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
    let host_area = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
    let tags = TagAllocator::svm(cpu as u32, asid_count()).map_err(|_| Status::NotImplemented)?;
    // SAFETY: SVM is present (the backend was chosen from CPUID); setting EFER.SVME and the host
    // save area is what APM 15.4 requires before VMRUN, and changes nothing else.
    unsafe {
        let efer = x86::msr::rdmsr(MSR_EFER);
        x86::msr::wrmsr(MSR_EFER, efer | EFER_SVME);
        x86::msr::wrmsr(MSR_VM_HSAVE_PA, host_save);
    }
    *slot = Some(SvmCpu {
        host_area,
        tags,
        reply: Reply::default(),
    });
    Ok(())
}

fn write_segment(
    vmcb: &mut Vmcb<&'static mut [u8; VMCB_SIZE]>,
    segment: VmcbSegment,
    selector: u64,
    attributes: u64,
    limit: u64,
    base: u64,
) {
    vmcb.write(segment.selector(), selector);
    vmcb.write(segment.attributes(), attributes);
    vmcb.write(segment.limit(), limit);
    vmcb.write(segment.base(), base);
}

/// Creates vCPU `index` of VM `vm` in the architectural reset state (Intel SDM Vol. 3A 9.1.1,
/// APM Vol. 2 14.1.3): real mode at F000:FFF0. The VMM's first reply sets its start state.
pub fn create_vcpu(index: u32, vm: u32) -> Result<(), Status> {
    let root = nested_root(vm).ok_or(Status::Aborted)?;
    let frame = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
    let mut block = vmcb(frame);
    let setup = ControlSetup {
        io_permission_map: HostPhys(&raw const IO_PERMISSION_MAP as u64),
        msr_permission_map: HostPhys(&raw const MSR_PERMISSION_MAP as u64),
        asid: 1,
        nested_cr3: root,
        exceptions: 0,
    };
    configure(&mut block, &setup);
    block.write(VmcbField::VIRTUAL_INTERRUPT, V_INTR_MASKING);
    write_segment(
        &mut block,
        VmcbSegment::Cs,
        0xf000,
        0x9b,
        0xffff,
        0xffff_0000,
    );
    for segment in [
        VmcbSegment::Ds,
        VmcbSegment::Es,
        VmcbSegment::Ss,
        VmcbSegment::Fs,
        VmcbSegment::Gs,
    ] {
        write_segment(&mut block, segment, 0, 0x93, 0xffff, 0);
    }
    write_segment(&mut block, VmcbSegment::Gdtr, 0, 0, 0xffff, 0);
    write_segment(&mut block, VmcbSegment::Idtr, 0, 0, 0xffff, 0);
    write_segment(&mut block, VmcbSegment::Ldtr, 0, 0x82, 0xffff, 0);
    write_segment(&mut block, VmcbSegment::Tr, 0, 0x8b, 0xffff, 0);
    block.write(VmcbField::CR0, 0x6000_0010);
    block.write(VmcbField::EFER, EFER_SVME);
    block.write(VmcbField::RFLAGS, 0x2);
    block.write(VmcbField::RIP, 0xfff0);
    block.write(VmcbField::DR6, 0xffff_0ff0);
    block.write(VmcbField::DR7, 0x400);
    let fpu = GuestFpu::new().inspect_err(|_| frames::free(frame))?;
    *VCPUS[index as usize % OBJECTS].lock() = Some(SvmVcpu {
        vmcb: frame,
        vm,
        saved: SavedRegisters::default(),
        tag: VcpuTag::new(),
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
        frames::free(vcpu.vmcb);
        vcpu.fpu.free();
    }
}

/// Handles a guest RDMSR/WRMSR of EFER, which the kernel keeps (SVME must stay set, APM 15.5.1).
/// Returns false for any other MSR.
fn handle_efer(block: &mut Vmcb<&'static mut [u8; VMCB_SIZE]>, saved: &mut SavedRegisters) -> bool {
    if saved.gpr.get(Gpr::Rcx) & 0xffff_ffff != u64::from(MSR_EFER) {
        return false;
    }
    let efer = block.read(VmcbField::EFER);
    if block.read(VmcbField::EXITINFO1) == 0 {
        let visible = efer & !EFER_SVME;
        block.write(VmcbField::RAX, visible & 0xffff_ffff);
        saved.gpr.set(Gpr::Rdx, visible >> 32);
    } else {
        let value = (saved.gpr.get(Gpr::Rdx) << 32) | (block.read(VmcbField::RAX) & 0xffff_ffff);
        let keep = efer & !(GUEST_EFER_WRITABLE | (1 << 10));
        block.write(
            VmcbField::EFER,
            keep | (value & GUEST_EFER_WRITABLE) | (efer & (1 << 10)) | EFER_SVME,
        );
    }
    // RDMSR and WRMSR are two bytes (0F 32, 0F 30); there is no NRIP save under QEMU TCG.
    let rip = block.read(VmcbField::RIP);
    block.write(VmcbField::RIP, rip + 2);
    true
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
    let mut block = vmcb(vcpu.vmcb);
    let mut cpu_state = CPUS[cpu].lock();
    enable_on_this_cpu(cpu, &mut cpu_state)?;
    let state = cpu_state.as_mut().ok_or(Status::Aborted)?;
    if !reply.is_empty() {
        virt_svm::apply_reply_words(reply, &mut block, &mut vcpu.saved, &mut state.reply)
            .map_err(|_| Status::InvalidArgument)?;
    }
    // Physical interrupts must exit the guest (V_INTR_MASKING, set at creation; no reply
    // clears it): checked on every run, written only if it were ever missing.
    let virtual_interrupt = block.read(VmcbField::VIRTUAL_INTERRUPT);
    if virtual_interrupt & V_INTR_MASKING == 0 {
        block.write(
            VmcbField::VIRTUAL_INTERRUPT,
            virtual_interrupt | V_INTR_MASKING,
        );
    }
    // The guest's FPU registers, in this CPU until the run returns (saved then; `crate::fpu`).
    let mut fpu = vcpu.fpu.load(cpu);
    // An event the kernel injected itself (a refused XSETBV's #GP): EVENTINJ is cleared after
    // the entry that delivered it.
    let mut injected = false;
    loop {
        // Active before the epoch is read: a shootdown either sees this CPU and interrupts the
        // guest, or its new epoch is seen here and the entry flushes.
        crate::smp::ensure_active();
        let entry = state.tags.prepare_entry(&mut vcpu.tag, epoch(vcpu.vm));
        if entry.changed {
            block.write(VmcbField::GUEST_ASID, u64::from(entry.tag));
        }
        block.write(VmcbField::TLB_CONTROL, u64::from(entry.svm_tlb_control()));
        block.set_clean_bits(kernel_virt::svm::CleanBits::empty());
        // SAFETY: the VMCB is this vCPU's, configured with intercepts for every instruction and
        // event that could harm the host and nested paging over memory the VMM was given; the
        // host save areas are this CPU's; the register array outlives the call. The stub
        // loads and stores the GPRs in place except RAX and RSP (they live in the VMCB), so
        // the saved slots of those two are left alone.
        // The CPU stays marked active after the exit (nothing here waits for a lock), so
        // `execution::vcpu_run` can return to the VMM without marking it again; it stops
        // counting as active before interrupt handlers run (they take the kernel lock).
        unsafe { svm_enter(vcpu.vmcb, vcpu.saved.gpr.as_mut_array(), state.host_area) };
        if injected {
            block.write(VmcbField::EVENTINJ, 0);
            injected = false;
        }
        let code = block.read(VmcbField::EXITCODE);
        if code == exit_code::XSETBV {
            injected = handle_xsetbv(&mut block, vcpu, &mut fpu);
            continue;
        }
        if code == exit_code::INTR || code == exit_code::NMI {
            crate::smp::set_active(false);
            service_pending_interrupts();
            if !take_reschedule(cpu) {
                continue;
            }
        } else if code == exit_code::MSR && handle_efer(&mut block, &mut vcpu.saved) {
            continue;
        }
        // Preemption exits (INTR/NMI with a reschedule) never go straight to the UTCB.
        let direct = match &output.direct {
            Some(direct) if code != exit_code::INTR && code != exit_code::NMI => direct.words(),
            _ => None,
        };
        let (out, is_direct) = match direct {
            Some(words) => (words, true),
            None => (&mut *output.scratch, false),
        };
        // The groups the VMM chose for this reason, when it chose any: one general decode
        // tells the reason (only for VMMs that asked for more than the base state).
        let encoded = if vcpu.exit_state.base_only() {
            virt_svm::encode_exit(&block, &vcpu.saved, BASE_STATE, features(), out)
        } else {
            encode_chosen(&block, vcpu, out)
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
                kprintln!("sluice: vcpu {index}: exit {code:#x} not decodable: {error}");
                Err(Status::Aborted)
            }
        };
    }
}

/// Encodes the exit in `block` with the state groups the VMM chose for its reason, through the
/// general decoder (out of line and apart from `encode_exit`, which stays inlined into the loop
/// with the base state; only VMMs that asked for more pay the decodes).
#[cold]
#[inline(never)]
fn encode_chosen(
    block: &Vmcb<&mut [u8; VMCB_SIZE]>,
    vcpu: &SvmVcpu,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, kernel_virt::ExitError> {
    let reason = virt_svm::decode_exit(block, &vcpu.saved, Mtd::empty(), features())?.reason;
    let requested = vcpu.exit_state.groups(&reason);
    virt_svm::decode_exit(block, &vcpu.saved, requested, features())?
        .to_words(out)
        .map_err(kernel_virt::ExitError::MessageEncoding)
}

/// The guest's XSETBV (always 3 bytes, 0F 01 D1; no NRIP under QEMU TCG): a value
/// `xsave::check_guest_xcr0` accepts from ring 0 becomes the guest's XCR0 and the instruction
/// completes; anything else gets #GP(0) (SDM Vol. 2C XSETBV; no error code in real mode).
/// Returns whether it injected the #GP.
fn handle_xsetbv(
    block: &mut Vmcb<&'static mut [u8; VMCB_SIZE]>,
    vcpu: &mut SvmVcpu,
    fpu: &mut crate::fpu::Loaded,
) -> bool {
    let gpr = &vcpu.saved.gpr;
    let index = gpr.get(Gpr::Rcx) as u32;
    let value = (gpr.get(Gpr::Rdx) << 32) | (block.read(VmcbField::RAX) & 0xffff_ffff);
    let cpl = block.read(VmcbField::CPL);
    if cpl == 0 && xsave::check_guest_xcr0(index, value, crate::fpu::host_xcr0()).is_ok() {
        vcpu.fpu.set_xcr0(value, fpu);
        let rip = block.read(VmcbField::RIP);
        block.write(VmcbField::RIP, rip + 3);
        return false;
    }
    let protected = block.read(VmcbField::CR0) & 1 != 0;
    block.write(VmcbField::EVENTINJ, xsave::refused_xsetbv_event(protected));
    true
}

/// Takes interrupts that arrived while the guest ran (they wait with IF=0 after the exit).
fn service_pending_interrupts() {
    // SAFETY: the kernel lock is not held here, so the handlers may take it; one instruction
    // with interrupts enabled lets every pending interrupt in, then they are off again.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Enters the guest: rdi = VMCB, rsi = guest GPRs (16 words, `Gpr` order; RAX and RSP live
/// in the VMCB), rdx = host VMSAVE area. Host FS/GS/TR/LDTR and syscall MSRs are saved with
/// VMSAVE and restored with VMLOAD around VMRUN (APM Vol. 2, 15.5.2); physical interrupts
/// exit the guest (INTR intercept with V_INTR_MASKING and host IF set) and stay pending until
/// the kernel enables interrupts.
///
/// # Safety
/// The VMCB and host area must be valid for this CPU with SVM enabled.
#[unsafe(naked)]
unsafe extern "C" fn svm_enter(vmcb: u64, registers: *mut [u64; 16], host_area: u64) {
    naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rsi",
        "push rdx",
        "push rdi",
        "clgi",
        "sti",
        "mov rax, rdx",
        "vmsave",
        "mov rax, rsi",
        "mov rcx, [rax + 8]",
        "mov rdx, [rax + 16]",
        "mov rbx, [rax + 24]",
        "mov rbp, [rax + 40]",
        "mov rsi, [rax + 48]",
        "mov rdi, [rax + 56]",
        "mov r8, [rax + 64]",
        "mov r9, [rax + 72]",
        "mov r10, [rax + 80]",
        "mov r11, [rax + 88]",
        "mov r12, [rax + 96]",
        "mov r13, [rax + 104]",
        "mov r14, [rax + 112]",
        "mov r15, [rax + 120]",
        "mov rax, [rsp]",
        "vmload",
        "vmrun",
        "vmsave",
        "push rcx",
        "mov rcx, [rsp + 24]",
        "mov [rcx + 16], rdx",
        "mov [rcx + 24], rbx",
        "mov [rcx + 40], rbp",
        "mov [rcx + 48], rsi",
        "mov [rcx + 56], rdi",
        "mov [rcx + 64], r8",
        "mov [rcx + 72], r9",
        "mov [rcx + 80], r10",
        "mov [rcx + 88], r11",
        "mov [rcx + 96], r12",
        "mov [rcx + 104], r13",
        "mov [rcx + 112], r14",
        "mov [rcx + 120], r15",
        "pop rax",
        "mov [rcx + 8], rax",
        "mov rax, [rsp + 8]",
        "vmload",
        "cli",
        "stgi",
        "add rsp, 24",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
    );
}
