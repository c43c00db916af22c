//! Application-processor bring-up (Intel SDM Vol. 3A, 8.4.4: INIT-SIPI-SIPI). A small
//! trampoline is copied to physical 0x8000 (start-up vector 0x08); each AP runs it from real
//! mode to long mode on the kernel's page tables and enters [`ap_main`] on its own stack. APs
//! wait until the boot CPU has created the root task, then start their timers and schedule.

use crate::percpu::{self, MAX_CPUS};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Where the trampoline runs (below 1 MiB, page-aligned: SIPI vector = address >> 12).
const TRAMPOLINE: u64 = 0x8000;

// Layout (offsets from the start, which runs at 0x8000): 0 a short jump over the data;
// 8 CR3, 16 stack top, 24 entry, 32 CPU index; 40 a GDT (null, 32-bit code 0x08, data 0x10,
// 64-bit code 0x18); 72 its pointer; code from 80. Memory operands use these numbers because
// Intel-syntax operands cannot take symbol differences.
core::arch::global_asm!(
    ".section .rodata.ap_trampoline, \"a\"",
    ".global ap_trampoline_start",
    ".global ap_trampoline_end",
    ".code16",
    "ap_trampoline_start:",
    "    .byte 0xeb, 78",
    "    .byte 0, 0, 0, 0, 0, 0",
    "    .quad 0, 0, 0, 0",
    "    .quad 0",
    "    .quad 0x00cf9a000000ffff",
    "    .quad 0x00cf92000000ffff",
    "    .quad 0x00af9a000000ffff",
    "    .short 31",
    "    .long 0x8000 + 40",
    "    .byte 0, 0",
    "    cli",
    "    cld",
    "    xor ax, ax",
    "    mov ds, ax",
    "    lgdt [0x8000 + 72]",
    "    mov eax, cr0",
    "    or eax, 1",
    "    mov cr0, eax",
    // jmp far 0x08:ap_protected (66 EA: 32-bit offset from 16-bit code)
    "    .byte 0x66, 0xea",
    "    .long 0x8000 + (ap_protected - ap_trampoline_start)",
    "    .short 0x08",
    ".code32",
    "ap_protected:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    mov eax, cr4",
    "    or eax, 0x20",
    "    mov cr4, eax",
    "    mov eax, dword ptr [0x8000 + 8]",
    "    mov cr3, eax",
    "    mov ecx, 0xc0000080",
    "    rdmsr",
    "    or eax, 0x900",
    "    wrmsr",
    "    mov eax, cr0",
    "    and eax, 0x9fffffff",
    "    or eax, 0x80010001",
    "    mov cr0, eax",
    "    .byte 0xea",
    "    .long 0x8000 + (ap_long - ap_trampoline_start)",
    "    .short 0x18",
    ".code64",
    "ap_long:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    mov rsp, qword ptr [0x8000 + 16]",
    "    mov rdi, qword ptr [0x8000 + 32]",
    "    mov rax, qword ptr [0x8000 + 24]",
    "    jmp rax",
    "ap_trampoline_end:",
    ".text",
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

static READY: AtomicUsize = AtomicUsize::new(0);

/// Each application processor's own stack for its start-up and idle loop. It must not be the
/// CPU's trap stack (`percpu::stack_top`): leaving for ring 3 writes the thread's frame at the
/// top of that stack, which would overwrite the idle loop's own frame.
const IDLE_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IdleStack([u8; IDLE_STACK_SIZE]);

static mut IDLE_STACKS: [IdleStack; MAX_CPUS] =
    [const { IdleStack([0; IDLE_STACK_SIZE]) }; MAX_CPUS];

fn idle_stack_top(index: usize) -> u64 {
    // SAFETY: only the address is taken.
    unsafe { (&raw const IDLE_STACKS[index % MAX_CPUS]) as u64 + IDLE_STACK_SIZE as u64 }
}
static RELEASED: AtomicBool = AtomicBool::new(false);

/// Offset of the trampoline's parameters (CR3, stack, entry, index: four quads).
const PARAMETERS: u64 = 8;

fn spin(iterations: u64) {
    for _ in 0..iterations {
        core::hint::spin_loop();
    }
}

/// Starts every usable CPU in `apic_ids` except `boot_apic_id`; returns the number of CPUs up.
pub fn start_application_processors(apic_ids: &[u32], boot_apic_id: u32) -> u32 {
    let start = &raw const ap_trampoline_start as u64;
    let length = (&raw const ap_trampoline_end as u64) - start;
    // SAFETY: 0x8000.. is conventional memory below 1 MiB that nothing else uses after boot
    // (the frame allocator starts at 1 MiB); it is identity-mapped, executable, in the low GiB.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, length as usize)
    };
    let parameters = (TRAMPOLINE + PARAMETERS) as *mut u64;
    let mut index = 1usize;
    for &apic_id in apic_ids.iter().filter(|&&id| id != boot_apic_id) {
        if index >= MAX_CPUS {
            kprintln!("sluice: smp: CPU with APIC ID {apic_id} ignored (at most {MAX_CPUS} CPUs)");
            continue;
        }
        // SAFETY: the parameter block lies inside the copied trampoline; the AP reads it only
        // after the SIPI below.
        unsafe {
            parameters.write_volatile(crate::paging::kernel_pml4());
            parameters.add(1).write_volatile(idle_stack_top(index));
            parameters
                .add(2)
                .write_volatile(ap_main as *const () as u64);
            parameters.add(3).write_volatile(index as u64);
        }
        let before = READY.load(Ordering::Acquire);
        crate::apic::send_init(apic_id);
        spin(200_000);
        for _ in 0..2 {
            crate::apic::send_startup(apic_id, (TRAMPOLINE >> 12) as u8);
            spin(20_000);
        }
        let mut up = false;
        for _ in 0..50_000_000u64 {
            if READY.load(Ordering::Acquire) > before {
                up = true;
                break;
            }
            core::hint::spin_loop();
        }
        if up {
            crate::smp::set_online(index, apic_id);
            index += 1;
        } else {
            kprintln!("sluice: smp: CPU with APIC ID {apic_id} did not start");
        }
    }
    kprintln!("sluice: smp: {index} CPUs online");
    index as u32
}

/// Lets the application processors start scheduling.
pub fn release_application_processors() {
    RELEASED.store(true, Ordering::Release);
}

/// An application processor's first Rust code.
extern "C" fn ap_main(index: u64) -> ! {
    let index = index as usize;
    crate::cpu::enable_caches();
    crate::fpu::init_this_cpu(false);
    crate::gdt::init(index, percpu::stack_top(index));
    crate::idt::load();
    percpu::init(index, 0);
    crate::apic::enable(crate::apic::current_base());
    percpu::init(index, crate::apic::id());
    crate::trap::init_syscall();
    READY.fetch_add(1, Ordering::AcqRel);
    while !RELEASED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    crate::apic::start_timer();
    crate::execution::idle(index)
}
