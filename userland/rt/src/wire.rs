//! How the per-server APIs (`iommu-api`, `pci-api`) travel in IPC messages: an operation code
//! plus the bytes of that operation's `#[repr(C)]` request struct, packed little-endian into the
//! untyped words, with the exact byte length in the label. Replies carry bytes the same way.
//!
//! | field | request | reply |
//! |---|---|---|
//! | label bit 30 ([`API_BIT`]) | set | set |
//! | label bits 25:16 | byte length (at most [`MAX_BYTES`]) | byte length |
//! | label bits 15:0 | operation code | zero |
//! | untyped words | the bytes, 8 per word, the last word zero-padded | the bytes |
//!
//! Bit 30 keeps these messages apart from the common protocol ([`crate::protocol`]), whose
//! labels are small numbers and whose replies use bit 31. Capabilities travel as transfer
//! items; a receiver takes them at its [`INBOX`] selector and moves them elsewhere before the
//! next message may bring another one.

use core::fmt;

use sluice_abi::ipc::MAX_UNTYPED_WORDS;
use sluice_abi::syscall::{Selector, Status};

use crate::message::{receive_window, Message};
use crate::utcb::MessageBuffer;

/// Label bit that marks an API message.
pub const API_BIT: u32 = 1 << 30;
/// Most bytes one message carries (64 words of 8 bytes).
pub const MAX_BYTES: usize = MAX_UNTYPED_WORDS * 8;
/// Where every program receives a capability sent to it (one at a time): senders name this
/// selector as the transfer destination, receivers set their window to it.
pub const INBOX: Selector = Selector(200);

const LENGTH_SHIFT: u32 = 16;
const LENGTH_MASK: u32 = 0x3ff;
const OPERATION_MASK: u32 = 0xffff;

/// Why a message is not an API message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The label lacks [`API_BIT`] (or has bit 31, a common-protocol reply).
    NotApi,
    /// More bytes than [`MAX_BYTES`].
    TooLong,
    /// The label's byte length needs more words than the message has, or fewer.
    LengthMismatch,
    /// Label bits outside the defined fields are set.
    ReservedBits,
}

impl fmt::Display for WireError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::NotApi => "not an API message",
            Self::TooLong => "more bytes than one message carries",
            Self::LengthMismatch => "byte length does not match the word count",
            Self::ReservedBits => "reserved label bits set",
        })
    }
}

/// The bytes of an API message (a fixed buffer; no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    buffer: [u8; MAX_BYTES],
    length: usize,
}

impl fmt::Debug for Bytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_list().entries(self.as_slice()).finish()
    }
}

impl Bytes {
    /// Copies `bytes` (at most [`MAX_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<Bytes, WireError> {
        let mut buffer = [0u8; MAX_BYTES];
        buffer
            .get_mut(..bytes.len())
            .ok_or(WireError::TooLong)?
            .copy_from_slice(bytes);
        Ok(Bytes {
            buffer,
            length: bytes.len(),
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.buffer.get(..self.length).unwrap_or(&[])
    }
}

fn pack(label: u32, bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_BYTES {
        return Err(WireError::TooLong);
    }
    let mut message = Message::new(label);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(chunk) {
            *slot = *byte;
        }
        message
            .push_word(u64::from_le_bytes(word))
            .map_err(|_| WireError::TooLong)?;
    }
    Ok(message)
}

/// The message of a request: operation `operation` with `bytes`.
pub fn request(operation: u16, bytes: &[u8]) -> Result<Message, WireError> {
    let length = u32::try_from(bytes.len()).map_err(|_| WireError::TooLong)?;
    pack(
        API_BIT | (length << LENGTH_SHIFT) | u32::from(operation),
        bytes,
    )
}

/// The message of a reply with `bytes`.
pub fn reply(bytes: &[u8]) -> Result<Message, WireError> {
    let length = u32::try_from(bytes.len()).map_err(|_| WireError::TooLong)?;
    pack(API_BIT | (length << LENGTH_SHIFT), bytes)
}

