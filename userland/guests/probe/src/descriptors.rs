//! Long-mode descriptor tables: the GDT selectors (the table itself is in `boot.rs`), a 64-bit
//! TSS loaded into TR, and the IDT with the probe's handlers (`interrupts.rs`). Also the
//! deliberate triple fault: an empty IDT and an exception.
use core::arch::asm;
use core::mem::size_of;

use guest_probe::layout::TIMER_VECTOR;

use crate::interrupts;

/// 32-bit code segment (GDT entry 1), used between real and long mode.
pub const CODE32_SELECTOR: u16 = 0x08;
/// Flat data segment (GDT entry 2).
pub const DATA_SELECTOR: u16 = 0x10;
/// 64-bit code segment (GDT entry 3).
pub const CODE64_SELECTOR: u16 = 0x18;
/// The 64-bit TSS (GDT entries 4 and 5: a system descriptor takes 16 bytes in IA-32e mode).
pub const TSS_SELECTOR: u16 = 0x20;
/// Bytes of the GDT (six 8-byte entries; `boot.rs`).
const GDT_BYTES: u16 = 6 * 8;

/// The #GP vector (SDM Vol. 3A section 6.3.1, Table 6-1).
pub const GENERAL_PROTECTION_VECTOR: u8 = 13;
/// Gate type and attributes: present, DPL 0, 64-bit interrupt gate (type 0xE; SDM Vol. 3A
/// section 6.14.1, Figure 6-8). Interrupt gates clear IF on entry.
const INTERRUPT_GATE: u8 = 0x8e;
/// TSS descriptor access byte: present, DPL 0, available 64-bit TSS (type 9; SDM Vol. 3A
/// section 7.2.3, Figure 7-4).
const TSS_AVAILABLE: u64 = 0x89;

/// The 64-bit task-state segment (SDM Vol. 3A section 7.7, Figure 7-11). The probe never
/// changes privilege level and uses no IST, so only its existence matters (TR must hold a busy
/// 64-bit TSS in IA-32e mode, which VM entry checks: SDM Vol. 3C section 26.3.1.2, "Checks on Guest Segment Registers").
#[repr(C, packed(4))]
struct TaskStateSegment {
    reserved0: u32,
    privilege_stacks: [u64; 3],
    reserved1: u64,
    interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
}

const _: () = assert!(size_of::<TaskStateSegment>() == 104);

static mut TASK_STATE: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    privilege_stacks: [0; 3],
    reserved1: 0,
    interrupt_stacks: [0; 7],
    reserved2: 0,
    reserved3: 0,
    // At the limit: no I/O permission bitmap (irrelevant at CPL 0).
    io_map_base: size_of::<TaskStateSegment>() as u16,
};

/// A 64-bit IDT gate (SDM Vol. 3A section 6.14.1, Figure 6-8).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    interrupt_stack: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        interrupt_stack: 0,
        type_attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: CODE64_SELECTOR,
            interrupt_stack: 0,
            type_attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static mut INTERRUPT_TABLE: [Gate; 256] = [Gate::MISSING; 256];

/// The operand of LGDT and LIDT in 64-bit mode: limit, then a 64-bit base.
#[repr(C, packed)]
struct TablePointer {
    limit: u16,
    base: u64,
}

extern "C" {
    /// The GDT in `boot.rs`.
    static mut probe_gdt: [u64; 6];
}

/// Writes the TSS descriptor, reloads the GDT with a 64-bit base, loads TR and installs the
/// IDT: vectors 0..=31 report an unexpected exception (except #GP, which the MSR and FPU checks
/// may expect), [`TIMER_VECTOR`] counts ticks, every other vector is not present.
pub fn install() {
    let tss = (&raw const TASK_STATE) as u64;
    let limit = size_of::<TaskStateSegment>() as u64 - 1;
    // SDM Vol. 3A Figure 7-4: limit 15:0, base 23:0, type/attributes, limit 19:16, base 31:24,
    // then base 63:32 in the second quadword.
    let low = (limit & 0xffff)
        | (tss & 0xff_ffff) << 16
        | TSS_AVAILABLE << 40
        | (limit >> 16 & 0xf) << 48
        | (tss >> 24 & 0xff) << 56;
    let high = tss >> 32;
    let gdt = &raw mut probe_gdt;
    // SAFETY: `probe_gdt` is the 6-entry table in `boot.rs`; entries 4 and 5 are the unused
    // TSS slot, and nothing else runs (one vCPU, interrupts disabled).
    unsafe {
        (*gdt)[usize::from(TSS_SELECTOR / 8)] = low;
        (*gdt)[usize::from(TSS_SELECTOR / 8) + 1] = high;
    }
    let gdt_pointer = TablePointer {
        limit: GDT_BYTES - 1,
        base: gdt as u64,
    };
    // SAFETY: the GDT holds the same code and data descriptors the CPU is using; reloading it
    // with a 64-bit base changes no segment. LTR marks the new TSS descriptor busy.
    unsafe {
        asm!(
            "lgdt [{pointer}]",
            "ltr {selector:x}",
            pointer = in(reg) &gdt_pointer,
            selector = in(reg) TSS_SELECTOR,
            options(readonly, nostack, preserves_flags),
        );
    }

    let table = &raw mut INTERRUPT_TABLE;
    for vector in 0..32u8 {
        let handler = if vector == GENERAL_PROTECTION_VECTOR {
            interrupts::general_protection_entry()
        } else {
            interrupts::unexpected_exception_entry(vector)
        };
        // SAFETY: single-threaded set-up before LIDT; the index is below 256.
        unsafe { (*table)[usize::from(vector)] = Gate::interrupt(handler) };
    }
    // SAFETY: as above.
    unsafe {
        (*table)[usize::from(TIMER_VECTOR)] = Gate::interrupt(interrupts::timer_entry());
    }
    let idt_pointer = TablePointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: table as u64,
    };
    // SAFETY: the table is static, fully initialized, and every present gate points at a
    // handler in `interrupts.rs` that follows the 64-bit interrupt frame layout.
    unsafe {
        asm!(
            "lidt [{pointer}]",
            pointer = in(reg) &idt_pointer,
            options(readonly, nostack, preserves_flags),
        );
    }
}

/// Triple-faults on purpose: loads an IDT with limit 0, so delivering any exception raises #GP,
/// delivering that raises #DF, and delivering that shuts the processor down (SDM Vol. 3A
/// section 6.15, "Interrupt 8 - Double Fault Exception").
pub fn triple_fault() -> ! {
    let empty = TablePointer { limit: 0, base: 0 };
    // SAFETY: ending the guest is the point; nothing runs afterwards.
    unsafe {
        asm!(
            "lidt [{pointer}]",
            "ud2",
            pointer = in(reg) &empty,
            options(noreturn, nostack),
        );
    }
}
