//! The sinks the [`crate::vmm::Vmm`] wires its device models to: shared handles (the VMM is
//! single-threaded, so `Rc` + `Cell`/`RefCell`) through which console lines, interrupt levels
//! and exit requests leave a device and reach the run loop.
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::{Cell, RefCell};

use crate::debug_exit::ExitRequest;
use crate::uart::{InterruptLine, LineSink, SerialOutput};

impl LineSink for VecDeque<String> {
    fn emit_line(&mut self, line: &str) {
        self.push_back(String::from(line));
    }
}

/// A serial output shared between the device and its owner. Re-entrant use cannot happen in
/// the single-threaded VMM; if it ever did, the byte would be dropped rather than panic.
impl<T: SerialOutput> SerialOutput for Rc<RefCell<T>> {
    fn transmit(&mut self, byte: u8) {
        if let Ok(mut inner) = self.try_borrow_mut() {
            inner.transmit(byte);
        }
    }
}

/// The current level of a line, readable by its owner.
impl InterruptLine for Rc<Cell<bool>> {
    fn set_level(&mut self, asserted: bool) {
        self.set(asserted);
    }
}

/// The last status the guest asked to exit with.
impl ExitRequest for Rc<Cell<Option<u32>>> {
    fn request_exit(&mut self, status: u32) {
        self.set(Some(status));
    }
}
