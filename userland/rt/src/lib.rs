//! Userland runtime for Sluice programs: the `_start` entry, system-call wrappers and logging.
//!
//! On bare metal the wrappers execute `syscall` with the register convention of `sluice-abi`;
//! on the host (unit tests of server logic) they go to [`host`], a fake that records output, so
//! the same code runs under `cargo test`.
#![cfg_attr(not(test), no_std)]

pub mod log;
pub mod sys;

#[cfg(not(target_os = "none"))]
pub mod host;

/// Defines the program entry point: `_start` calls `$main`, then ends the thread.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn _start() -> ! {
            $main();
            $crate::sys::exit()
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::log!("panic: {}", info.message());
            $crate::sys::exit()
        }
    };
}
