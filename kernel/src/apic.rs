//! The local APIC in xAPIC mode (Intel SDM Vol. 3A, chapter 11), reached through the direct map:
//! enable, end-of-interrupt, the periodic timer that drives scheduling, and inter-processor
//! interrupts (INIT and start-up IPIs for SMP bring-up). The legacy 8259 PICs are masked so
//! their vectors cannot collide with exceptions.

use crate::paging::phys_to_virt;
use x86::io::outb;

/// The architectural default LAPIC base (SDM Vol. 3A, 11.4.1); MADT may say otherwise.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;

// Register offsets (SDM Vol. 3A, Table 11-1).
const ID: u32 = 0x20;
const EOI: u32 = 0xb0;
const SPURIOUS: u32 = 0xf0;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT_TIMER: u32 = 0x320;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_DIVIDE: u32 = 0x3e0;

/// Vectors the kernel uses for its own interrupts.
pub const TIMER_VECTOR: u8 = 0x20;
pub const RESCHEDULE_VECTOR: u8 = 0xf0;
/// TLB shootdown: the handler reloads CR3 and acknowledges without taking any lock.
pub const FLUSH_VECTOR: u8 = 0xf1;
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Timer initial count with divide-by-16: a tick every few milliseconds on the emulators
/// (QEMU's APIC runs at 1 GHz: about 16 ms; Bochs follows its `ips`).
const TIMER_COUNT: u32 = 0x10_0000;

static BASE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(DEFAULT_BASE);

fn register(offset: u32) -> *mut u32 {
    phys_to_virt(BASE.load(core::sync::atomic::Ordering::Relaxed) + u64::from(offset)) as *mut u32
}

fn read(offset: u32) -> u32 {
    // SAFETY: the LAPIC page is in the direct map (uncached: it is not RAM); 32-bit aligned
    // register reads have no side effects for the registers read here.
    unsafe { core::ptr::read_volatile(register(offset)) }
}

fn write(offset: u32, value: u32) {
    // SAFETY: as in `read`; every write below follows the SDM's programming model.
    unsafe { core::ptr::write_volatile(register(offset), value) }
}

/// Masks both 8259 PICs (their default vectors 8-15 overlap exceptions).
pub fn mask_legacy_pic() {
    // SAFETY: writing the PIC data ports only changes the interrupt masks.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

/// Enables this CPU's LAPIC (software enable, spurious vector) at `base`.
pub fn enable(base: u64) {
    BASE.store(base, core::sync::atomic::Ordering::Relaxed);
    write(SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR));
}

/// The LAPIC base the boot CPU found.
pub fn current_base() -> u64 {
    BASE.load(core::sync::atomic::Ordering::Relaxed)
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Starts the periodic scheduling timer.
pub fn start_timer() {
    write(TIMER_DIVIDE, 0b0011); // divide by 16
    write(LVT_TIMER, (1 << 17) | u32::from(TIMER_VECTOR)); // periodic
    write(TIMER_INITIAL, TIMER_COUNT);
}

/// Signals end of interrupt.
pub fn end_of_interrupt() {
    write(EOI, 0);
}

fn send(destination: u32, command: u32) {
    write(ICR_HIGH, destination << 24);
    write(ICR_LOW, command);
    // Bounded wait for the delivery-status bit (bit 12) to clear.
    for _ in 0..100_000 {
        if read(ICR_LOW) & (1 << 12) == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// INIT IPI to `apic_id` (SDM Vol. 3A, 8.4.4.1: assert, level-triggered).
pub fn send_init(apic_id: u32) {
    send(apic_id, 0x0000_4500);
}

/// Start-up IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, 0x0000_4600 | u32::from(page));
}

/// A fixed interrupt to another CPU.
pub fn send_fixed(apic_id: u32, vector: u8) {
    send(apic_id, 0x0000_4000 | u32::from(vector));
}
