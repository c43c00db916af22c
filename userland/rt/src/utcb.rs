//! The calling thread's UTCB (message buffer) and the two IPC calls that use it: `call` writes
//! the request, traps, and reads the reply; `reply_and_wait` writes the reply, traps, and reads
//! the next request. No reference into the UTCB lives across a system call, because the kernel
//! writes it while the thread is blocked.
//!
//! A program's first thread finds its UTCB through [`MessageBuffer::current`] (the entry code
//! records it); further threads receive theirs in RDI and wrap it with
//! [`MessageBuffer::from_address`]. On the host the buffer is the recording fake's per-thread
//! UTCB ([`crate::host`]).

use core::sync::atomic::{AtomicU64, Ordering};

use sluice_abi::ipc::{ReceiveWindow, Utcb};
use sluice_abi::syscall::{Selector, Status};

use crate::message::Message;
use crate::sys;

/// The first thread's UTCB address, recorded by the entry code (0 = none).
static FIRST_THREAD_UTCB: AtomicU64 = AtomicU64::new(0);

/// Records the first thread's UTCB address (called once by [`crate::entry!`]).
pub fn install_first_thread_utcb(address: u64) {
    FIRST_THREAD_UTCB.store(address, Ordering::Relaxed);
}

/// The calling thread's message buffer.
#[derive(Debug)]
pub struct MessageBuffer {
    address: u64,
}

impl MessageBuffer {
    /// The first thread's buffer, or `None` if the entry code recorded none. Use it only from
    /// the program's first thread.
    pub fn current() -> Option<MessageBuffer> {
        #[cfg(not(target_os = "none"))]
        {
            Some(MessageBuffer { address: 0 })
        }
        #[cfg(target_os = "none")]
        {
            match FIRST_THREAD_UTCB.load(Ordering::Relaxed) {
                0 => None,
                address => Some(MessageBuffer { address }),
            }
        }
    }

    /// Wraps the UTCB at `address`.
    ///
    /// # Safety
    /// `address` must be the calling thread's own UTCB page, mapped readable and writable for
    /// as long as the buffer is used, and no other buffer for that page may be used by
    /// another thread meanwhile.
    pub unsafe fn from_address(address: u64) -> MessageBuffer {
        MessageBuffer { address }
    }

    /// The UTCB's address (0 on the host fake).
    pub fn address(&self) -> u64 {
        self.address
    }

    #[cfg(target_os = "none")]
    fn with<R>(&mut self, action: impl FnOnce(&mut Utcb) -> R) -> R {
        // SAFETY: `from_address`/`current` guarantee a mapped, writable UTCB page used by this
        // thread only; `Utcb` is plain data (any bit pattern is valid) and fits in the page;
        // the reference ends before any system call.
        let utcb = unsafe { &mut *(self.address as *mut Utcb) };
        action(utcb)
    }

    #[cfg(not(target_os = "none"))]
    fn with<R>(&mut self, action: impl FnOnce(&mut Utcb) -> R) -> R {
        crate::host::with_utcb(action)
    }

    /// Sets where this thread accepts capabilities sent to it.
    pub fn set_receive_window(&mut self, window: ReceiveWindow) {
        self.with(|utcb| utcb.receive_window = window);
    }

    /// Puts `message` in the UTCB (for calls that take their input from it, like `vcpu_run`).
    pub fn write_message(&mut self, message: &Message) {
        self.with(|utcb| message.write_to(utcb));
    }

    /// The message the UTCB holds now (after a call that leaves its output there).
    pub fn read_message(&mut self) -> Result<Message, Status> {
        self.with(|utcb| Message::read_from(utcb))
            .map_err(|_| Status::Overflow)
    }

    /// Calls `portal` with `request` and returns the reply. A reply whose tag exceeds the
    /// buffer (impossible from a kernel that follows the ABI) is reported as `Overflow`.
    pub fn call(&mut self, portal: Selector, request: &Message) -> Result<Message, Status> {
        self.with(|utcb| request.write_to(utcb));
        sys::call(portal)?;
        self.with(|utcb| Message::read_from(utcb))
            .map_err(|_| Status::Overflow)
    }

    /// Replies with `reply` to the last caller (if any) and waits for the next call on a portal
    /// this thread serves: returns that portal's id and the request.
    pub fn reply_and_wait(&mut self, reply: &Message) -> Result<(u64, Message), Status> {
        self.with(|utcb| reply.write_to(utcb));
        let portal_id = sys::reply_and_wait()?;
        let request = self
            .with(|utcb| Message::read_from(utcb))
            .map_err(|_| Status::Overflow)?;
        Ok((portal_id, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;
    use sluice_abi::syscall::Syscall;

    #[test]
    fn call_writes_the_request_and_reads_the_reply() {
        host::reset();
        host::set_handler(Syscall::Call, |arguments, utcb| {
            assert_eq!(arguments, [3, 0, 0, 0, 0, 0]);
            let request = Message::read_from(utcb).unwrap();
            assert_eq!(request.label(), 2);
            let reply = Message::with_words(0, &[request.word(0).unwrap_or(0) + 1]).unwrap();
            reply.write_to(utcb);
            Ok(0)
        });
        let mut buffer = MessageBuffer::current().unwrap();
        let reply = buffer
            .call(Selector(3), &Message::with_words(2, &[41]).unwrap())
            .unwrap();
        assert_eq!(reply.words(), &[42]);
    }

    #[test]
    fn call_errors_come_back_as_status_and_reply_and_wait_returns_the_portal() {
        host::reset();
        host::set_handler(Syscall::Call, |_, _| Err(Status::EmptySlot));
        let mut buffer = MessageBuffer::current().unwrap();
        assert_eq!(
            buffer.call(Selector(9), &Message::new(1)),
            Err(Status::EmptySlot)
        );
        host::set_handler(Syscall::ReplyAndWait, |_, utcb| {
            assert_eq!(utcb.tag.label, 5, "the reply was written before the trap");
            Message::with_words(1, &[7]).unwrap().write_to(utcb);
            Ok(77)
        });
        let (portal, request) = buffer.reply_and_wait(&Message::new(5)).unwrap();
        assert_eq!(portal, 77);
        assert_eq!(request.words(), &[7]);
        buffer.set_receive_window(crate::message::receive_window(Selector(10), 2));
        host::with_utcb(|utcb| assert_eq!(utcb.receive_window.base, 10));
    }
}
