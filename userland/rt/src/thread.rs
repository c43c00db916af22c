//! Further threads of a program: a start trampoline and the two words its parent places at
//! the top of the new thread's stack.
//!
//! Convention: the new thread starts at [`trampoline`] with `rsp` 16-byte aligned,
//! `[rsp]` = the entry function ([`ThreadEntry`]) and `[rsp + 8]` = one argument word; RDI
//! holds the thread's UTCB (the kernel sets it). The trampoline calls
//! `entry(utcb, argument)` on a correctly aligned stack.

use crate::start::ArgumentsError;

/// What a further thread runs: its UTCB address and the argument word.
pub type ThreadEntry = extern "C" fn(utcb: u64, argument: u64) -> !;

/// The first instruction of a further thread (see the module documentation).
#[unsafe(naked)]
pub extern "C" fn trampoline() -> ! {
    core::arch::naked_asm!(
        "mov rax, [rsp]",
        "mov rsi, [rsp + 8]",
        "and rsp, -16",
        "call rax",
        "ud2",
    )
}

/// The address of [`trampoline`] (the new thread's instruction pointer).
pub fn trampoline_address() -> u64 {
    trampoline as *const () as u64
}

/// The initial stack of a further thread: its stack pointer and the 16 bytes to write there.
pub fn initial_stack(
    stack_top: u64,
    entry: ThreadEntry,
    argument: u64,
) -> Result<(u64, [u8; 16]), ArgumentsError> {
    if !stack_top.is_multiple_of(16) || stack_top < 16 {
        return Err(ArgumentsError::BadStackTop);
    }
    let mut bytes = [0u8; 16];
    let (first, second) = bytes.split_at_mut(8);
    first.copy_from_slice(&(entry as *const () as u64).to_le_bytes());
    second.copy_from_slice(&argument.to_le_bytes());
    Ok((stack_top - 16, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn never(_: u64, _: u64) -> ! {
        panic!("not run on the host")
    }

    #[test]
    fn initial_stack_holds_entry_and_argument() {
        let (stack_pointer, bytes) = initial_stack(0x7000_0000, never, 42).unwrap();
        assert_eq!(stack_pointer, 0x7000_0000 - 16);
        assert_eq!(
            u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            never as *const () as u64
        );
        assert_eq!(u64::from_le_bytes(bytes[8..].try_into().unwrap()), 42);
        assert_eq!(
            initial_stack(0x7000_0008, never, 0),
            Err(ArgumentsError::BadStackTop)
        );
        assert_ne!(trampoline_address(), 0);
    }
}
