//! Interrupt and exception handlers: entry stubs in assembly, their Rust halves, and what they
//! record. Vectors 0..=31 report an unexpected exception and end the run; #GP may instead be
//! *expected* by the MSR and FPU checks (RDMSR/WRMSR, XSETBV), in which case the handler records it and skips the faulting
//! instruction; the timer vector counts ticks. The VMM models no interrupt controller, so the
//! timer handler sends no EOI.
//!
//! Stack on entry to a 64-bit handler at CPL 0 (SDM Vol. 3A section 6.14.2, Figure 6-9): the
//! CPU aligns RSP to 16 bytes, pushes SS, RSP, RFLAGS, CS, RIP and, for some vectors, an error
//! code. The stubs re-align the stack before calling Rust (System V ABI).
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::report;

/// Timer interrupts taken.
static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
/// Length of the instruction an expected #GP must skip; 0 = no #GP expected.
static EXPECTED_FAULT_LENGTH: AtomicU64 = AtomicU64::new(0);
/// Expected #GPs taken.
static EXPECTED_FAULTS: AtomicU64 = AtomicU64::new(0);
/// RIP of the last expected #GP.
static LAST_FAULT_RIP: AtomicU64 = AtomicU64::new(0);
/// Error code of the last expected #GP.
static LAST_FAULT_ERROR_CODE: AtomicU64 = AtomicU64::new(0);

global_asm!(
    ".section .text.probe_interrupts, \"ax\", @progbits",
    ".code64",
    // One stub per exception vector: push the vector, then the common path.
    ".irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "probe_exception_\\vector:",
    "pushq $\\vector",
    "jmp probe_unexpected_common",
    ".endr",
    // Stack: vector, [error code], RIP, CS, RFLAGS, RSP, SS. Never returns.
    "probe_unexpected_common:",
    "movq %rsp, %rdi",
    "andq $-16, %rsp",
    "call {unexpected}",
    "probe_unexpected_halt:",
    "cli",
    "hlt",
    "jmp probe_unexpected_halt",
    //
    // #GP: save the caller-saved registers, pass a pointer to the error code, return with IRET.
    ".globl probe_general_protection_entry",
    "probe_general_protection_entry:",
    "pushq %rax",
    "pushq %rcx",
    "pushq %rdx",
    "pushq %rsi",
    "pushq %rdi",
    "pushq %r8",
    "pushq %r9",
    "pushq %r10",
    "pushq %r11",
    "leaq 72(%rsp), %rdi",
    "pushq %rbp",
    "movq %rsp, %rbp",
    "andq $-16, %rsp",
    "call {general_protection}",
    "movq %rbp, %rsp",
    "popq %rbp",
    "popq %r11",
    "popq %r10",
    "popq %r9",
    "popq %r8",
    "popq %rdi",
    "popq %rsi",
    "popq %rdx",
    "popq %rcx",
    "popq %rax",
    "addq $8, %rsp", // the error code
    "iretq",
    //
    // Timer: count, return. No registers are touched, no EOI (no interrupt controller).
    ".globl probe_timer_entry",
    "probe_timer_entry:",
    "lock incq {ticks}(%rip)",
    "iretq",
    //
    ".section .rodata.probe_exception_table, \"a\", @progbits",
    ".balign 8",
    ".globl probe_exception_table",
    "probe_exception_table:",
    ".irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".quad probe_exception_\\vector",
    ".endr",
    ".text",
    unexpected = sym unexpected_exception,
    general_protection = sym general_protection,
    ticks = sym TIMER_TICKS,
    options(att_syntax),
);

extern "C" {
    /// Entry stubs of vectors 0..=31, in vector order.
    static probe_exception_table: [u64; 32];
    fn probe_general_protection_entry();
    fn probe_timer_entry();
}

/// Address of the unexpected-exception stub of `vector` (0..=31), or 0 for other vectors.
pub fn unexpected_exception_entry(vector: u8) -> u64 {
    // SAFETY: the table is immutable data emitted above.
    let table = unsafe { &probe_exception_table };
    table.get(usize::from(vector)).copied().unwrap_or(0)
}

/// Address of the #GP stub.
pub fn general_protection_entry() -> u64 {
    probe_general_protection_entry as *const () as u64
}

/// Address of the timer stub.
pub fn timer_entry() -> u64 {
    probe_timer_entry as *const () as u64
}

/// Timer interrupts taken so far.
pub fn timer_ticks() -> u64 {
    TIMER_TICKS.load(Ordering::SeqCst)
}

/// An expected #GP as the handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// RIP of the faulting instruction.
    pub rip: u64,
    /// The error code pushed with the #GP.
    pub error_code: u64,
}

/// Runs `instruction`, which executes one instruction of `length` bytes that may raise #GP and
/// returns that instruction's address. A #GP raised by it is recorded and the instruction
/// skipped. Returns the address and the fault, if one arrived.
pub fn expect_general_protection(
    length: u64,
    instruction: impl FnOnce() -> u64,
) -> (u64, Option<Fault>) {
    let before = EXPECTED_FAULTS.load(Ordering::SeqCst);
    EXPECTED_FAULT_LENGTH.store(length, Ordering::SeqCst);
    let address = instruction();
    EXPECTED_FAULT_LENGTH.store(0, Ordering::SeqCst);
    let fault = (EXPECTED_FAULTS.load(Ordering::SeqCst) != before).then(|| Fault {
        rip: LAST_FAULT_RIP.load(Ordering::SeqCst),
        error_code: LAST_FAULT_ERROR_CODE.load(Ordering::SeqCst),
    });
    (address, fault)
}

/// Rust half of the #GP stub. `frame` points at the error code, followed by RIP, CS, RFLAGS,
/// RSP and SS.
extern "C" fn general_protection(frame: *mut u64) {
    // SAFETY: the stub passes a pointer to the CPU-pushed frame on the current stack: six
    // quadwords, error code first.
    let (error_code, rip) = unsafe { (frame.read(), frame.add(1).read()) };
    let length = EXPECTED_FAULT_LENGTH.swap(0, Ordering::SeqCst);
    if length == 0 {
        report::unexpected_exception(
            crate::descriptors::GENERAL_PROTECTION_VECTOR,
            Some(error_code),
            rip,
        );
    }
    LAST_FAULT_RIP.store(rip, Ordering::SeqCst);
    LAST_FAULT_ERROR_CODE.store(error_code, Ordering::SeqCst);
    EXPECTED_FAULTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as above; resuming after the faulting instruction is what the caller armed.
    unsafe { frame.add(1).write(rip.wrapping_add(length)) };
}

/// Whether the CPU pushes an error code for `vector` (SDM Vol. 3A section 6.3.1, Table 6-1).
fn pushes_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Rust half of the unexpected-exception stubs. `stack` points at the vector pushed by the
/// stub, then the CPU's frame.
extern "C" fn unexpected_exception(stack: *const u64) -> ! {
    // SAFETY: the stub passes a pointer to its pushed vector, followed by the CPU frame (with
    // an error code exactly for the vectors `pushes_error_code` names).
    let (vector, error_code, rip) = unsafe {
        let vector = stack.read() as u8;
        if pushes_error_code(vector) {
            (vector, Some(stack.add(1).read()), stack.add(2).read())
        } else {
            (vector, None, stack.add(1).read())
        }
    };
    report::unexpected_exception(vector, error_code, rip)
}
