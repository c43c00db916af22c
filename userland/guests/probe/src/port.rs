//! Port I/O instructions (SDM Vol. 2A/2B, IN and OUT): the only way the probe reaches the UART
//! and the debug-exit port.
use core::arch::asm;

use guest_probe::layout::Port;

/// Reads a byte from `port`.
///
/// # Safety
/// Reading a device register can have side effects: the caller must own the device at `port`.
pub unsafe fn read_u8(port: Port) -> u8 {
    let value: u8;
    // SAFETY: the caller owns the device (function contract); IN touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port.0, out("al") value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Writes a byte to `port`.
///
/// # Safety
/// The caller must own the device at `port`.
pub unsafe fn write_u8(port: Port, value: u8) {
    // SAFETY: the caller owns the device (function contract); OUT touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port.0, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

/// Writes a doubleword to `port`.
///
/// # Safety
/// The caller must own the device at `port`.
pub unsafe fn write_u32(port: Port, value: u32) {
    // SAFETY: the caller owns the device (function contract); OUT touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port.0, in("eax") value, options(nomem, nostack, preserves_flags));
    }
}
