//! A 16550A UART as a state machine behind the byte-level bus (register map from the TI/NS
//! PC16550D datasheet, section 8): RBR/THR, IER, IIR/FCR, LCR (DLAB), MCR (loopback), LSR, MSR,
//! SCR. Transmission is instant, so THRE and TEMT are always set. Output leaves through a
//! [`SerialOutput`] (for the console: [`PrefixedLines`], which emits whole lines as
//! `[guest] text`); the interrupt leaves through an [`InterruptLine`].
use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt::Write as _;

use crate::bus::{AccessError, BusDevice};

/// Where transmitted bytes go.
pub trait SerialOutput {
    /// One byte written to THR outside loopback.
    fn transmit(&mut self, byte: u8);
}

/// Where whole console lines go.
pub trait LineSink {
    /// One complete line, without its newline.
    fn emit_line(&mut self, line: &str);
}

/// A level-triggered interrupt line.
pub trait InterruptLine {
    /// Drives the line.
    fn set_level(&mut self, asserted: bool);
}

/// Register offsets (PC16550D section 8.1, Table 2).
mod register {
    pub const DATA: u64 = 0; // RBR read, THR write, DLL with DLAB
    pub const INTERRUPT_ENABLE: u64 = 1; // IER, DLM with DLAB
    pub const INTERRUPT_IDENTIFICATION: u64 = 2; // IIR read, FCR write
    pub const LINE_CONTROL: u64 = 3;
    pub const MODEM_CONTROL: u64 = 4;
    pub const LINE_STATUS: u64 = 5;
    pub const MODEM_STATUS: u64 = 6;
    pub const SCRATCH: u64 = 7;
}

/// Number of port addresses the UART decodes.
pub const UART_PORT_COUNT: u64 = 8;

const IER_RECEIVED_DATA: u8 = 1 << 0;
const IER_THR_EMPTY: u8 = 1 << 1;
const IER_MASK: u8 = 0x0f;
const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RECEIVED_DATA: u8 = 0x04;
const IIR_FIFO_ENABLED: u8 = 0xc0;
const FCR_FIFO_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RECEIVE: u8 = 1 << 1;
const LCR_DLAB: u8 = 1 << 7;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOPBACK: u8 = 1 << 4;
const MCR_MASK: u8 = 0x1f;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_OVERRUN: u8 = 1 << 1;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;
/// MSR outside loopback: carrier detect, data set ready, clear to send.
const MSR_CONNECTED: u8 = 0xb0;
const RECEIVE_FIFO_DEPTH: usize = 16;

/// The 16550A model.
pub struct Serial<O: SerialOutput, I: InterruptLine> {
    divisor: u16,
    interrupt_enable: u8,
    fifo_control: u8,
    line_control: u8,
    modem_control: u8,
    line_status_errors: u8,
    scratch: u8,
    thr_empty_pending: bool,
    receive: VecDeque<u8>,
    output: O,
    interrupt: I,
    line_asserted: bool,
}

impl<O: SerialOutput, I: InterruptLine> Serial<O, I> {
    /// A UART in its reset state (divisor 12, 9600 baud at 1.8432 MHz), line deasserted.
    pub fn new(output: O, interrupt: I) -> Self {
        Serial {
            divisor: 12,
            interrupt_enable: 0,
            fifo_control: 0,
            line_control: 0x03,
            modem_control: 0,
            line_status_errors: 0,
            scratch: 0,
            thr_empty_pending: false,
            receive: VecDeque::new(),
            output,
            interrupt,
            line_asserted: false,
        }
    }

    /// The output sink.
    pub fn output_mut(&mut self) -> &mut O {
        &mut self.output
    }

