//! Interrupt lines and vectors. Line L (an interrupt object's number) arrives as vector
//! `FIRST_VECTOR + L` on CPU 0: lines below the GSI count are IOAPIC pins (programmed here),
//! the rest are MSI lines whose address/data the pci-server programs (through interrupt
//! remapping) to that vector. With interrupt remapping on, compatibility-format interrupts are
//! blocked, so the holder of a bound IOAPIC line's `REMAP` right points its pin at an
//! interrupt remapping table entry ([`remap`], VT-d spec 5.1.5.1); the entry encodings are in
//! `kernel_core::ioapic` (host-tested).

use crate::paging::phys_to_virt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel_core::ioapic::{PinSignal, RedirectionEntry};
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

/// The vector of an IOAPIC line (`None` for an MSI line or one beyond the vectors).
fn pin_vector(line: u32) -> Option<u8> {
    if line >= gsi_count() {
        return None;
    }
    u8::try_from(u32::from(FIRST_VECTOR) + line).ok()
}

/// Points an IOAPIC pin at its vector on CPU 0, unmasked, in compatibility format. PCI pins
/// (16 and up) are level-triggered, active low; ISA pins edge-triggered, active high (MP spec
/// defaults, `PinSignal::of_pin`).
pub fn route(line: u32) {
    let Some(vector) = pin_vector(line) else {
        return;
    };
    let entry = RedirectionEntry::compatibility(vector, PinSignal::of_pin(line), 0, false);
    // The pin is masked while the halves are written (IOAPIC datasheet 3.2.4).
    write(
        0x10 + 2 * line,
        RedirectionEntry(entry.0 | kernel_core::ioapic::MASK).low(),
    );
    write(0x11 + 2 * line, entry.high());
    write(0x10 + 2 * line, entry.low());
}

/// Programs IOAPIC line `line` in remappable format through interrupt remapping table entry
/// `handle` (VT-d spec 5.1.5.1), keeping its vector (which the entry must deliver, so that the
/// EOI broadcast of a level-triggered pin clears its Remote IRR), its signalling and its mask
/// state: a pin masked because it fired stays masked until `interrupt_acknowledge`.
/// `InvalidArgument` for a line that is not an IOAPIC pin.
pub fn remap(line: u32, handle: u16) -> Result<(), Status> {
    let vector = pin_vector(line).ok_or(Status::InvalidArgument)?;
    let masked = read(0x10 + 2 * line) & (kernel_core::ioapic::MASK as u32) != 0;
    let entry = RedirectionEntry::remappable(handle, vector, PinSignal::of_pin(line), masked);
    // Masked while the halves disagree, so no half-written entry is ever delivered.
    let hold = RedirectionEntry(entry.0 | kernel_core::ioapic::MASK);
    write(0x10 + 2 * line, hold.low());
    write(0x11 + 2 * line, entry.high());
    write(0x10 + 2 * line, entry.low());
    // What the IOAPIC holds now (an emulator that passes compatibility-format interrupts
    // through would hide a pin left in that format; the read-back names the format).
    let held =
        RedirectionEntry(u64::from(read(0x10 + 2 * line)) | u64::from(read(0x11 + 2 * line)) << 32);
    match held.remapping_handle() {
        Some(index) => kprintln!(
            "sluice: IOAPIC pin {line} in remappable format: IRTE {index}, vector {vector:#x}, \
             redirection entry {:#018x}",
            held.0
        ),
        None => kprintln!(
            "sluice: IOAPIC pin {line} did not take the remappable format (entry {:#018x})",
            held.0
        ),
    }
    Ok(())
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
