//! The interrupt descriptor table and the exception entry path (Intel SDM Vol. 3A, chapter 6).
//!
//! Every exception vector (0-31) enters through a small naked stub that pushes the vector (and a
//! zero where the CPU pushes no error code) and joins the common trap path (trap.rs); vectors
//! 32-255 use the interrupt stubs there. A kernel-mode exception is fatal: the report (vector,
//! name, error code, RIP, CR2, registers) is printed and the system stops. A user-mode one
//! faults only its thread (execution.rs).

use crate::gdt;
use crate::trap::TrapFrame;
use core::arch::naked_asm;
use core::mem::size_of;

/// Exception names and mnemonics (SDM Vol. 3A, Table 6-1).
pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved"),
    }
}

/// One 16-byte IDT gate (SDM Vol. 3A, Figure 6-8).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const ABSENT: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE,
            ist,
            attributes: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static mut IDT: [Gate; 256] = [Gate::ABSENT; 256];

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

macro_rules! stubs {
    ($($name:ident = $vector:literal $kind:ident),* $(,)?) => {
        $(
            #[unsafe(naked)]
            extern "C" fn $name() {
                stubs!(@body $vector $kind);
            }
        )*
        /// Entry stubs by vector.
        const STUBS: [extern "C" fn(); 32] = [$($name),*];
    };
    (@body $vector:literal plain) => {
        naked_asm!("push 0", "push {vector}", "jmp trap_entry", vector = const $vector)
    };
    (@body $vector:literal error) => {
        naked_asm!("push {vector}", "jmp trap_entry", vector = const $vector)
    };
}

// Vectors whose exceptions push an error code: 8, 10-14, 17, 21, 29, 30 (SDM Vol. 3A, Table 6-1).
stubs! {
    v0 = 0 plain, v1 = 1 plain, v2 = 2 plain, v3 = 3 plain, v4 = 4 plain, v5 = 5 plain,
    v6 = 6 plain, v7 = 7 plain, v8 = 8 error, v9 = 9 plain, v10 = 10 error, v11 = 11 error,
    v12 = 12 error, v13 = 13 error, v14 = 14 error, v15 = 15 plain, v16 = 16 plain,
    v17 = 17 error, v18 = 18 plain, v19 = 19 plain, v20 = 20 plain, v21 = 21 error,
    v22 = 22 plain, v23 = 23 plain, v24 = 24 plain, v25 = 25 plain, v26 = 26 plain,
    v27 = 27 plain, v28 = 28 plain, v29 = 29 error, v30 = 30 error, v31 = 31 plain,
}

/// Fills and loads the IDT.
pub fn init() {
    // SAFETY: runs on the boot CPU before interrupts are enabled; the IDT is 'static.
    unsafe {
        let idt = &raw mut IDT;
        for (vector, stub) in STUBS.iter().enumerate() {
            let ist = match vector {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                _ => 0,
            };
            (*idt)[vector] = Gate::interrupt(*stub as usize as u64, ist);
        }
        for vector in 32..=255u8 {
            (*idt)[usize::from(vector)] = Gate::interrupt(crate::trap::interrupt_stub(vector), 0);
        }
    }
    load();
}

/// Loads the (shared) IDT on this CPU.
pub fn load() {
    let pointer = DescriptorPointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: (&raw const IDT) as u64,
    };
    // SAFETY: the IDT is 'static and filled by `init` before any CPU enables interrupts.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags))
    };
}

/// A kernel-mode exception: report and stop the system.
pub fn fatal_exception(frame: &TrapFrame) -> ! {
    crate::serial::force_unlock();
    report(frame);
    crate::platform::stop(crate::platform::Outcome::Failure("fatal exception"))
}

/// Prints the exception report (also used for faulting user threads).
pub fn report(frame: &TrapFrame) {
    let (mnemonic, name) = exception_name(frame.vector);
    let cr2 = crate::cpu::cr2();
    kprintln!(
        "sluice: EXCEPTION {mnemonic} ({name}, vector {}) error={:#x} rip={:#018x} cr2={:#018x} cs={:#x} rflags={:#x}",
        frame.vector, frame.error_code, frame.rip, cr2, frame.cs, frame.rflags
    );
    kprintln!(
        "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx
    );
    kprintln!(
        "  rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}",
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.rsp
    );
    kprintln!(
        "  r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11
    );
    kprintln!(
        "  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}",
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
}
