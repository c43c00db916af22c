//! Host fake of the system-call layer, so userland logic runs under `cargo test`. It records
//! every call (number and the six argument registers) per test thread, collects debug output,
//! and answers each call through a handler the test installs; a call without a handler answers
//! `UnknownSyscall` (except `debug_write`, which reads the caller's bytes and succeeds).
//! Handlers see the thread's fake UTCB, so `call` and `reply_and_wait` can be scripted.

extern crate std;
use sluice_abi::ipc::Utcb;
use sluice_abi::syscall::{Status, Syscall};
use std::boxed::Box;
use std::cell::RefCell;
use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;

use crate::sys::RawResult;

/// One recorded system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedCall {
    /// The call.
    pub call: Syscall,
    /// `rdi, rsi, rdx, r10, r8, r9` as the wrapper passed them.
    pub arguments: [u64; 6],
}

/// A test's answer to one call: `Ok(rdi)` or the refusal.
pub type Handler = Box<dyn FnMut([u64; 6], &mut Utcb) -> Result<u64, Status>>;

struct Fake {
    output: String,
    calls: Vec<RecordedCall>,
    handlers: HashMap<Syscall, Handler>,
    utcb: Box<Utcb>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            output: String::new(),
            calls: Vec::new(),
            handlers: HashMap::new(),
            utcb: Box::new(Utcb::empty()),
        }
    }
}

std::thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake::new());
}

/// Forgets recorded calls, output and handlers, and empties the UTCB.
pub fn reset() {
    FAKE.with(|fake| *fake.borrow_mut() = Fake::new());
}

/// Installs `handler` for `call` (replacing an earlier one).
pub fn set_handler(
    call: Syscall,
    handler: impl FnMut([u64; 6], &mut Utcb) -> Result<u64, Status> + 'static,
) {
    FAKE.with(|fake| {
        fake.borrow_mut().handlers.insert(call, Box::new(handler));
    });
}

/// Every call recorded since the last [`reset`], in order.
pub fn calls() -> Vec<RecordedCall> {
    FAKE.with(|fake| fake.borrow().calls.clone())
}

/// Takes everything this thread logged so far.
pub fn take_output() -> String {
    FAKE.with(|fake| core::mem::take(&mut fake.borrow_mut().output))
}

/// Runs `action` on this thread's fake UTCB.
pub fn with_utcb<R>(action: impl FnOnce(&mut Utcb) -> R) -> R {
    FAKE.with(|fake| action(&mut fake.borrow_mut().utcb))
}

fn result_of(answer: Result<u64, Status>) -> RawResult {
    match answer {
        Ok(result) => RawResult {
            status: Status::Success.as_raw(),
            result,
        },
        Err(status) => RawResult {
            status: status.as_raw(),
            result: 0,
        },
    }
}

/// The fake system call.
pub fn raw(call: Syscall, arguments: [u64; 6]) -> RawResult {
    let handler = FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        fake.calls.push(RecordedCall { call, arguments });
        fake.handlers.remove(&call)
    });
    let Some(mut handler) = handler else {
        return match call {
            Syscall::DebugWrite => debug_write(arguments),
            _ => result_of(Err(Status::UnknownSyscall)),
        };
    };
    // The handler runs with the fake unborrowed (it may log), on a copy of the UTCB.
    let mut utcb = with_utcb(|utcb| *utcb);
    let answer = handler(arguments, &mut utcb);
    FAKE.with(|fake| {
        let mut fake = fake.borrow_mut();
        *fake.utcb = utcb;
        fake.handlers.entry(call).or_insert(handler);
    });
    result_of(answer)
}

fn debug_write(arguments: [u64; 6]) -> RawResult {
    let (pointer, length) = (arguments[0] as usize as *const u8, arguments[1] as usize);
    // Like the kernel: the buffer must lie in the lower (user) half, at most 4096 bytes.
    let end = arguments[0].checked_add(arguments[1]);
    if pointer.is_null() || end.is_none_or(|end| end > 1 << 47) {
        return result_of(Err(Status::BadAddress));
    }
    if length > 4096 {
        return result_of(Err(Status::Overflow));
    }
    // SAFETY: on the host, `debug_write` passes a pointer and length taken from a live slice;
    // `debug_write_raw` is only used with a handler installed or on bare metal.
    let bytes = unsafe { core::slice::from_raw_parts(pointer, length) };
    FAKE.with(|fake| {
        fake.borrow_mut()
            .output
            .push_str(&String::from_utf8_lossy(bytes))
    });
    result_of(Ok(0))
}