/// Decodes an API message: its operation code (zero in replies) and its bytes. Untrusted input:
/// every inconsistency is an error, never a panic.
pub fn decode(message: &Message) -> Result<(u16, Bytes), WireError> {
    let label = message.label();
    if label & API_BIT == 0 || label & (1 << 31) != 0 {
        return Err(WireError::NotApi);
    }
    let defined = API_BIT | (LENGTH_MASK << LENGTH_SHIFT) | OPERATION_MASK;
    if label & !defined != 0 {
        return Err(WireError::ReservedBits);
    }
    let length = ((label >> LENGTH_SHIFT) & LENGTH_MASK) as usize;
    if length > MAX_BYTES {
        return Err(WireError::TooLong);
    }
    let words = message.words();
    if words.len() != length.div_ceil(8) {
        return Err(WireError::LengthMismatch);
    }
    let mut buffer = [0u8; MAX_BYTES];
    for (chunk, word) in buffer.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Ok(((label & OPERATION_MASK) as u16, Bytes { buffer, length }))
}

/// Why an API call failed before the server's answer could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The request could not be encoded.
    Encode(WireError),
    /// The kernel refused the call.
    Kernel(Status),
    /// The reply is not an API message.
    Reply(WireError),
}

impl fmt::Display for CallError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(error) => write!(formatter, "request not encodable: {error}"),
            Self::Kernel(status) => write!(formatter, "kernel refused the call: {status:?}"),
            Self::Reply(error) => write!(formatter, "malformed reply: {error}"),
        }
    }
}

/// Calls `portal` with operation `operation` and `bytes`, optionally delegating `capability`
/// (selector, rights) to the server's [`INBOX`]; returns the reply's bytes and where a
/// capability the reply carried landed (this thread's [`INBOX`]).
pub fn call(
    buffer: &mut MessageBuffer,
    portal: Selector,
    operation: u16,
    bytes: &[u8],
    capability: Option<(Selector, u64)>,
) -> Result<(Bytes, Option<Selector>), CallError> {
    let mut message = request(operation, bytes).map_err(CallError::Encode)?;
    if let Some((selector, rights)) = capability {
        message
            .push_capability(selector, INBOX, rights)
            .map_err(|_| CallError::Encode(WireError::TooLong))?;
    }
    buffer.set_receive_window(receive_window(INBOX, 1));
    let answer = buffer.call(portal, &message).map_err(CallError::Kernel)?;
    let (_, reply_bytes) = decode(&answer).map_err(CallError::Reply)?;
    let received = answer.items().first().map(|_| INBOX);
    Ok((reply_bytes, received))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip_with_exact_lengths() {
        let message = request(7, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        assert_eq!(message.words().len(), 2);
        let (operation, bytes) = decode(&message).unwrap();
        assert_eq!(operation, 7);
        assert_eq!(bytes.as_slice(), &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let empty = request(1, &[]).unwrap();
        assert_ne!(empty.label(), crate::protocol::label::READY);
        assert_eq!(decode(&empty).unwrap().1.as_slice(), &[] as &[u8]);
        let (operation, bytes) = decode(&reply(&[0xaa; 24]).unwrap()).unwrap();
        assert_eq!((operation, bytes.as_slice().len()), (0, 24));
    }

    #[test]
    fn malformed_messages_are_named() {
        assert_eq!(decode(&Message::new(2)), Err(WireError::NotApi));
        assert_eq!(
            decode(&Message::new(API_BIT | (1 << 31))),
            Err(WireError::NotApi)
        );
        assert_eq!(
            decode(&Message::new(API_BIT | (1 << 28))),
            Err(WireError::ReservedBits)
        );
        assert_eq!(
            decode(&Message::new(API_BIT | (9 << 16))),
            Err(WireError::LengthMismatch)
        );
        assert_eq!(
            decode(&Message::new(API_BIT | (600 << 16))),
            Err(WireError::TooLong)
        );
        assert_eq!(request(1, &[0; MAX_BYTES + 1]), Err(WireError::TooLong));
    }

    proptest! {
        #[test]
        fn any_label_and_words_decode_or_fail_cleanly(label in any::<u32>(), words in proptest::collection::vec(any::<u64>(), 0..64)) {
            let message = Message::with_words(label, &words).unwrap();
            if let Ok((operation, bytes)) = decode(&message) {
                prop_assert_eq!(u32::from(operation), label & 0xffff);
                prop_assert!(bytes.as_slice().len().div_ceil(8) == words.len());
            }
        }

        #[test]
        fn any_bytes_round_trip(operation in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..=MAX_BYTES)) {
            let (decoded_operation, decoded) = decode(&request(operation, &bytes).unwrap()).unwrap();
            prop_assert_eq!(decoded_operation, operation);
            prop_assert_eq!(decoded.as_slice(), &bytes[..]);
        }
    }
}
