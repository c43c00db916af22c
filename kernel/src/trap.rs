//! Every way into the kernel: exceptions and interrupts (through the IDT) and `syscall`. All
//! build the same [`TrapFrame`] on the CPU's kernel stack, so one dispatcher handles them and
//! one exit path (`trap_restore`) returns, to ring 3 with `swapgs; iretq` or to the kernel's
//! idle loop with `iretq`. The kernel never runs with interrupts enabled except when idle.

use crate::percpu::{OFFSET_KERNEL_STACK, OFFSET_USER_STACK};
use core::arch::{global_asm, naked_asm};

/// The registers saved on every entry, lowest address first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Exception or interrupt vector; [`SYSCALL_VECTOR`] for `syscall`.
    pub vector: u64,
    pub error_code: u64,
    // The interrupt frame (SDM Vol. 3A, Figure 6-9); `syscall_entry` builds the same.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the trap came from ring 3.
    pub fn came_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// The pseudo-vector of the `syscall` entry (beyond the 256 IDT vectors).
pub const SYSCALL_VECTOR: u64 = 256;

// The common save/restore path. `trap_entry` swaps GS when the trap came from ring 3 (CS at
// [rsp+24] after the vector and error code), then falls into `trap_save`, which `syscall_entry`
// also jumps to after building its frame. `trap_restore` is also entered directly to start a
// thread: with RSP pointing at a complete frame.
global_asm!(
    ".global trap_entry",
    ".global trap_restore",
    "trap_entry:",
    "    test byte ptr [rsp + 24], 3",
    "    jz trap_save",
    "    swapgs",
    "trap_save:",
    "    push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
    "    push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
    "    mov rdi, rsp",
    "    cld",
    "    call {dispatch}",
    "trap_restore:",
    "    pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
    "    pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
    "    add rsp, 16",
    "    test byte ptr [rsp + 8], 3",
    "    jz 2f",
    "    swapgs",
    "2:",
    "    iretq",
    dispatch = sym dispatch,
);

// Interrupt stubs for vectors 32-255, 16 bytes apart from `interrupt_stubs`.
global_asm!(
    ".global interrupt_stubs",
    ".balign 16",
    "interrupt_stubs:",
    ".set vector, 32",
    ".rept 224",
    "    .balign 16",
    "    pushq $0",
    "    pushq $vector",
    "    jmp trap_entry",
    "    .set vector, vector + 1",
    ".endr",
    options(att_syntax),
);

unsafe extern "C" {
    static interrupt_stubs: u8;
}

/// The address of the stub for `vector` (32..=255).
pub fn interrupt_stub(vector: u8) -> u64 {
    (&raw const interrupt_stubs as u64) + 16 * (u64::from(vector) - 32)
}

/// `syscall` lands here (IA32_LSTAR): RCX = user RIP, R11 = user RFLAGS, RSP = user stack.
/// Builds an interrupt-style frame on the kernel stack and joins the common path.
#[unsafe(naked)]
pub extern "C" fn syscall_entry() {
    naked_asm!(
        "swapgs",
        "mov gs:[{user_stack}], rsp",
        "mov rsp, gs:[{kernel_stack}]",
        "push {user_data}",
        "push qword ptr gs:[{user_stack}]",
        "push r11",
        "push {user_code}",
        "push rcx",
        "push 0",
        "push {vector}",
        "jmp trap_save",
        user_stack = const OFFSET_USER_STACK,
        kernel_stack = const OFFSET_KERNEL_STACK,
        user_data = const crate::gdt::USER_DATA as u64,
        user_code = const crate::gdt::USER_CODE as u64,
        vector = const SYSCALL_VECTOR,
    );
}

/// Called with every saved frame.
extern "C" fn dispatch(frame: &mut TrapFrame) {
    // Entries from ring 3 that leave through the scheduler (which checks for flushes and marks
    // the CPU active again in `run`) stop counting as active, so a shootdown does not wait for a
    // CPU that spins on the kernel lock. The flush and spurious interrupts return straight to
    // ring 3, so the CPU stays active through them (see `smp::flush_everywhere`).
    let straight_back = [crate::apic::FLUSH_VECTOR, crate::apic::SPURIOUS_VECTOR]
        .iter()
        .any(|&vector| frame.vector == u64::from(vector));
    if frame.came_from_user() && !straight_back {
        crate::smp::set_active(false);
    }
    match frame.vector {
        SYSCALL_VECTOR => crate::execution::system_call(frame),
        0..=31 if frame.came_from_user() => crate::execution::user_exception(frame),
        0..=31 => crate::idt::fatal_exception(frame),
        vector => crate::interrupts::handle(vector as u8, frame),
    }
}

/// Leaves the kernel into `frame` (a thread's saved registers) on this CPU's stack.
pub fn resume(frame: &TrapFrame) -> ! {
    let top = crate::percpu::stack_top(crate::percpu::current_index());
    let size = core::mem::size_of::<TrapFrame>() as u64;
    let at = (top - size) & !15;
    // SAFETY: the frame is copied to the top of this CPU's own kernel stack, which holds
    // nothing live once we commit to leaving (callers never return); `trap_restore` pops it.
    unsafe {
        core::ptr::write(at as *mut TrapFrame, *frame);
        core::arch::asm!("mov rsp, {}", "jmp trap_restore", in(reg) at, options(noreturn));
    }
}

/// Enables `syscall`/`sysret` and points IA32_LSTAR at [`syscall_entry`] (SDM Vol. 3A, 5.8.8).
pub fn init_syscall() {
    const EFER: u32 = 0xc000_0080;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const FMASK: u32 = 0xc000_0084;
    // Cleared on entry: TF, IF, DF, AC.
    const MASKED_FLAGS: u64 = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 18);
    // SAFETY: standard MSRs of every x86-64 CPU; the selectors match the GDT layout (gdt.rs).
    unsafe {
        let efer = x86::msr::rdmsr(EFER);
        x86::msr::wrmsr(EFER, efer | 1); // SCE
        let star =
            (u64::from(crate::gdt::KERNEL_DATA) << 48) | (u64::from(crate::gdt::KERNEL_CODE) << 32);
        x86::msr::wrmsr(STAR, star);
        x86::msr::wrmsr(LSTAR, syscall_entry as *const () as u64);
        x86::msr::wrmsr(FMASK, MASKED_FLAGS);
    }
}
