//! What the exit dispatcher tells the run loop: resume with a reply, wait for an interrupt, or
//! stop with a report (reason, RIP, last exit) that the vmm-server prints.
use core::fmt;

use sluice_abi::vcpu::{Event, ExitReason, Mtd, Reply};

use crate::mmio::EmulationError;

/// The run loop's next step after an exit.
// The reply is kept inline: boxing it would cost a heap allocation on every exit.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Send this reply and resume the vCPU.
    Resume(Reply),
    /// The guest halted waiting for an interrupt that is not yet pending: advance time with
    /// [`crate::Vmm::tick`], then [`crate::Vmm::wake`] returns the action to take.
    WaitForInterrupt,
    /// Stop the VM.
    Stop(StopReport),
}

/// Why a VM was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the debug-exit port (0 = pass).
    DebugExit {
        /// The status written.
        status: u32,
    },
    /// Triple fault.
    TripleFault,
    /// Shutdown (SVM).
    Shutdown,
    /// VM entry failed on invalid guest state.
    InvalidGuestState {
        /// Hardware detail.
        detail: u64,
    },
    /// An exit the backend did not normalize.
    UnknownExit {
        /// Hardware detail.
        raw: u64,
    },
    /// An instruction could not be emulated.
    Emulation(EmulationError),
    /// The exit message lacks state groups the VMM requires.
    MissingState(Mtd),
    /// A memory fault arose while delivering an event, not from an instruction.
    FaultDuringEventDelivery(Event),
    /// HLT with interrupts disabled: the guest can never wake.
    HaltedWithInterruptsDisabled,
    /// HLT with no source of interrupts configured.
    HaltedWithNothingPending,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::DebugExit { status: 0 } => f.write_str("debug exit: pass"),
            StopReason::DebugExit { status } => write!(f, "debug exit: fail code {status}"),
            StopReason::TripleFault => f.write_str("triple fault"),
            StopReason::Shutdown => f.write_str("shutdown"),
            StopReason::InvalidGuestState { detail } => {
                write!(
                    f,
                    "VM entry failed: invalid guest state (detail {detail:#x})"
                )
            }
            StopReason::UnknownExit { raw } => write!(f, "unhandled exit (detail {raw:#x})"),
            StopReason::Emulation(error) => write!(f, "emulation failed: {error}"),
            StopReason::MissingState(mtd) => {
                write!(
                    f,
                    "exit message lacks required state groups {:#x}",
                    mtd.bits()
                )
            }
            StopReason::FaultDuringEventDelivery(event) => {
                write!(f, "memory fault while delivering {event:?}")
            }
            StopReason::HaltedWithInterruptsDisabled => f.write_str("HLT with interrupts disabled"),
            StopReason::HaltedWithNothingPending => f.write_str("HLT with no interrupt source"),
        }
    }
}

/// The report printed when a VM stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopReport {
    /// Why.
    pub reason: StopReason,
    /// Guest RIP at the last exit.
    pub rip: u64,
    /// The last exit's reason.
    pub last_exit: ExitReason,
    /// The last exit's raw hardware code.
    pub hardware_exit_code: u64,
    /// Exits handled in this VM's life.
    pub exits: u64,
}

impl StopReport {
    /// Whether the run passed (debug exit with status 0).
    pub fn passed(&self) -> bool {
        self.reason == StopReason::DebugExit { status: 0 }
    }
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at RIP {:#x}; last exit {:?} (hardware code {:#x}) after {} exits",
            self.reason, self.rip, self.last_exit, self.hardware_exit_code, self.exits
        )
    }
}
