//! How a run ends: the final log line, then the emulator's exit device or a halt on bare metal.
//! `cargo xtask run` judges a run by these lines (docs/testing.md), so their text is a contract.

use core::sync::atomic::{AtomicU8, Ordering};
use kernel_core::cmdline::ExitDevice;
use x86::io::outb;

/// QEMU `isa-debug-exit` port (`-device isa-debug-exit,iobase=0xf4`): status = (value << 1) | 1.
const QEMU_EXIT_PORT: u16 = 0xf4;
const QEMU_EXIT_SUCCESS: u8 = 0x10; // exit status 33
const QEMU_EXIT_FAILURE: u8 = 0x11; // exit status 35
/// Bochs shutdown port: writing "Shutdown" ends the simulation (Bochs iodev/unmapped.cc).
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

static EXIT_DEVICE: AtomicU8 = AtomicU8::new(0);

/// Why the system stops.
pub enum Outcome {
    /// Everything the system was asked to do completed.
    Success,
    /// A fatal error; the reason is printed.
    Failure(&'static str),
}

/// Chooses the exit device from the command line.
pub fn set_exit_device(device: ExitDevice) {
    let code = match device {
        ExitDevice::Halt => 0,
        ExitDevice::Qemu => 1,
        ExitDevice::Bochs => 2,
    };
    EXIT_DEVICE.store(code, Ordering::Relaxed);
}

/// Prints the final line and ends the run; never returns.
pub fn stop(outcome: Outcome) -> ! {
    let success = match outcome {
        Outcome::Success => {
            kprintln!("sluice: shutdown: clean");
            true
        }
        Outcome::Failure(reason) => {
            kprintln!("sluice: halted: {reason}");
            false
        }
    };
    crate::serial::drain();
    match EXIT_DEVICE.load(Ordering::Relaxed) {
        1 => {
            let value = if success {
                QEMU_EXIT_SUCCESS
            } else {
                QEMU_EXIT_FAILURE
            };
            // SAFETY: the command line said this runs under QEMU with isa-debug-exit at 0xf4.
            unsafe { outb(QEMU_EXIT_PORT, value) };
        }
        2 => {
            for byte in *b"Shutdown" {
                // SAFETY: the command line said this runs under Bochs, whose port 0x8900 shuts down.
                unsafe { outb(BOCHS_SHUTDOWN_PORT, byte) };
            }
        }
        _ => {}
    }
    halt_forever()
}

/// Disables interrupts and halts this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping the CPU; nothing is expected to run after this.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
