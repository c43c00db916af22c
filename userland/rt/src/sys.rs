//! System-call wrappers. Register convention (sluice-abi): `rax` = call number, arguments in
//! `rdi, rsi, rdx, r10, r8, r9`; `rax` returns the status. `syscall` clobbers `rcx` and `r11`.

use sluice_abi::syscall::{Status, Syscall, ThreadOperation};

/// Issues a system call with up to six arguments.
#[cfg(target_os = "none")]
pub fn raw(call: Syscall, args: [u64; 6]) -> u64 {
    let status: u64;
    // SAFETY: `syscall` transfers to the kernel, which validates every argument (user addresses
    // are allegations it checks); only the registers named here are changed.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call as u64 => status,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    status
}

#[cfg(not(target_os = "none"))]
pub use crate::host::raw;

fn status(raw_status: u64) -> Result<(), Status> {
    match Status::from_raw(raw_status) {
        Some(Status::Success) => Ok(()),
        Some(error) => Err(error),
        None => Err(Status::InvalidArgument),
    }
}

/// Writes bytes to the kernel debug console.
pub fn debug_write(bytes: &[u8]) -> Result<(), Status> {
    status(raw(
        Syscall::DebugWrite,
        [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0, 0],
    ))
}

/// Ends the calling thread: suspends it for good (a suspended thread never runs again unless
/// its domain's owner resumes it).
pub fn exit() -> ! {
    loop {
        // Suspend the calling thread (selector 0 names the caller's own thread by convention).
        let _ = raw(
            Syscall::ThreadControl,
            [0, ThreadOperation::Suspend as u64, 0, 0, 0, 0],
        );
        core::hint::spin_loop();
    }
}