    /// The programmed baud-rate divisor.
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    /// Queues bytes from the host side for the guest to read; bytes beyond the FIFO set the
    /// overrun error and are lost, as on the real part.
    pub fn receive(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push_received(byte);
        }
        self.update_interrupt();
    }

    fn push_received(&mut self, byte: u8) {
        if self.receive.len() < RECEIVE_FIFO_DEPTH {
            self.receive.push_back(byte);
        } else {
            self.line_status_errors |= LSR_OVERRUN;
        }
    }

    fn dlab(&self) -> bool {
        self.line_control & LCR_DLAB != 0
    }

    fn pending_identification(&self) -> u8 {
        if self.interrupt_enable & IER_RECEIVED_DATA != 0 && !self.receive.is_empty() {
            IIR_RECEIVED_DATA
        } else if self.interrupt_enable & IER_THR_EMPTY != 0 && self.thr_empty_pending {
            IIR_THR_EMPTY
        } else {
            IIR_NO_INTERRUPT
        }
    }

    fn update_interrupt(&mut self) {
        // On the PC the IRQ output is gated by OUT2.
        let asserted =
            self.pending_identification() != IIR_NO_INTERRUPT && self.modem_control & MCR_OUT2 != 0;
        if asserted != self.line_asserted {
            self.line_asserted = asserted;
            self.interrupt.set_level(asserted);
        }
    }

    fn line_status(&self) -> u8 {
        let ready = if self.receive.is_empty() {
            0
        } else {
            LSR_DATA_READY
        };
        ready | self.line_status_errors | LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY
    }

    fn modem_status(&self) -> u8 {
        if self.modem_control & MCR_LOOPBACK != 0 {
            // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (PC16550D section 8.6.4).
            let mcr = self.modem_control;
            (mcr & 0x01) << 5 | (mcr & 0x02) << 3 | (mcr & 0x04) << 4 | (mcr & 0x08) << 4
        } else {
            MSR_CONNECTED
        }
    }

    fn read_register(&mut self, offset: u64) -> Result<u8, AccessError> {
        Ok(match offset {
            register::DATA if self.dlab() => self.divisor as u8,
            register::DATA => self.receive.pop_front().unwrap_or(0),
            register::INTERRUPT_ENABLE if self.dlab() => (self.divisor >> 8) as u8,
            register::INTERRUPT_ENABLE => self.interrupt_enable,
            register::INTERRUPT_IDENTIFICATION => {
                let identification = self.pending_identification();
                // Reading IIR while it reports THR empty clears that source.
                if identification == IIR_THR_EMPTY {
                    self.thr_empty_pending = false;
                }
                let fifo = if self.fifo_control & FCR_FIFO_ENABLE != 0 {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                identification | fifo
            }
            register::LINE_CONTROL => self.line_control,
            register::MODEM_CONTROL => self.modem_control,
            register::LINE_STATUS => {
                let status = self.line_status();
                self.line_status_errors = 0;
                status
            }
            register::MODEM_STATUS => self.modem_status(),
            register::SCRATCH => self.scratch,
            _ => return Err(AccessError::UnknownRegister),
        })
    }

    fn write_register(&mut self, offset: u64, value: u8) -> Result<(), AccessError> {
        match offset {
            register::DATA if self.dlab() => {
                self.divisor = self.divisor & 0xff00 | u16::from(value)
            }
            register::DATA => {
                if self.modem_control & MCR_LOOPBACK != 0 {
                    self.push_received(value);
                } else {
                    self.output.transmit(value);
                }
                self.thr_empty_pending = true;
            }
            register::INTERRUPT_ENABLE if self.dlab() => {
                self.divisor = self.divisor & 0x00ff | u16::from(value) << 8;
            }
            register::INTERRUPT_ENABLE => {
                // Enabling the THR-empty interrupt while THR is empty raises it at once.
                if value & IER_THR_EMPTY != 0 && self.interrupt_enable & IER_THR_EMPTY == 0 {
                    self.thr_empty_pending = true;
                }
                self.interrupt_enable = value & IER_MASK;
            }
            register::INTERRUPT_IDENTIFICATION => {
                if value & FCR_CLEAR_RECEIVE != 0 {
                    self.receive.clear();
                }
                self.fifo_control = value & 0xc9;
            }
            register::LINE_CONTROL => self.line_control = value,
            register::MODEM_CONTROL => self.modem_control = value & MCR_MASK,
            register::LINE_STATUS | register::MODEM_STATUS => return Err(AccessError::ReadOnly),
            register::SCRATCH => self.scratch = value,
            _ => return Err(AccessError::UnknownRegister),
        }
        Ok(())
    }
}

impl<O: SerialOutput, I: InterruptLine> BusDevice for Serial<O, I> {
    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let [byte] = data else {
            return Err(AccessError::UnsupportedWidth);
        };
        *byte = self.read_register(offset)?;
        self.update_interrupt();
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        let [byte] = data else {
            return Err(AccessError::UnsupportedWidth);
        };
        self.write_register(offset, *byte)?;
        self.update_interrupt();
        Ok(())
    }
}

/// Longest line kept before it is emitted without a newline.
pub const MAX_LINE_BYTES: usize = 256;

/// Collects transmitted bytes into lines and hands each to a [`LineSink`] as `[name] text`.
/// Carriage returns are dropped; other control and non-ASCII bytes are shown as `\xNN`.
pub struct PrefixedLines<S: LineSink> {
    name: String,
    line: String,
    pending_bytes: usize,
    sink: S,
}

impl<S: LineSink> PrefixedLines<S> {
    /// Lines from the guest called `name`.
    pub fn new(name: &str, sink: S) -> Self {
        PrefixedLines {
            name: String::from(name),
            line: String::new(),
            pending_bytes: 0,
            sink,
        }
    }

    /// Emits a partial line, if any (e.g. when the guest stops).
    pub fn flush(&mut self) {
        if self.pending_bytes > 0 {
            let line = alloc::format!("[{}] {}", self.name, self.line);
            self.sink.emit_line(&line);
            self.line.clear();
            self.pending_bytes = 0;
        }
    }

    /// The line sink.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }
}

impl<S: LineSink> SerialOutput for PrefixedLines<S> {
    fn transmit(&mut self, byte: u8) {
        match byte {
            b'\n' => {
                self.pending_bytes = self.pending_bytes.max(1);
                self.flush();
                return;
            }
            b'\r' => return,
            0x20..=0x7e | b'\t' => self.line.push(char::from(byte)),
            _ => {
                let _ = write!(self.line, "\\x{byte:02x}");
            }
        }
        self.pending_bytes += 1;
        if self.pending_bytes >= MAX_LINE_BYTES {
            self.flush();
        }
    }
}
