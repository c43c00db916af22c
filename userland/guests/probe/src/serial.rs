//! The console: a polled 16550 UART at [`UART_BASE`] (register map: TI PC16550D datasheet,
//! section 8, Table 2). [`initialize`] programs 115200 8N1 and is check 2 (`uart`): every
//! register it programs is read back. Transmission waits for THR empty (LSR bit 5), bounded.
use core::fmt::{self, Write};

use guest_probe::check::{equal, Mismatch};
use guest_probe::layout::{Port, UART_BASE};

use crate::port;

/// Register offsets from the base port (PC16550D section 8.1, Table 2).
mod register {
    /// THR on write, RBR on read; DLL while LCR.DLAB = 1.
    pub const DATA: u16 = 0;
    /// IER; DLM while LCR.DLAB = 1.
    pub const INTERRUPT_ENABLE: u16 = 1;
    /// FCR on write.
    pub const FIFO_CONTROL: u16 = 2;
    /// LCR.
    pub const LINE_CONTROL: u16 = 3;
    /// MCR.
    pub const MODEM_CONTROL: u16 = 4;
    /// LSR.
    pub const LINE_STATUS: u16 = 5;
    /// SCR.
    pub const SCRATCH: u16 = 7;
}

/// LCR: divisor latch access bit.
const LCR_DIVISOR_LATCH: u8 = 1 << 7;
/// LCR: 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0x03;
/// Divisor for 115200 baud from the 1.8432 MHz clock (PC16550D section 8.3, Table 3).
const DIVISOR_115200: u16 = 1;
/// FCR: enable the FIFOs and clear both.
const FCR_ENABLE_AND_CLEAR: u8 = 0x07;
/// MCR: DTR and RTS; OUT2 stays 0, so the UART raises no interrupt.
const MCR_DTR_RTS: u8 = 0x03;
/// LSR: transmitter holding register empty.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Polls of LSR before a byte is given up (each poll is a VM exit, so this is generous).
const TRANSMIT_POLLS: u32 = 100_000;

fn register(offset: u16) -> Port {
    // The UART's eight registers fit below 0xffff for any base the layout names.
    UART_BASE.offset(offset).unwrap_or(UART_BASE)
}

fn read(offset: u16) -> u8 {
    // SAFETY: the UART at UART_BASE is the probe's console; nothing else drives it.
    unsafe { port::read_u8(register(offset)) }
}

fn write(offset: u16, value: u8) {
    // SAFETY: as in `read`.
    unsafe { port::write_u8(register(offset), value) }
}

/// Programs 115200 8N1, FIFOs on, interrupts off, and checks the registers read back.
pub fn initialize() -> Result<(), Mismatch> {
    write(register::INTERRUPT_ENABLE, 0);
    write(register::LINE_CONTROL, LCR_DIVISOR_LATCH);
    let [low, high] = DIVISOR_115200.to_le_bytes();
    write(register::DATA, low);
    write(register::INTERRUPT_ENABLE, high);
    let divisor = u16::from_le_bytes([read(register::DATA), read(register::INTERRUPT_ENABLE)]);
    equal(
        "divisor latch (DLL, DLM)",
        u64::from(DIVISOR_115200),
        u64::from(divisor),
    )?;
    write(register::LINE_CONTROL, LCR_8N1);
    equal(
        "line control register",
        u64::from(LCR_8N1),
        u64::from(read(register::LINE_CONTROL)),
    )?;
    write(register::FIFO_CONTROL, FCR_ENABLE_AND_CLEAR);
    write(register::MODEM_CONTROL, MCR_DTR_RTS);
    equal(
        "modem control register",
        u64::from(MCR_DTR_RTS),
        u64::from(read(register::MODEM_CONTROL)),
    )?;
    for pattern in [0x5a, 0xa5] {
        write(register::SCRATCH, pattern);
        equal(
            "scratch register",
            u64::from(pattern),
            u64::from(read(register::SCRATCH)),
        )?;
    }
    let status = read(register::LINE_STATUS);
    equal(
        "line status THR empty",
        u64::from(LSR_THR_EMPTY),
        u64::from(status & LSR_THR_EMPTY),
    )
}

/// Sends one byte once THR is empty; `Err` when it never empties.
fn transmit(byte: u8) -> fmt::Result {
    for _ in 0..TRANSMIT_POLLS {
        if read(register::LINE_STATUS) & LSR_THR_EMPTY != 0 {
            write(register::DATA, byte);
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(fmt::Error)
}

/// The console as a [`fmt::Write`].
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().try_for_each(transmit)
    }
}

/// Prints one line (the VMM's UART model drops the `\r`).
pub fn print_line(arguments: fmt::Arguments<'_>) {
    // A UART that stopped accepting bytes has nowhere to report to: the line is dropped.
    let _ = Console.write_fmt(arguments);
    let _ = Console.write_str("\r\n");
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    ($($argument:tt)*) => {
        $crate::serial::print_line(format_args!($($argument)*))
    };
}
