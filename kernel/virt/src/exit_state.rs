//! Which state groups a vCPU's exits carry, per exit reason (NOVA's per-portal message transfer
//! descriptor): every exit carries [`BASE_STATE`]; the VMM may add groups for each reason with
//! `vcpu_control(vcpu, VCPU_SET_EXIT_STATE, reason, groups)` (`sluice_abi::vcpu`).
//!
//! The kernel asks [`ExitStateTable::base_only`] once per exit, so a vCPU whose VMM never
//! added anything pays one test and its exits keep the fixed-offset encoders.
use sluice_abi::vcpu::{ExitReason, Mtd, ALL_EXIT_REASONS, MAX_EXIT_REASON_CODE};

use crate::state::BASE_STATE;

/// Why a choice of exit state was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStateError {
    /// The reason is neither an `ExitReason` code nor `ALL_EXIT_REASONS`.
    UnknownReason(u64),
}

impl core::fmt::Display for ExitStateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExitStateError::UnknownReason(reason) => write!(
                f,
                "exit reason {reason} is neither an exit reason code (1..={MAX_EXIT_REASON_CODE}) nor {ALL_EXIT_REASONS} (every reason)"
            ),
        }
    }
}

const SLOTS: usize = MAX_EXIT_REASON_CODE as usize + 1;

/// The groups each exit reason carries beyond [`BASE_STATE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStateTable {
    /// Indexed by `ExitReason::code`; slot 0 is unused.
    extra: [Mtd; SLOTS],
    /// Whether any slot holds more than the base state.
    any: bool,
}

impl Default for ExitStateTable {
    fn default() -> Self {
        ExitStateTable::new()
    }
}

impl ExitStateTable {
    /// Every reason carries the base state only.
    pub const fn new() -> Self {
        ExitStateTable {
            extra: [Mtd::empty(); SLOTS],
            any: false,
        }
    }

    /// Exits of `reason` (a code, or `ALL_EXIT_REASONS`) carry `groups` on top of the base from
    /// now on, replacing an earlier choice for it.
    pub fn set(&mut self, reason: u64, groups: Mtd) -> Result<(), ExitStateError> {
        let extra = groups.difference(BASE_STATE);
        if reason == ALL_EXIT_REASONS {
            self.extra = [extra; SLOTS];
        } else {
            let slot = usize::try_from(reason)
                .ok()
                .filter(|&slot| slot < SLOTS)
                .and_then(|slot| self.extra.get_mut(slot))
                .ok_or(ExitStateError::UnknownReason(reason))?;
            *slot = extra;
        }
        self.any = self
            .extra
            .iter()
            .skip(1)
            .any(|groups| *groups != Mtd::empty());
        Ok(())
    }

    /// True while no reason carries more than the base state.
    #[inline]
    pub fn base_only(&self) -> bool {
        !self.any
    }

    /// The groups exits of `reason` carry.
    pub fn groups(&self, reason: &ExitReason) -> Mtd {
        let extra = self
            .extra
            .get(reason.code() as usize)
            .copied()
            .unwrap_or_default();
        BASE_STATE.union(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_state_until_the_vmm_adds_groups() {
        let mut table = ExitStateTable::new();
        assert!(table.base_only());
        assert_eq!(table.groups(&ExitReason::Cpuid), BASE_STATE);
        let tables = Mtd::DESCRIPTOR_TABLES | Mtd::SEGMENT_FS_GS;
        table
            .set(u64::from(ExitReason::TripleFault.code()), tables)
            .unwrap();
        assert!(!table.base_only());
        assert_eq!(table.groups(&ExitReason::TripleFault), BASE_STATE | tables);
        assert_eq!(
            table.groups(&ExitReason::Cpuid),
            BASE_STATE,
            "other reasons unchanged"
        );
        // Groups already in the base change nothing; 0 goes back to the base.
        table
            .set(u64::from(ExitReason::TripleFault.code()), Mtd::RIP)
            .unwrap();
        assert!(table.base_only());
    }

    #[test]
    fn every_reason_at_once_and_refusals_change_nothing() {
        let mut table = ExitStateTable::new();
        table.set(ALL_EXIT_REASONS, Mtd::ALL).unwrap();
        assert_eq!(table.groups(&ExitReason::Hlt), Mtd::ALL);
        assert_eq!(table.groups(&ExitReason::Preempted), Mtd::ALL);
        let before = table;
        let past = u64::from(MAX_EXIT_REASON_CODE) + 1;
        assert_eq!(
            table.set(past, Mtd::empty()),
            Err(ExitStateError::UnknownReason(past))
        );
        assert_eq!(
            table.set(u64::MAX, Mtd::empty()),
            Err(ExitStateError::UnknownReason(u64::MAX))
        );
        assert_eq!(table, before);
        assert!(ExitStateError::UnknownReason(99).to_string().contains("99"));
        table.set(ALL_EXIT_REASONS, Mtd::empty()).unwrap();
        assert!(table.base_only());
    }
}
