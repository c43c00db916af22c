//! Every way into the kernel: exceptions and interrupts (through the IDT) and `syscall`. All
//! build the same [`TrapFrame`]. An entry from ring 3 builds it in the running thread's register
//! slot (`execution::frames`: `syscall` finds the slot's top in the per-CPU data, the CPU in
//! TSS.RSP0), then switches to the CPU's kernel stack; the dispatcher returns the slot of the
//! thread to run, which `user_return` pops (`swapgs; iretq`). An entry from ring 0 (the idle
//! loop, a vCPU loop's interrupt window) saves its frame on the kernel stack it interrupted and
//! returns there. The kernel never runs with interrupts enabled except when idle.

use crate::percpu::{OFFSET_FRAME_TOP, OFFSET_KERNEL_STACK, OFFSET_USER_STACK};
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

// The common save/restore paths. `trap_entry` tells entries from ring 3 (CS at [rsp+24]
// after the vector and error code) from entries from ring 0. From ring 3 it swaps GS and falls
// into `user_save`, which moves to the kernel stack and calls `dispatch_user`; `syscall_entry`
// builds its part of the frame and jumps to `syscall_save`, the same with `dispatch_syscall`.
// Both dispatchers return the frame to resume, which `user_return` pops; `user_return` is also
// entered directly (`resume`) with RSP at a thread's slot. From ring 0 the frame stays on the
// interrupted stack and `dispatch_kernel` returns to it.
global_asm!(
    // The general-purpose registers in `TrapFrame` order (RAX at the highest address).
    ".macro SAVE_REGISTERS",
    "    push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
    "    push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
    ".endm",
    ".macro RESTORE_REGISTERS",
    "    pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
    "    pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
    ".endm",
    ".global trap_entry",
    ".global user_return",
    "trap_entry:",
    "    test byte ptr [rsp + 24], 3",
    "    jz 3f",
    "    swapgs",
    "user_save:",
    "    SAVE_REGISTERS",
    "    mov rdi, rsp",
    "    mov rsp, gs:[{kernel_stack}]",
    "    cld",
    "    call {dispatch_user}",
    "    mov rsp, rax",
    "user_return:",
    "    RESTORE_REGISTERS",
    "    add rsp, 16",
    "    swapgs",
    "    iretq",
    "syscall_save:",
    "    SAVE_REGISTERS",
    "    mov rdi, rsp",
    "    mov rsp, gs:[{kernel_stack}]",
    "    cld",
    "    call {dispatch_syscall}",
    "    mov rsp, rax",
    "    jmp user_return",
    "3:",
    "    SAVE_REGISTERS",
    "    mov rdi, rsp",
    "    cld",
    "    call {dispatch_kernel}",
    "    RESTORE_REGISTERS",
    "    add rsp, 16",
    "    iretq",
    kernel_stack = const OFFSET_KERNEL_STACK,
    dispatch_user = sym dispatch_user,
    dispatch_syscall = sym dispatch_syscall,
    dispatch_kernel = sym dispatch_kernel,
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
/// Builds an interrupt-style frame in the running thread's slot and joins the common path.
#[unsafe(naked)]
pub extern "C" fn syscall_entry() {
    naked_asm!(
        "swapgs",
        "mov gs:[{user_stack}], rsp",
        "mov rsp, gs:[{frame_top}]",
        "push {user_data}",
        "push qword ptr gs:[{user_stack}]",
        "push r11",
        "push {user_code}",
        "push rcx",
        "push 0",
        "push {vector}",
        "jmp syscall_save",
        user_stack = const OFFSET_USER_STACK,
        frame_top = const OFFSET_FRAME_TOP,
        user_data = const crate::gdt::USER_DATA as u64,
        user_code = const crate::gdt::USER_CODE as u64,
        vector = const SYSCALL_VECTOR,
    );
}

/// Called with every frame saved on an entry from ring 3; returns the frame to resume.
extern "C" fn dispatch_user(frame: *mut TrapFrame) -> *mut TrapFrame {
    // The NMI and double-fault gates have stacks of their own (IST), so their frame is not in
    // the thread's slot: move it there, so the thread's registers are where the kernel keeps
    // them whatever happens next.
    let mut frame = frame;
    // SAFETY: `frame` points at the complete frame just pushed by the entry code.
    let vector = unsafe { (*frame).vector };
    if vector == 2 || vector == 8 {
        let top = crate::percpu::frame_top();
        let slot = (top - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
        if frame != slot {
            // SAFETY: `slot` is the running thread's slot, which nothing else uses while the
            // thread runs on this CPU; the IST frame is complete.
            unsafe { core::ptr::copy_nonoverlapping(frame, slot, 1) };
            frame = slot;
        }
    }
    // SAFETY: `frame` is the running thread's slot, complete and owned by this CPU now.
    let frame = unsafe { &mut *frame };
    // Entries that leave through the scheduler (which checks for flushes and marks the CPU
    // active again in `run`) stop counting as active, so a shootdown does not wait for a CPU
    // that spins on the kernel lock. The flush and spurious interrupts return straight to ring
    // 3, so the CPU stays active through them (see `smp::flush_everywhere`). (System calls
    // enter through `dispatch_syscall`: `execution::system_call` decides for them.)
    if vector != u64::from(crate::apic::FLUSH_VECTOR)
        && vector != u64::from(crate::apic::SPURIOUS_VECTOR)
    {
        crate::smp::set_active(false);
    }
    match vector {
        0..=31 => crate::execution::user_exception(frame),
        vector => crate::interrupts::handle(vector as u8, frame),
    }
}

/// Called with the frame of every `syscall` (saved in the running thread's slot); returns the
/// frame to resume.
extern "C" fn dispatch_syscall(frame: &mut TrapFrame) -> *mut TrapFrame {
    crate::execution::system_call(frame)
}

/// Called with every frame saved on an entry from ring 0 (the idle loop or a vCPU loop was
/// interrupted); returns to it.
extern "C" fn dispatch_kernel(frame: &mut TrapFrame) {
    match frame.vector {
        0..=31 => crate::idt::fatal_exception(frame),
        vector => {
            crate::interrupts::handle(vector as u8, frame);
        }
    }
}

/// Leaves the kernel into `frame`, a thread's register slot (`execution::frames`).
pub fn resume(frame: *mut TrapFrame) -> ! {
    // SAFETY: the slot holds the complete saved frame of a ring-3 thread this CPU now runs;
    // `user_return` pops it and returns to ring 3. Nothing on the kernel stack is live any more
    // (callers never return).
    unsafe { core::arch::asm!("mov rsp, {}", "jmp user_return", in(reg) frame, options(noreturn)) }
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
