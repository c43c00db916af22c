//! The probe's checks and the status each writes to the debug-exit port on failure. The status
//! is the run's result: 0 when every check passed, otherwise the number of the first check that
//! failed, or [`UNEXPECTED_EXCEPTION_BASE`] + vector when an exception nobody expected arrived.
use core::fmt;

/// Status written to the debug-exit port when every check passed.
pub const PASS_STATUS: u32 = 0;

/// Status of an unexpected exception or interrupt: this plus its vector (0x100..=0x1ff).
pub const UNEXPECTED_EXCEPTION_BASE: u32 = 0x100;

/// The status for an unexpected exception or interrupt on `vector`.
pub const fn unexpected_exception_status(vector: u8) -> u32 {
    UNEXPECTED_EXCEPTION_BASE + vector as u32
}

/// One check. The discriminant is its failure status; checks added later take the next free
/// number (statuses never change), so the order is not the order the probe runs them in
/// (`src/main.rs` lists that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Check {
    /// Long mode is active: CR0.PE and PG, CR4.PAE, CS is the 64-bit code selector.
    LongMode = 1,
    /// The 16550 UART: divisor latch and scratch register read back, THR empties.
    Uart = 2,
    /// CPUID: "SluiceSluice" hypervisor leaf, hypervisor bit set, VMX and SVM hidden.
    Cpuid = 3,
    /// The MMIO test device: ID, SCRATCH, COUNTER, DATA/CHECKSUM/WRITE_COUNT, RESET.
    Mmio = 4,
    /// MSRs: allowed MSRs read their policy values, an unknown MSR raises #GP(0).
    Msr = 5,
    /// HLT is woken by the VMM's timer interrupt, at least twice, and never while IF = 0.
    Timer = 6,
    /// The parameter block the VMM filled is well-formed.
    Parameters = 7,
    /// The probe itself panicked (a bug in the probe).
    Panic = 8,
    /// FPU/SSE state: XMM0..15, MXCSR and FCW keep their values across VM exits; with XSAVE,
    /// the guest's XSETBV is checked by the kernel (valid values taken, invalid ones #GP(0)).
    Fpu = 9,
    /// `probe.mode=fpu-stress`: the registers keep this guest's values for the whole run while
    /// other guests run on the same CPU.
    FpuStress = 10,
}

impl Check {
    /// Every check, in status order.
    pub const ALL: [Check; 10] = [
        Check::LongMode,
        Check::Uart,
        Check::Cpuid,
        Check::Mmio,
        Check::Msr,
        Check::Timer,
        Check::Parameters,
        Check::Panic,
        Check::Fpu,
        Check::FpuStress,
    ];

    /// The status written to the debug-exit port when this check fails.
    pub const fn status(self) -> u32 {
        self as u32
    }

    /// The name printed in `probe: FAIL <name> ...` and `probe: ok <name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Check::LongMode => "long-mode",
            Check::Uart => "uart",
            Check::Cpuid => "cpuid",
            Check::Mmio => "mmio",
            Check::Msr => "msr",
            Check::Timer => "timer",
            Check::Parameters => "parameters",
            Check::Panic => "panic",
            Check::Fpu => "fpu",
            Check::FpuStress => "fpu-stress",
        }
    }

    /// The check whose failure status is `status`, if any.
    pub fn from_status(status: u32) -> Option<Check> {
        Check::ALL
            .into_iter()
            .find(|check| check.status() == status)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_non_zero_and_round_trip() {
        for (index, check) in Check::ALL.into_iter().enumerate() {
            assert_ne!(check.status(), PASS_STATUS);
            assert_eq!(check.status(), index as u32 + 1, "{check}");
            assert_eq!(Check::from_status(check.status()), Some(check));
            assert!(check.status() < UNEXPECTED_EXCEPTION_BASE);
        }
        assert_eq!(Check::from_status(PASS_STATUS), None);
        assert_eq!(Check::from_status(11), None);
    }

    #[test]
    fn exception_statuses_do_not_collide_with_checks() {
        assert_eq!(unexpected_exception_status(0), 0x100);
        assert_eq!(unexpected_exception_status(13), 0x10d);
        assert_eq!(unexpected_exception_status(0xff), 0x1ff);
        assert_eq!(Check::from_status(unexpected_exception_status(6)), None);
    }

    #[test]
    fn names_are_distinct() {
        for a in Check::ALL {
            for b in Check::ALL {
                assert_eq!(a == b, a.name() == b.name());
            }
        }
    }
}

/// How an observed value was supposed to relate to the expected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Exactly equal.
    Equal,
    /// At least the expected value.
    AtLeast,
}

/// One observation that did not match: what was looked at, what was expected, what was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What was observed, in words (e.g. "CPUID.1:ECX hypervisor bit").
    pub what: &'static str,
    /// How `actual` had to relate to `expected`.
    pub relation: Relation,
    /// The expected value (or minimum).
    pub expected: u64,
    /// The value observed.
    pub actual: u64,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relation = match self.relation {
            Relation::Equal => "",
            Relation::AtLeast => "at least ",
        };
        write!(
            f,
            "{}: expected {relation}{:#x}, got {:#x}",
            self.what, self.expected, self.actual
        )
    }
}

/// `Ok` when `actual == expected`.
pub fn equal(what: &'static str, expected: u64, actual: u64) -> Result<(), Mismatch> {
    if actual == expected {
        Ok(())
    } else {
        Err(Mismatch {
            what,
            relation: Relation::Equal,
            expected,
            actual,
        })
    }
}

/// `Ok` when `actual >= minimum`.
pub fn at_least(what: &'static str, minimum: u64, actual: u64) -> Result<(), Mismatch> {
    if actual >= minimum {
        Ok(())
    } else {
        Err(Mismatch {
            what,
            relation: Relation::AtLeast,
            expected: minimum,
            actual,
        })
    }
}

#[cfg(test)]
mod mismatch_tests {
    use super::*;

    #[test]
    fn comparisons_pass_and_fail_as_stated() {
        assert_eq!(equal("x", 3, 3), Ok(()));
        let error = equal("ID register", 0x534c_5444, 0xffff_ffff).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ID register: expected 0x534c5444, got 0xffffffff"
        );
        assert_eq!(at_least("ticks", 2, 2), Ok(()));
        assert_eq!(at_least("ticks", 2, 7), Ok(()));
        let error = at_least("ticks", 2, 1).unwrap_err();
        assert_eq!(error.relation, Relation::AtLeast);
        assert_eq!(error.to_string(), "ticks: expected at least 0x2, got 0x1");
    }
}
