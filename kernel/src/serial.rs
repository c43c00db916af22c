//! The COM1 16550 UART: the kernel's log. 115200 baud, 8N1, polled.

use crate::sync::SpinLock;
use core::fmt::{self, Write};
use x86::io::{inb, outb};

/// COM1's base I/O port (the PC standard).
const COM1: u16 = 0x3f8;
// 16550 registers (offsets from the base) and bits (TI PC16550D datasheet, section 8).
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;

/// The port, behind a lock so lines from different CPUs do not interleave.
pub struct Serial {
    base: u16,
}

static PORT: SpinLock<Serial> = SpinLock::new(Serial { base: COM1 });

impl Serial {
    fn init(&mut self) {
        // SAFETY: COM1 is the kernel's own UART; these writes program its standard registers.
        unsafe {
            outb(self.base + INTERRUPT_ENABLE, 0);
            outb(self.base + LINE_CONTROL, 0x80); // DLAB on
            outb(self.base + DATA, 1); // divisor 1: 115200 baud
            outb(self.base + INTERRUPT_ENABLE, 0);
            outb(self.base + LINE_CONTROL, 0x03); // 8N1, DLAB off
            outb(self.base + FIFO_CONTROL, 0xc7); // FIFOs on and cleared
            outb(self.base + MODEM_CONTROL, 0x03); // DTR, RTS
        }
    }

    fn write_byte(&mut self, byte: u8) {
        // Bounded: a missing UART reads 0xff (THR empty), a stuck one is skipped after the bound.
        for _ in 0..100_000 {
            // SAFETY: reading COM1's line status register has no side effects.
            if unsafe { inb(self.base + LINE_STATUS) } & LSR_THR_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: writing the data register transmits one byte on the kernel's own UART.
        unsafe { outb(self.base + DATA, byte) };
    }

    /// Waits (bounded) until every byte has left the transmitter: emulators drop the tail of
    /// the output if they are shut down before.
    fn drain(&mut self) {
        for _ in 0..1_000_000 {
            // SAFETY: reading the line status register has no side effects.
            if unsafe { inb(self.base + LINE_STATUS) } & LSR_TRANSMITTER_EMPTY != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}

/// Programs COM1.
pub fn init() {
    PORT.lock().init();
}

/// Writes formatted text (used by the `kprint!` macros).
pub fn print(args: fmt::Arguments<'_>) {
    let _ = PORT.lock().write_fmt(args);
}

/// Waits until all output has been transmitted.
pub fn drain() {
    PORT.lock().drain();
}

/// Frees the port if the code that faulted held it (fatal path only).
pub fn force_unlock() {
    PORT.force_unlock();
}

/// Prints to the kernel log.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::serial::print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel log.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
