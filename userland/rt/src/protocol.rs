//! The tiny protocol every Sluice program speaks over its portals before the per-server APIs:
//! labels of requests, the shape of replies, and client and server helpers.
//!
//! | label | request | words | reply words |
//! |---|---|---|---|
//! | 1 `READY` | a child tells its parent it serves | none | none |
//! | 2 `HELLO` | a peer asks for the protocol version | `[version]` | `[version]` |
//! | 3 `REPORT` | a test program reports results | `[mode, first, second]` | none |
//! | 4 `FAULT` | init's fault watcher: a child faulted | `[notification bits]` | none |
//!
//! A reply's label is [`REPLY_SUCCESS`] or [`REPLY_REFUSED`] with a [`Refusal`] code in the
//! low bits. A request carrying capabilities, a wrong word count, an unknown label or another
//! protocol version is refused, never a panic.

use core::fmt;

use sluice_abi::syscall::{Selector, Status};

use crate::message::Message;
use crate::utcb::MessageBuffer;

/// The protocol version this runtime speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// Request labels.
pub mod label {
    /// A child is up and serving.
    pub const READY: u32 = 1;
    /// Version handshake between peers.
    pub const HELLO: u32 = 2;
    /// A test program's results.
    pub const REPORT: u32 = 3;
    /// A fault notification, forwarded by init's fault watcher to init's service thread.
    pub const FAULT: u32 = 4;
    /// A vmm-server's guest ended: guest index, status (0 = passed), exits handled.
    pub const GUEST_DONE: u32 = 5;
}

/// Label of a reply that accepts the request.
pub const REPLY_SUCCESS: u32 = 0;
/// Bit set in the label of a reply that refuses the request; the low bits are a [`Refusal`].
pub const REPLY_REFUSED: u32 = 1 << 31;

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`label::READY`].
    Ready,
    /// [`label::HELLO`] with the caller's version.
    Hello { version: u64 },
    /// [`label::REPORT`] with the test mode and two result words.
    Report { mode: u64, first: u64, second: u64 },
    /// [`label::FAULT`] with the notification bits taken.
    Fault { bits: u64 },
    /// [`label::GUEST_DONE`]: guest index, status (0 = passed), exits handled.
    GuestDone { guest: u64, status: u64, exits: u64 },
}

/// Why a request was refused (the reply carries the code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No request has this label.
    UnknownLabel = 1,
    /// The request has the wrong number of words, or carries capabilities.
    Malformed = 2,
    /// The caller speaks another protocol version.
    UnsupportedVersion = 3,
    /// A valid request the receiver does not accept from this caller now.
    NotExpected = 4,
}

impl Refusal {
    /// Every code.
    pub const ALL: [Refusal; 4] = [
        Refusal::UnknownLabel,
        Refusal::Malformed,
        Refusal::UnsupportedVersion,
        Refusal::NotExpected,
    ];

    /// Decodes a reply code.
    pub fn from_code(code: u32) -> Option<Refusal> {
        Self::ALL.into_iter().find(|r| *r as u32 == code)
    }

    /// The refusing reply.
    pub fn reply(self) -> Message {
        Message::new(REPLY_REFUSED | self as u32)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::UnknownLabel => "unknown request label",
            Self::Malformed => "malformed request (word count or capabilities)",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::NotExpected => "request not expected from this caller now",
        })
    }
}

/// Why a request could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// No request has this label.
    UnknownLabel { label: u32 },
    /// The request has another number of words than its label needs.
    WordCount {
        label: u32,
        expected: usize,
        found: usize,
    },
    /// The request carries capabilities, which no request of this protocol does.
    UnexpectedCapabilities { label: u32 },
}

