//! Check 6 (`timer`): HLT is woken by the VMM's timer interrupt on
//! [`TIMER_VECTOR`](guest_probe::layout::TIMER_VECTOR). No tick may
//! arrive while IF = 0 (the probe runs with interrupts off until here); then `STI; HLT` is
//! repeated until at least [`REQUIRED_TICKS`] ticks were counted, at most [`MAXIMUM_HALTS`]
//! times. `STI` delays interrupts by one instruction (SDM Vol. 3A section 6.8.3), so none can
//! slip in between it and the HLT.
use core::arch::asm;

use guest_probe::check::{at_least, equal, Mismatch};

use crate::interrupts::timer_ticks;

/// Ticks the check waits for.
pub const REQUIRED_TICKS: u64 = 2;
/// Bound on HLTs: any wake-up that is not a timer tick still counts against it.
const MAXIMUM_HALTS: u32 = 1000;

/// What the check observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Ticks counted.
    pub ticks: u64,
    /// HLT instructions executed.
    pub halts: u32,
}

/// Runs the check.
pub fn run() -> Result<Observation, Mismatch> {
    equal("timer interrupts taken while IF = 0", 0, timer_ticks())?;
    let mut halts = 0;
    while timer_ticks() < REQUIRED_TICKS && halts < MAXIMUM_HALTS {
        halts += 1;
        // SAFETY: the IDT has a gate for TIMER_VECTOR (descriptors.rs); interrupts are
        // disabled again before any other code runs.
        // Not `nomem`: the interrupt handler writes the tick count while this runs.
        unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
    }
    let ticks = timer_ticks();
    at_least("timer interrupts after STI; HLT", REQUIRED_TICKS, ticks)?;
    Ok(Observation { ticks, halts })
}
