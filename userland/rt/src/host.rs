//! Host fake of the system-call layer: debug output is collected per thread so unit tests of
//! userland logic can check what a program logged; other calls answer `UnknownSyscall` unless a
//! test installs a handler.

extern crate std;
use sluice_abi::syscall::{Status, Syscall};
use std::cell::RefCell;
use std::string::String;

std::thread_local! {
    static OUTPUT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The fake system call.
pub fn raw(call: Syscall, args: [u64; 6]) -> u64 {
    match call {
        Syscall::DebugWrite => {
            let (pointer, length) = (args[0] as usize as *const u8, args[1] as usize);
            // SAFETY: on the host the wrappers pass a pointer and length taken from a live slice.
            let bytes = unsafe { core::slice::from_raw_parts(pointer, length) };
            OUTPUT.with(|out| out.borrow_mut().push_str(&String::from_utf8_lossy(bytes)));
            Status::Success as u64
        }
        _ => Status::UnknownSyscall as u64,
    }
}

/// Takes everything this thread logged so far.
pub fn take_output() -> String {
    OUTPUT.with(|out| core::mem::take(&mut *out.borrow_mut()))
}
