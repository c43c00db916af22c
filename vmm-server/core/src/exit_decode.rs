//! Decoding each exit message into one [`ExitMessage`] that a run loop keeps for the guest's
//! whole run, so that no exit builds, zeroes or moves a fresh message and state
//! ([`ExitMessage::decode_into`]). [`crate::Vmm::handle_exit`] answers the result exactly as it
//! answers [`ExitMessage::from_words`] of the same words (the tests compare the two).
use sluice_abi::vcpu::{DecodeError, ExitMessage, ExitReason, VcpuState};

use crate::vmm::REQUIRED_STATE;

/// An exit message to decode into (reason `Preempted`, no state groups).
pub fn empty_exit() -> ExitMessage {
    ExitMessage {
        reason: ExitReason::Preempted,
        instruction_length: None,
        hardware_exit_code: 0,
        state: VcpuState::default(),
    }
}

/// Decodes the exit message in `words` into `exit`, in place, with the checks and errors of
/// [`ExitMessage::from_words`] (on error `exit` is partly written and must not be handled).
///
/// [`crate::Vmm::handle_exit`] reads only the groups of [`REQUIRED_STATE`], and only after it
/// has checked that they are present, so the fields of other groups, left from earlier exits,
/// are never seen. An exit that lacks a required group (which the handler stops on, reporting
/// its RIP) is decoded afresh, so that the report holds what a fresh decode gives.
pub fn decode_exit_into(words: &[u64], exit: &mut ExitMessage) -> Result<(), DecodeError> {
    exit.decode_into(words)?;
    if !exit.state.mtd.contains(REQUIRED_STATE) {
        *exit = ExitMessage::from_words(words)?;
    }
    Ok(())
}
