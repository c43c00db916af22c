//! 16550 UART register behaviour through the bus-device interface.
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use vmm_core::bus::{AccessError, BusDevice};
use vmm_core::uart::{PrefixedLines, Serial, MAX_LINE_BYTES};

type Uart = Serial<PrefixedLines<VecDeque<String>>, Rc<Cell<bool>>>;

fn uart() -> (Uart, Rc<Cell<bool>>) {
    let line = Rc::new(Cell::new(false));
    (
        Serial::new(PrefixedLines::new("quail", VecDeque::new()), line.clone()),
        line,
    )
}

fn read(uart: &mut Uart, offset: u64) -> u8 {
    let mut data = [0u8];
    uart.read(offset, &mut data).unwrap();
    data[0]
}

fn write(uart: &mut Uart, offset: u64, value: u8) {
    uart.write(offset, &[value]).unwrap();
}

fn lines(uart: &mut Uart) -> Vec<String> {
    uart.output_mut().sink_mut().drain(..).collect()
}

#[test]
fn output_is_collected_per_line_with_the_guest_prefix() {
    let (mut uart, _) = uart();
    for &byte in b"hello\r\nwor" {
        write(&mut uart, 0, byte);
    }
    assert_eq!(lines(&mut uart), ["[quail] hello"]);
    for &byte in b"ld\x1b\n\n" {
        write(&mut uart, 0, byte);
    }
    assert_eq!(lines(&mut uart), ["[quail] world\\x1b", "[quail] "]);
    uart.output_mut().flush();
    assert!(
        lines(&mut uart).is_empty(),
        "nothing pending, nothing flushed"
    );
    for _ in 0..MAX_LINE_BYTES + 1 {
        write(&mut uart, 0, b'x');
    }
    let emitted = lines(&mut uart);
    assert_eq!(emitted.len(), 1, "an overlong line is emitted when full");
    assert_eq!(emitted[0].len(), "[quail] ".len() + MAX_LINE_BYTES);
    uart.output_mut().flush();
    assert_eq!(lines(&mut uart), ["[quail] x"]);
}

#[test]
fn dlab_switches_data_and_ier_to_the_divisor() {
    let (mut uart, _) = uart();
    write(&mut uart, 1, 0x03);
    write(&mut uart, 3, 0x80); // DLAB
    write(&mut uart, 0, 0x01);
    write(&mut uart, 1, 0x00);
    assert_eq!(uart.divisor(), 1);
    assert_eq!(read(&mut uart, 0), 0x01);
    assert_eq!(read(&mut uart, 1), 0x00);
    write(&mut uart, 3, 0x03); // 8N1, DLAB off
    assert_eq!(read(&mut uart, 1), 0x03, "IER kept while DLAB was set");
    assert_eq!(read(&mut uart, 3), 0x03);
    write(&mut uart, 0, b'a');
    write(&mut uart, 0, b'\n');
    assert_eq!(
        lines(&mut uart),
        ["[quail] a"],
        "divisor writes are not output"
    );
}

#[test]
fn line_status_reports_transmitter_empty_and_received_data() {
    let (mut uart, _) = uart();
    assert_eq!(read(&mut uart, 5), 0x60, "THRE and TEMT, no data");
    uart.receive(b"ok");
    assert_eq!(read(&mut uart, 5), 0x61);
    assert_eq!(read(&mut uart, 0), b'o');
    assert_eq!(read(&mut uart, 0), b'k');
    assert_eq!(read(&mut uart, 5), 0x60);
    uart.receive(&[0u8; 17]);
    assert_eq!(read(&mut uart, 5), 0x63, "overrun after 16 bytes");
    assert_eq!(read(&mut uart, 5), 0x61, "overrun clears on read");
    assert_eq!(uart.write(5, &[0]), Err(AccessError::ReadOnly));
    assert_eq!(uart.write(6, &[0]), Err(AccessError::ReadOnly));
    assert_eq!(
        uart.read(0, &mut [0, 0]),
        Err(AccessError::UnsupportedWidth)
    );
    assert_eq!(uart.read(8, &mut [0]), Err(AccessError::UnknownRegister));
}

#[test]
fn interrupts_follow_ier_iir_and_out2() {
    let (mut uart, line) = uart();
    assert_eq!(read(&mut uart, 2), 0x01, "no interrupt pending");
    write(&mut uart, 4, 0x08); // OUT2
    write(&mut uart, 1, 0x02); // THR empty interrupt
    assert!(line.get());
    assert_eq!(read(&mut uart, 2), 0x02);
    assert!(!line.get(), "reading IIR clears the THR-empty source");
    assert_eq!(read(&mut uart, 2), 0x01);
    write(&mut uart, 1, 0x03);
    uart.receive(b"z");
    assert_eq!(read(&mut uart, 2), 0x04, "received data outranks THR empty");
    assert!(line.get());
    read(&mut uart, 0);
    write(&mut uart, 4, 0x00);
    write(&mut uart, 0, b'q');
    assert!(!line.get(), "OUT2 gates the line");
    write(&mut uart, 2, 0x01);
    assert_eq!(read(&mut uart, 2) & 0xc0, 0xc0, "FIFO enabled bits");
}

#[test]
fn loopback_returns_output_and_mirrors_modem_lines() {
    let (mut uart, _) = uart();
    assert_eq!(read(&mut uart, 6), 0xb0);
    write(&mut uart, 4, 0x1f); // loopback with DTR RTS OUT1 OUT2
    assert_eq!(read(&mut uart, 6), 0xf0);
    write(&mut uart, 0, 0xa5);
    assert_eq!(read(&mut uart, 0), 0xa5);
    write(&mut uart, 4, 0x00);
    write(&mut uart, 7, 0x5a);
    assert_eq!(read(&mut uart, 7), 0x5a, "scratch register");
    assert!(
        lines(&mut uart).is_empty(),
        "loopback output never reaches the console"
    );
    uart.output_mut().flush();
    assert!(lines(&mut uart).is_empty());
}
