//! Interrupt lines and vectors. Line L (an interrupt object's number) arrives as vector
//! `FIRST_VECTOR + L` on CPU 0: lines below the GSI count are IOAPIC pins (programmed here),
//! the rest are MSI lines whose address/data the pci-server programs (through interrupt
//! remapping) to that vector.

use crate::paging::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use sluice_abi::syscall::Status;

/// Vector of line 0.
pub const FIRST_VECTOR: u8 = 0x30;
/// Interrupt lines: vectors 0x30..=0xef.
pub const LINES: u32 = 0xf0 - FIRST_VECTOR as u32;
/// First MSI line (IOAPIC pins below; q35 and i440fx IOAPICs have 24 pins).
pub const FIRST_MSI_LINE: u32 = 24;

static IOAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static GSI_COUNT: AtomicU32 = AtomicU32::new(0);

/// Records the IOAPIC (from MADT) and masks all its pins (IOAPIC datasheet, 3.2.4).
pub fn init(base: u64) {
    IOAPIC_BASE.store(base, Ordering::Relaxed);
    let pins = ((read(1) >> 16) & 0xff) + 1;
    GSI_COUNT.store(pins.min(FIRST_MSI_LINE), Ordering::Relaxed);
    for pin in 0..pins {
        write(0x10 + 2 * pin, 1 << 16);
    }
}

/// Number of IOAPIC pins in use.
pub fn gsi_count() -> u32 {
    GSI_COUNT.load(Ordering::Relaxed)
}

fn read(register: u32) -> u32 {
    let base = IOAPIC_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return 0;
    }
    // SAFETY: IOREGSEL at +0 and IOWIN at +0x10 of the IOAPIC page, uncached in the direct map;
    // callers hold the kernel lock, so the select/access pair is not interleaved.
    unsafe {
        core::ptr::write_volatile(phys_to_virt(base) as *mut u32, register);
        core::ptr::read_volatile(phys_to_virt(base + 0x10) as *const u32)
    }
}

fn write(register: u32, value: u32) {
    let base = IOAPIC_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile(phys_to_virt(base) as *mut u32, register);
        core::ptr::write_volatile(phys_to_virt(base + 0x10) as *mut u32, value);
    }
}

/// Refuses lines that do not exist.
pub fn check_line(line: u32) -> Result<(), Status> {
    if line < LINES {
        Ok(())
    } else {
        Err(Status::InvalidArgument)
    }
}

/// The line a vector belongs to.
pub fn line_of_vector(vector: u8) -> Option<u32> {
    let line = u32::from(vector.checked_sub(FIRST_VECTOR)?);
    (line < LINES).then_some(line)
}

/// Points an IOAPIC pin at its vector on CPU 0, unmasked. PCI pins (16 and up) are
/// level-triggered, active low; ISA pins edge-triggered, active high (MP spec defaults).
pub fn route(line: u32) {
    if line >= gsi_count() {
        return;
    }
    let vector = u32::from(FIRST_VECTOR) + line;
    let level_low = if line >= 16 { (1 << 15) | (1 << 13) } else { 0 };
    write(0x11 + 2 * line, 0); // destination APIC ID 0
    write(0x10 + 2 * line, vector | level_low);
}

/// Masks an IOAPIC pin until the owner acknowledges.
pub fn mask(line: u32) {
    if line < gsi_count() {
        let low = read(0x10 + 2 * line);
        write(0x10 + 2 * line, low | (1 << 16));
    }
}

/// Unmasks an IOAPIC pin.
pub fn unmask(line: u32) {
    if line < gsi_count() {
        let low = read(0x10 + 2 * line);
        write(0x10 + 2 * line, low & !(1 << 16));
    }
}
