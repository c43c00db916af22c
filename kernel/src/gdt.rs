//! The global descriptor table and task-state segment (Intel SDM Vol. 3A, 3.4.5 and 8.7).
//!
//! Layout (fixed: SYSCALL/SYSRET derive user selectors from STAR, SDM Vol. 3A 5.8.8):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user data, 0x20 user code, 0x28 TSS (two slots).
//! The TSS gives the double-fault and NMI handlers stacks of their own (IST), so a kernel stack
//! overflow still produces a report.

use core::mem::size_of;

pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
pub const USER_DATA: u16 = 0x18 | 3;
pub const USER_CODE: u16 = 0x20 | 3;
pub const TSS_SELECTOR: u16 = 0x28;

/// IST slots (1-based in the IDT gate; SDM Vol. 3A 6.14.5).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

/// Bytes of an I/O permission bitmap: one bit per port (SDM Vol. 1, 19.5.2).
pub const IO_BITMAP_BYTES: usize = 65536 / 8;

/// The 64-bit TSS (SDM Vol. 3A, Figure 8-11) followed by the I/O permission bitmap of the
/// domain running on this CPU (all ones, every port refused, for domains without ports) and
/// the all-ones byte that must end it (SDM Vol. 1, 19.5.2).
#[repr(C, packed)]
struct TaskStateSegment {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    io_map_base: u16,
    io_bitmap: [u8; IO_BITMAP_BYTES],
    io_bitmap_end: u8,
}

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

const CPUS: usize = crate::percpu::MAX_CPUS;

static mut DOUBLE_FAULT_STACKS: [Stack; CPUS] = [const { Stack([0; IST_STACK_SIZE]) }; CPUS];
static mut NMI_STACKS: [Stack; CPUS] = [const { Stack([0; IST_STACK_SIZE]) }; CPUS];

const EMPTY_TSS: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    io_map_base: core::mem::offset_of!(TaskStateSegment, io_bitmap) as u16,
    io_bitmap: [0xff; IO_BITMAP_BYTES],
    io_bitmap_end: 0xff,
};

/// One TSS per CPU: a TSS is marked busy when loaded, so CPUs cannot share one.
static mut TSS: [TaskStateSegment; CPUS] = [EMPTY_TSS; CPUS];

const TEMPLATE: [u64; 7] = [
    0,
    0x00af_9a00_0000_ffff, // kernel code: present, DPL 0, long mode
    0x00cf_9200_0000_ffff, // kernel data
    0x00cf_f200_0000_ffff, // user data, DPL 3
    0x00af_fa00_0000_ffff, // user code, DPL 3, long mode
    0,                     // TSS low (filled in by `init`)
    0,                     // TSS high
];

/// One GDT per CPU (each holds its own TSS descriptor).
static mut GDT: [[u64; 7]; CPUS] = [TEMPLATE; CPUS];

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads a domain's I/O permission bitmap (its two 4 KiB halves; `None`: all ones, no port)
/// into CPU `cpu`'s TSS; call only on that CPU before it returns to ring 3.
pub fn load_io_bitmap(cpu: usize, halves: Option<[&[u8; 4096]; 2]>) {
    // SAFETY: each CPU writes only its own TSS, whose bitmap the CPU reads only on IN/OUT in
    // ring 3, which cannot run while this CPU is in the kernel.
    unsafe {
        let tss = &raw mut TSS[cpu % CPUS];
        let bitmap = &raw mut (*tss).io_bitmap;
        let bytes = bitmap as *mut u8;
        match halves {
            Some([low, high]) => {
                core::ptr::copy_nonoverlapping(low.as_ptr(), bytes, 4096);
                core::ptr::copy_nonoverlapping(high.as_ptr(), bytes.add(4096), 4096);
            }
            None => core::ptr::write_bytes(bytes, 0xff, IO_BITMAP_BYTES),
        }
    }
}

/// Sets the stack the CPU switches to for interrupts and exceptions from ring 3 (TSS.RSP0,
/// SDM Vol. 3A, 6.14.2): the running thread's register slot. Call only on CPU `cpu`.
pub fn set_ring0_stack(cpu: usize, top: u64) {
    // SAFETY: each CPU writes only its own TSS; the CPU reads RSP0 only on an entry from ring
    // 3, which cannot happen while this CPU runs kernel code with interrupts off.
    unsafe { core::ptr::write_unaligned(&raw mut TSS[cpu % CPUS].rsp[0], top) };
}

/// The address of CPU `cpu`'s TSS (VMX host state).
pub fn tss_base(cpu: usize) -> u64 {
    // SAFETY: only the address of the static is taken.
    unsafe { (&raw const TSS[cpu % CPUS]) as u64 }
}

/// Builds the TSS descriptor (SDM Vol. 3A, Figure 8-4) for a TSS at `base`.
fn tss_descriptor(base: u64) -> (u64, u64) {
    let limit = (size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40) // present, 64-bit available TSS
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (low, base >> 32)
}

/// Loads CPU `cpu`'s GDT, reloads the segment registers and loads its task register, with
/// `kernel_stack` as the stack for interrupts from ring 3 (TSS.RSP0).
pub fn init(cpu: usize, kernel_stack: u64) {
    let cpu = cpu % CPUS;
    // SAFETY: each CPU initializes only its own GDT and TSS, once, before using them; they are
    // 'static, so the descriptors the CPU caches stay valid.
    unsafe {
        let tss = &raw mut TSS[cpu];
        (*tss).ist[usize::from(IST_DOUBLE_FAULT - 1)] =
            (&raw const DOUBLE_FAULT_STACKS[cpu] as u64) + IST_STACK_SIZE as u64;
        (*tss).ist[usize::from(IST_NMI - 1)] =
            (&raw const NMI_STACKS[cpu] as u64) + IST_STACK_SIZE as u64;
        core::ptr::write_unaligned(&raw mut (*tss).rsp[0], kernel_stack);
        let (low, high) = tss_descriptor(tss as u64);
        let gdt = &raw mut GDT[cpu];
        (*gdt)[5] = low;
        (*gdt)[6] = high;
        let pointer = DescriptorPointer {
            limit: (size_of::<[u64; 7]>() - 1) as u16,
            base: gdt as u64,
        };
        core::arch::asm!(
            "lgdt [{pointer}]",
            "push {code}",
            "lea {scratch}, [rip + 2f]",
            "push {scratch}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            pointer = in(reg) &pointer,
            code = const KERNEL_CODE as u64,
            scratch = out(reg) _,
            data = in(reg) KERNEL_DATA as u64,
            tss = in(reg) TSS_SELECTOR as u64,
        );
    }
}