impl ProtocolError {
    /// The refusal code a reply carries.
    pub fn refusal(self) -> Refusal {
        match self {
            Self::UnknownLabel { .. } => Refusal::UnknownLabel,
            Self::WordCount { .. } | Self::UnexpectedCapabilities { .. } => Refusal::Malformed,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownLabel { label } => write!(formatter, "unknown label {label}"),
            Self::WordCount {
                label,
                expected,
                found,
            } => write!(
                formatter,
                "label {label} needs {expected} words, found {found}"
            ),
            Self::UnexpectedCapabilities { label } => {
                write!(formatter, "label {label} carries capabilities")
            }
        }
    }
}

impl Request {
    /// The message that carries this request.
    pub fn encode(&self) -> Message {
        match *self {
            Request::Ready => message_of(label::READY, &[]),
            Request::Hello { version } => message_of(label::HELLO, &[version]),
            Request::Report {
                mode,
                first,
                second,
            } => message_of(label::REPORT, &[mode, first, second]),
            Request::Fault { bits } => message_of(label::FAULT, &[bits]),
            Request::GuestDone {
                guest,
                status,
                exits,
            } => message_of(label::GUEST_DONE, &[guest, status, exits]),
        }
    }

    /// Decodes a received message.
    pub fn decode(message: &Message) -> Result<Request, ProtocolError> {
        let label = message.label();
        let expected = match label {
            label::READY => 0,
            label::HELLO | label::FAULT => 1,
            label::REPORT | label::GUEST_DONE => 3,
            _ => return Err(ProtocolError::UnknownLabel { label }),
        };
        if !message.items().is_empty() {
            return Err(ProtocolError::UnexpectedCapabilities { label });
        }
        let words = message.words();
        let word = |index: usize| words.get(index).copied().unwrap_or(0);
        if words.len() != expected {
            return Err(ProtocolError::WordCount {
                label,
                expected,
                found: words.len(),
            });
        }
        Ok(match label {
            label::READY => Request::Ready,
            label::HELLO => Request::Hello { version: word(0) },
            label::FAULT => Request::Fault { bits: word(0) },
            label::GUEST_DONE => Request::GuestDone {
                guest: word(0),
                status: word(1),
                exits: word(2),
            },
            _ => Request::Report {
                mode: word(0),
                first: word(1),
                second: word(2),
            },
        })
    }
}

fn message_of(label: u32, words: &[u64]) -> Message {
    // At most three words: always within the 64-word buffer.
    Message::with_words(label, words).unwrap_or(Message::new(label))
}

/// A successful reply carrying `words` (at most 64; extra words are dropped).
pub fn success(words: &[u64]) -> Message {
    let mut message = Message::new(REPLY_SUCCESS);
    for word in words {
        if message.push_word(*word).is_err() {
            break;
        }
    }
    message
}

/// Why a call through the protocol failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The kernel refused the call (bad portal, partner gone...).
    Kernel(Status),
    /// The receiver refused the request.
    Refused(Refusal),
    /// The reply does not have the shape the request expects.
    MalformedReply { label: u32, words: usize },
}

impl fmt::Display for CallError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernel(status) => write!(formatter, "kernel refused the call: {status:?}"),
            Self::Refused(refusal) => write!(formatter, "refused: {refusal}"),
            Self::MalformedReply { label, words } => {
                write!(
                    formatter,
                    "malformed reply (label {label:#x}, {words} words)"
                )
            }
        }
    }
}

/// Checks a reply: success with exactly `words` words, or the refusal it carries.
pub fn check_reply(reply: &Message, words: usize) -> Result<(), CallError> {
    let malformed = CallError::MalformedReply {
        label: reply.label(),
        words: reply.words().len(),
    };
    if reply.label() == REPLY_SUCCESS {
        return if reply.words().len() == words {
            Ok(())
        } else {
            Err(malformed)
        };
    }
    if reply.label() & REPLY_REFUSED != 0 {
        return Refusal::from_code(reply.label() & !REPLY_REFUSED)
            .map_or(Err(malformed), |refusal| Err(CallError::Refused(refusal)));
    }
    Err(malformed)
}

