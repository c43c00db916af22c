//! Waiting for devices (reset recovery times, VF enable) by blocking on a private notification
//! with a timeout: the kernel counts timeouts in scheduler ticks of its LAPIC timer.
//!
//! The kernel offers no clock, so a tick's length is not known here. The waits only have to
//! be at least as long as asked, so [`TickDelay`] assumes the shortest tick any platform the
//! kernel supports has: one millisecond (`docs/kernel.md`: "every few milliseconds"). On QEMU
//! a tick is about 16 ms, so a 100 ms wait lasts about 1.6 s: safe, not fast. A kernel clock
//! would make these exact (see `docs/passthrough.md`, "What the kernel must still provide").

use pci_core::Delay;
use sluice_rt::abi::syscall::Selector;

/// The shortest scheduler tick assumed, in microseconds.
pub const ASSUMED_TICK_MICROSECONDS: u32 = 1000;

/// The ticks to wait for at least `microseconds` (at least one).
pub fn ticks_for(microseconds: u32) -> u64 {
    u64::from(microseconds.div_ceil(ASSUMED_TICK_MICROSECONDS)).max(1)
}

/// Waits on a notification nobody signals.
pub struct TickDelay {
    /// A notification only this thread waits on (with `WAIT`).
    pub notification: Selector,
}

impl Delay for TickDelay {
    fn delay_us(&mut self, microseconds: u32) {
        // Timeout is the expected answer: nobody else holds this notification, so no signal
        // can end the wait early.
        let _ = sluice_rt::sys::wait(self.notification, ticks_for(microseconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_whole_ticks() {
        assert_eq!(ticks_for(0), 1);
        assert_eq!(ticks_for(1), 1);
        assert_eq!(ticks_for(1000), 1);
        assert_eq!(ticks_for(1001), 2);
        assert_eq!(ticks_for(100_000), 100);
    }
}
