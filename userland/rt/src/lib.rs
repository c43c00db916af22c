//! Userland runtime for Sluice programs: the `_start` entry with argument passing, one safe
//! wrapper per system call, UTCB messages, the common IPC protocol, the byte wire format of
//! the server APIs ([`wire`]), checked volatile memory windows ([`mmio`]), further threads,
//! and logging.
//!
//! On bare metal the wrappers execute `syscall` with the register convention of `sluice-abi`;
//! on the host (unit tests) they go to [`host`], a recording fake whose answers tests script,
//! so the same code runs under `cargo test`.
#![cfg_attr(not(test), no_std)]

pub mod log;
pub mod message;
pub mod mmio;
pub mod protocol;
pub mod start;
pub mod sys;
pub mod thread;
pub mod types;
pub mod utcb;
pub mod wire;

#[cfg(not(target_os = "none"))]
pub mod host;

pub use sluice_abi as abi;

#[cfg(test)]
mod wrapper_tests;

/// Defines the program entry point `_start` and the panic handler.
///
/// - `entry!(main)`: a program started by its parent. RDI is its UTCB (recorded for
///   [`utcb::MessageBuffer::current`]) and the parent's argument block is at the initial RSP.
/// - `entry!(root main)`: init. RDI is the boot-information page; the UTCB is at
///   `sluice_abi::boot::INIT_UTCB`.
///
/// `main` is a `fn(start::Startup)`; when it returns the thread ends ([`sys::exit`]). `_start`
/// is naked: it passes the initial RSP in RSI and aligns the stack to 16 bytes before calling
/// Rust code (System V AMD64 ABI, section 3.2.2).
#[macro_export]
macro_rules! entry {
    (root $main:path) => {
        $crate::entry!(@define $main, |_register: u64| $crate::abi::boot::INIT_UTCB);
    };
    ($main:path) => {
        $crate::entry!(@define $main, |register: u64| register);
    };
    (@define $main:path, $utcb:expr) => {
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "mov rsi, rsp",
                "and rsp, -16",
                "call {begin}",
                "ud2",
                begin = sym __sluice_begin,
            )
        }

        extern "C" fn __sluice_begin(register: u64, stack_pointer: u64) -> ! {
            let utcb: fn(u64) -> u64 = $utcb;
            $crate::utcb::install_first_thread_utcb(utcb(register));
            $main($crate::start::Startup {
                register,
                stack_pointer,
            });
            $crate::sys::exit()
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::log!("panic: {}", info.message());
            $crate::sys::exit()
        }
    };
}
