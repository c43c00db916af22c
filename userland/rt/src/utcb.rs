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

use sluice_abi::ipc::{MessageTag, ReceiveWindow, Utcb, MAX_UNTYPED_WORDS};
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

    /// Writes a message of words only, filled in place: `fill` gets the UTCB's whole untyped
    /// area and returns how many words it wrote (or an error). The tag then says `label`, that
    /// many words (at most [`MAX_UNTYPED_WORDS`]) and no transfer items: the UTCB holds what
    /// [`MessageBuffer::write_message`] of `Message::with_words(label, &words[..count])` would
    /// leave, without building the message or a zeroed copy of the words first. When `fill`
    /// fails the tag says `label` and no words (the area may be partly written; nothing reads
    /// it) and the error is returned.
    pub fn write_words<E>(
        &mut self,
        label: u32,
        fill: impl FnOnce(&mut [u64; MAX_UNTYPED_WORDS]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.with(|utcb| {
            let result = fill(&mut utcb.untyped).map(|count| count.min(MAX_UNTYPED_WORDS));
            utcb.tag = MessageTag {
                label,
                // At most MAX_UNTYPED_WORDS (64).
                untyped_words: *result.as_ref().unwrap_or(&0) as u16,
                transfer_items: 0,
            };
            result
        })
    }

    /// Reads the message the UTCB holds in place: `read` gets its label and its untyped words
    /// (no copy into a [`Message`]). Refuses exactly what [`MessageBuffer::read_message`]
    /// refuses (a tag claiming more words or transfer items than the buffer holds) with
    /// `Overflow`; transfer items, if any, are not passed on.
    pub fn read_words<R>(&mut self, read: impl FnOnce(u32, &[u64]) -> R) -> Result<R, Status> {
        self.with(|utcb| {
            utcb.transfer_items().ok_or(Status::Overflow)?;
            let words = utcb.message_words().ok_or(Status::Overflow)?;
            Ok(read(utcb.tag.label, words))
        })
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

    /// The UTCB after `action`, starting from `before`.
    fn utcb_after(before: &Utcb, action: impl FnOnce(&mut MessageBuffer)) -> Utcb {
        host::reset();
        host::with_utcb(|utcb| *utcb = *before);
        let mut buffer = MessageBuffer::current().unwrap();
        action(&mut buffer);
        host::with_utcb(|utcb| *utcb)
    }

    #[test]
    fn a_failed_fill_leaves_a_message_without_words() {
        let mut before = Utcb::empty();
        before.tag = MessageTag {
            label: 9,
            untyped_words: 5,
            transfer_items: 2,
        };
        let after = utcb_after(&before, |buffer| {
            let result = buffer.write_words(4, |words| {
                words[0] = 1;
                Err::<usize, &str>("refused")
            });
            assert_eq!(result, Err("refused"));
        });
        let expected = utcb_after(&before, |buffer| buffer.write_message(&Message::new(4)));
        assert_eq!(after.tag, expected.tag);
        assert_eq!(after.tag.untyped_words, 0);
    }

    proptest::proptest! {
        #[test]
        fn write_words_leaves_what_write_message_leaves(
            label in proptest::prelude::any::<u32>(),
            words in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..=MAX_UNTYPED_WORDS),
            old_words in proptest::prelude::any::<u16>(),
            old_items in proptest::prelude::any::<u16>(),
            fill in proptest::prelude::any::<u64>(),
        ) {
            let mut before = Utcb::empty();
            before.untyped = [fill; MAX_UNTYPED_WORDS];
            before.tag = MessageTag { label: !label, untyped_words: old_words, transfer_items: old_items };
            let message = Message::with_words(label, &words).unwrap();
            let expected = utcb_after(&before, |buffer| buffer.write_message(&message));
            let actual = utcb_after(&before, |buffer| {
                let written = buffer.write_words(label, |area| {
                    area[..words.len()].copy_from_slice(&words);
                    Ok::<usize, ()>(words.len())
                });
                assert_eq!(written, Ok(words.len()));
            });
            proptest::prop_assert_eq!(actual, expected);
        }

        #[test]
        fn read_words_sees_what_read_message_reads(
            label in proptest::prelude::any::<u32>(),
            word_count in proptest::prelude::any::<u16>(),
            item_count in proptest::prelude::any::<u16>(),
            small in proptest::prelude::any::<bool>(),
            fill in proptest::prelude::any::<u64>(),
        ) {
            // Half the cases with counts in range, so both answers are exercised.
            let (word_count, item_count) = if small {
                (word_count % (MAX_UNTYPED_WORDS as u16 + 2), item_count % 6)
            } else {
                (word_count, item_count)
            };
            let mut before = Utcb::empty();
            for (index, slot) in before.untyped.iter_mut().enumerate() {
                *slot = fill.wrapping_add(index as u64);
            }
            before.tag = MessageTag { label, untyped_words: word_count, transfer_items: item_count };
            host::reset();
            host::with_utcb(|utcb| *utcb = before);
            let mut buffer = MessageBuffer::current().unwrap();
            let expected = buffer.read_message().map(|message| (message.label(), message.words().to_vec()));
            let actual = buffer.read_words(|label, words| (label, words.to_vec()));
            proptest::prop_assert_eq!(actual, expected);
        }
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
