//! A fake clock that advances a fixed step on every read, so bounded waits end without any real
//! time passing.

use crate::clock::Clock;

/// Advances `step` nanoseconds per [`Clock::now`] call.
#[derive(Clone, Debug)]
pub struct FakeClock {
    /// Current time.
    pub now: u64,
    /// Advance per read.
    pub step: u64,
    /// Number of reads so far.
    pub reads: u64,
}

impl Default for FakeClock {
    fn default() -> Self {
        Self {
            now: 0,
            step: 1_000,
            reads: 0,
        }
    }
}

impl Clock for FakeClock {
    fn now(&mut self) -> u64 {
        self.reads += 1;
        self.now = self.now.saturating_add(self.step);
        self.now
    }
}