/// Sends `request` through `portal` and checks that the reply has `words` words.
pub fn request(
    buffer: &mut MessageBuffer,
    portal: Selector,
    request: Request,
    words: usize,
) -> Result<Message, CallError> {
    let reply = buffer
        .call(portal, &request.encode())
        .map_err(CallError::Kernel)?;
    check_reply(&reply, words)?;
    Ok(reply)
}

/// `HELLO` handshake: returns the peer's version.
pub fn hello(buffer: &mut MessageBuffer, portal: Selector) -> Result<u64, CallError> {
    let reply = request(
        buffer,
        portal,
        Request::Hello {
            version: PROTOCOL_VERSION,
        },
        1,
    )?;
    Ok(reply.word(0).unwrap_or(0))
}

/// `READY` to the parent.
pub fn ready(buffer: &mut MessageBuffer, parent: Selector) -> Result<(), CallError> {
    request(buffer, parent, Request::Ready, 0).map(|_| ())
}

/// How a server answers one request of the common protocol: `HELLO` is answered with
/// [`PROTOCOL_VERSION`] and logged as `NAME: hello from portal N (version V)`; anything else
/// is refused and logged.
pub fn answer(name: &str, portal_id: u64, request: &Message) -> Message {
    match Request::decode(request) {
        Ok(Request::Hello { version }) if version == PROTOCOL_VERSION => {
            crate::log!("{name}: hello from portal {portal_id} (version {version})");
            success(&[PROTOCOL_VERSION])
        }
        Ok(Request::Hello { version }) => {
            crate::log!("{name}: hello from portal {portal_id} with unsupported version {version}");
            Refusal::UnsupportedVersion.reply()
        }
        Ok(other) => {
            crate::log!("{name}: portal {portal_id}: {other:?} not served here");
            Refusal::NotExpected.reply()
        }
        Err(error) => {
            crate::log!("{name}: portal {portal_id}: refused: {error}");
            error.refusal().reply()
        }
    }
}

/// A server's main loop: answer every request with [`answer`], forever. A refused
/// `reply_and_wait` is logged and retried with an empty refusal (up to a few logged lines).
pub fn serve(buffer: &mut MessageBuffer, name: &str) -> ! {
    let mut reply = success(&[]);
    let mut errors_logged = 0u32;
    loop {
        match buffer.reply_and_wait(&reply) {
            Ok((portal_id, request)) => reply = answer(name, portal_id, &request),
            Err(status) => {
                if errors_logged < 8 {
                    crate::log!("{name}: reply_and_wait failed: {status:?}");
                    errors_logged += 1;
                }
                reply = Refusal::Malformed.reply();
            }
        }
    }
}

