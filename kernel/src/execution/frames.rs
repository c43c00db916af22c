//! Where each thread's registers live: one [`TrapFrame`] slot per thread (indexed like the
//! thread table), outside the kernel lock's data so the entry code can write it directly.
//!
//! A thread's slot is its register save area, NOVA-style: while the thread runs, this CPU's
//! `syscall` entry builds the frame in the slot (its top is the per-CPU `frame_top`) and the
//! CPU pushes interrupt and exception frames from ring 3 there too (TSS.RSP0 points at the same
//! top). The kernel then runs on its per-CPU stack and leaves by popping the chosen thread's
//! slot. Switching threads copies no registers: it changes which slot is popped and where the
//! next entry will save.
//!
//! Ownership rule (what makes the unsynchronized cell sound): a slot is written by the entry
//! code of the CPU running the thread, and otherwise only under the kernel lock while the
//! thread is not running (a blocked thread gets its IPC status, a new thread its first
//! registers). Code that holds the running thread's frame as `&mut` never asks for that
//! thread's slot through [`frame`].

use super::OBJECTS;
use crate::trap::TrapFrame;
use core::cell::UnsafeCell;

/// The slots, 16-byte aligned: the CPU aligns RSP0 to 16 before pushing an interrupt frame
/// (SDM Vol. 3A, 6.14.2), and a frame is 176 bytes (11 x 16), so every slot's top is aligned.
#[repr(C, align(16))]
struct Slots([UnsafeCell<TrapFrame>; OBJECTS]);

// SAFETY: access follows the ownership rule in the module documentation.
unsafe impl Sync for Slots {}

const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

static SLOTS: Slots = Slots([const { UnsafeCell::new(ZERO) }; OBJECTS]);

const ZERO: TrapFrame = TrapFrame {
    r15: 0,
    r14: 0,
    r13: 0,
    r12: 0,
    r11: 0,
    r10: 0,
    r9: 0,
    r8: 0,
    rbp: 0,
    rdi: 0,
    rsi: 0,
    rdx: 0,
    rcx: 0,
    rbx: 0,
    rax: 0,
    vector: 0,
    error_code: 0,
    rip: 0,
    cs: 0,
    rflags: 0,
    rsp: 0,
    ss: 0,
};

/// The slot of thread `index` (indices wrap like the thread table's).
pub fn slot(index: u32) -> *mut TrapFrame {
    SLOTS.0[index as usize % OBJECTS].get()
}

/// The address just above thread `index`'s slot: where its next entry starts pushing.
pub fn top(index: u32) -> u64 {
    slot(index) as u64 + core::mem::size_of::<TrapFrame>() as u64
}

/// Thread `index`'s saved registers. Call with the kernel lock held, for a thread that is not
/// running on any CPU and whose frame the caller does not already hold (module documentation).
#[allow(clippy::mut_from_ref)]
pub fn frame(index: u32) -> &'static mut TrapFrame {
    // SAFETY: the slot is valid static memory; exclusivity follows the ownership rule.
    unsafe { &mut *slot(index) }
}
