//! A simple periodic virtual timer: the run loop calls [`VirtualTimer::tick`] with elapsed
//! ticks (from whatever clock it has); every `period` ticks the timer becomes pending, and the
//! exit dispatcher injects its vector when the guest can take an interrupt. Expiries while one is
//! already pending coalesce into one, like an edge-triggered line.

/// Timer configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// Interrupt vector injected on expiry.
    pub vector: u8,
    /// Ticks between expiries (0 disables the timer).
    pub period: u64,
}

/// The timer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualTimer {
    config: TimerConfig,
    until_expiry: u64,
    pending: bool,
}

impl VirtualTimer {
    /// A timer that first expires after one period.
    pub fn new(config: TimerConfig) -> VirtualTimer {
        VirtualTimer {
            config,
            until_expiry: config.period,
            pending: false,
        }
    }

    /// Advances time by `ticks`.
    pub fn tick(&mut self, ticks: u64) {
        if self.config.period == 0 || ticks == 0 {
            return;
        }
        if ticks >= self.until_expiry {
            self.pending = true;
            let overshoot = (ticks - self.until_expiry) % self.config.period;
            self.until_expiry = self.config.period - overshoot;
        } else {
            self.until_expiry -= ticks;
        }
    }

    /// Whether an expiry waits for delivery.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Takes the pending expiry, returning its vector.
    pub fn take(&mut self) -> Option<u8> {
        core::mem::take(&mut self.pending).then_some(self.config.vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_every_period_and_coalesces() {
        let mut timer = VirtualTimer::new(TimerConfig {
            vector: 0x20,
            period: 10,
        });
        timer.tick(9);
        assert!(!timer.pending());
        timer.tick(1);
        assert_eq!(timer.take(), Some(0x20));
        assert_eq!(timer.take(), None);
        timer.tick(35);
        assert_eq!(timer.take(), Some(0x20), "three expiries coalesce");
        timer.tick(4);
        assert!(!timer.pending());
        timer.tick(1);
        assert!(timer.pending(), "phase kept after overshoot: 35 + 5 = 40");
        let mut disabled = VirtualTimer::new(TimerConfig {
            vector: 0x20,
            period: 0,
        });
        disabled.tick(u64::MAX);
        assert!(!disabled.pending());
    }
}