/// The life of a server of this issue after it logged `NAME: started`: if it has a peer, say
/// hello to it and log `NAME: PEER answered hello: version V`; tell the parent `READY` through
/// `parent`; then [`serve`] forever. Failures are logged, never a panic.
pub fn run_server(
    buffer: &mut MessageBuffer,
    name: &str,
    peer: Option<(Selector, &str)>,
    parent: Selector,
) -> ! {
    if let Some((portal, peer_name)) = peer {
        match hello(buffer, portal) {
            Ok(version) => crate::log!("{name}: {peer_name} answered hello: version {version}"),
            Err(error) => crate::log!("{name}: hello to {peer_name} failed: {error}"),
        }
    }
    if let Err(error) = ready(buffer, parent) {
        crate::log!("{name}: telling the parent ready failed: {error}");
    }
    serve(buffer, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Ready,
            Request::Hello { version: 1 },
            Request::Report {
                mode: 1,
                first: 3,
                second: 5,
            },
            Request::Fault { bits: 1 },
        ] {
            assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn malformed_requests_are_named() {
        assert_eq!(
            Request::decode(&Message::new(99)),
            Err(ProtocolError::UnknownLabel { label: 99 })
        );
        assert_eq!(
            Request::decode(&Message::new(label::HELLO)),
            Err(ProtocolError::WordCount {
                label: 2,
                expected: 1,
                found: 0
            })
        );
        let mut with_capability = Message::new(label::READY);
        with_capability
            .push_capability(Selector(1), Selector(2), 1)
            .unwrap();
        assert_eq!(
            Request::decode(&with_capability),
            Err(ProtocolError::UnexpectedCapabilities { label: 1 })
        );
    }

    #[test]
    fn replies_are_checked() {
        assert_eq!(check_reply(&success(&[1]), 1), Ok(()));
        assert_eq!(
            check_reply(&success(&[]), 1),
            Err(CallError::MalformedReply { label: 0, words: 0 })
        );
        for refusal in Refusal::ALL {
            assert_eq!(
                check_reply(&refusal.reply(), 0),
                Err(CallError::Refused(refusal))
            );
        }
        assert!(matches!(
            check_reply(&Message::new(REPLY_REFUSED | 77), 0),
            Err(CallError::MalformedReply { .. })
        ));
        assert!(matches!(
            check_reply(&Message::new(5), 0),
            Err(CallError::MalformedReply { .. })
        ));
    }

    #[test]
    fn servers_answer_hello_and_refuse_everything_else() {
        crate::host::reset();
        let reply = answer("iommu-server", 2, &Request::Hello { version: 1 }.encode());
        assert_eq!(reply, success(&[PROTOCOL_VERSION]));
        assert_eq!(
            crate::host::take_output(),
            "iommu-server: hello from portal 2 (version 1)\n"
        );
        let reply = answer("pci-server", 3, &Request::Hello { version: 9 }.encode());
        assert_eq!(
            check_reply(&reply, 1),
            Err(CallError::Refused(Refusal::UnsupportedVersion))
        );
        let reply = answer("pci-server", 3, &Message::new(1234));
        assert_eq!(
            check_reply(&reply, 0),
            Err(CallError::Refused(Refusal::UnknownLabel))
        );
        let reply = answer("pci-server", 3, &Request::Ready.encode());
        assert_eq!(
            check_reply(&reply, 0),
            Err(CallError::Refused(Refusal::NotExpected))
        );
        assert!(crate::host::take_output().contains("unknown label 1234"));
    }

    #[test]
    fn hello_goes_through_the_portal_and_reports_refusals() {
        use sluice_abi::syscall::Syscall;
        crate::host::reset();
        crate::host::set_handler(Syscall::Call, |arguments, utcb| {
            let request = Message::read_from(utcb).unwrap();
            let reply = answer("peer", arguments[0], &request);
            reply.write_to(utcb);
            Ok(0)
        });
        let mut buffer = MessageBuffer::current().unwrap();
        assert_eq!(hello(&mut buffer, Selector(3)), Ok(1));
        assert_eq!(
            ready(&mut buffer, Selector(2)),
            Err(CallError::Refused(Refusal::NotExpected))
        );
        crate::host::set_handler(Syscall::Call, |_, _| Err(Status::WrongType));
        assert_eq!(
            hello(&mut buffer, Selector(0)),
            Err(CallError::Kernel(Status::WrongType))
        );
    }

    proptest! {
        #[test]
        fn decoding_any_message_never_panics_and_answers_always_reply(
            label in prop_oneof![0u32..8, any::<u32>()],
            words in proptest::collection::vec(any::<u64>(), 0..6),
            items in 0usize..3,
        ) {
            let mut message = Message::with_words(label, &words).unwrap();
            for index in 0..items {
                message.push_capability(Selector(index as u32), Selector(0), 0).unwrap();
            }
            match Request::decode(&message) {
                Ok(request) => prop_assert_eq!(request.encode(), message),
                Err(error) => prop_assert!(error.refusal() as u32 >= 1),
            }
            let reply = answer("fuzz", 0, &message);
            prop_assert!(reply.label() == REPLY_SUCCESS || reply.label() & REPLY_REFUSED != 0);
        }
    }
}
