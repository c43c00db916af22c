//! Per-CPU state, reached through the GS base while in the kernel (`swapgs` on every entry from
//! ring 3, Intel SDM Vol. 2B SWAPGS): the CPU's kernel stack, a scratch slot for the user stack
//! pointer during `syscall`, where the running thread's registers are saved on the next entry,
//! and the CPU's identity. The assembly entry paths use the field
//! offsets below, so the layout is fixed (`repr(C)`, checked at compile time).

use core::mem::offset_of;

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 8;
/// Size of each CPU's kernel stack (traps, system calls and the idle loop run on it).
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

/// One CPU's kernel data.
#[repr(C)]
pub struct PerCpu {
    /// This structure's own address (so `gs:[0]` gives a normal pointer).
    pub self_pointer: u64,
    /// Top of the kernel stack (the kernel's own code runs on it).
    pub kernel_stack_top: u64,
    /// The user RSP while `syscall_entry` switches stacks.
    pub user_stack_scratch: u64,
    /// Index of this CPU (0 = boot CPU).
    pub index: u64,
    /// Local APIC ID.
    pub apic_id: u64,
    /// Top of the running thread's register slot (`execution::frames`; also TSS.RSP0): the
    /// next entry from ring 3 saves the thread's registers there.
    pub frame_top: u64,
}

pub const OFFSET_KERNEL_STACK: usize = offset_of!(PerCpu, kernel_stack_top);
pub const OFFSET_USER_STACK: usize = offset_of!(PerCpu, user_stack_scratch);
pub const OFFSET_FRAME_TOP: usize = offset_of!(PerCpu, frame_top);
const _: () =
    assert!(OFFSET_KERNEL_STACK == 8 && OFFSET_USER_STACK == 16 && OFFSET_FRAME_TOP == 40);

#[repr(C, align(16))]
struct Stack([u8; KERNEL_STACK_SIZE]);

static mut STACKS: [Stack; MAX_CPUS] = [const { Stack([0; KERNEL_STACK_SIZE]) }; MAX_CPUS];
static mut CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_pointer: 0,
        kernel_stack_top: 0,
        user_stack_scratch: 0,
        index: 0,
        apic_id: 0,
        frame_top: 0,
    }
}; MAX_CPUS];

/// IA32_GS_BASE and IA32_KERNEL_GS_BASE (SDM Vol. 4, Table 2-2).
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Top of CPU `index`'s kernel stack.
pub fn stack_top(index: usize) -> u64 {
    // SAFETY: only the address is taken; the stacks are 'static.
    unsafe { (&raw const STACKS[index % MAX_CPUS] as u64) + KERNEL_STACK_SIZE as u64 }
}

/// Sets up CPU `index`'s structure and points GS at it (kernel GS active now; the user's GS
/// base, zero, waits in KERNEL_GS_BASE for the first `swapgs`).
pub fn init(index: usize, apic_id: u32) {
    let index = index % MAX_CPUS;
    // SAFETY: each CPU initializes only its own entry, once, before using GS; the MSR writes
    // set this CPU's GS bases, which nothing else relies on yet.
    unsafe {
        let cpu = &raw mut CPUS[index];
        (*cpu).self_pointer = cpu as u64;
        (*cpu).kernel_stack_top = stack_top(index);
        (*cpu).index = index as u64;
        (*cpu).apic_id = u64::from(apic_id);
        x86::msr::wrmsr(MSR_GS_BASE, cpu as u64);
        x86::msr::wrmsr(MSR_KERNEL_GS_BASE, 0);
    }
}

/// The index of the CPU this runs on.
pub fn current_index() -> usize {
    let index: u64;
    // SAFETY: in the kernel GS points at this CPU's PerCpu (set by `init`, kept by the swapgs
    // discipline of the entry paths); reading one field has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[{offset}]", out(reg) index, offset = const offset_of!(PerCpu, index),
            options(nostack, readonly, preserves_flags))
    };
    index as usize
}

/// Makes the next entry from ring 3 on this CPU save its registers below `top` (see
/// `execution::frames`): for `syscall` through this structure, for interrupts and exceptions
/// through TSS.RSP0.
pub fn set_frame_top(cpu: usize, top: u64) {
    // SAFETY: GS points at this CPU's PerCpu; only this CPU writes its own `frame_top`, with
    // interrupts off (the kernel never runs with them on outside the idle loop).
    unsafe {
        core::arch::asm!("mov gs:[{offset}], {}", in(reg) top, offset = const OFFSET_FRAME_TOP,
            options(nostack, preserves_flags))
    };
    crate::gdt::set_ring0_stack(cpu, top);
}

/// The top of the running thread's register slot (see [`set_frame_top`]).
pub fn frame_top() -> u64 {
    let top: u64;
    // SAFETY: GS points at this CPU's PerCpu; reading one field has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[{offset}]", out(reg) top, offset = const OFFSET_FRAME_TOP,
            options(nostack, readonly, preserves_flags))
    };
    top
}
