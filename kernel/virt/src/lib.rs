//! The pure, host-tested half of the kernel's CPU-virtualization backends.
//!
//! The kernel binary keeps only the privileged instructions (VMXON, VMREAD/VMWRITE,
//! VMLAUNCH/VMRESUME, INVEPT/INVVPID on Intel; VMRUN on AMD) and calls this crate for
//! everything else:
//!
//! - [`vmx`]: typed VMCS field encodings and control bits, control adjustment against the
//!   capability MSRs, exit decoding into [`sluice_abi::vcpu::ExitMessage`] and the plan of VMCS
//!   writes that applies a [`sluice_abi::vcpu::Reply`].
//! - [`svm`]: the VMCB layout as typed offsets over a 4 KiB page, intercept bits, exit decoding
//!   and reply application.
//! - [`nested_paging`]: EPT and NPT builders generic over table memory and a frame source.
//! - [`asid`]: per-CPU ASID / VPID allocation with generation-based flushes.
//! - [`xsave`]: the host's XCR0 and the checks of a guest's XSETBV.
//!
//! [`state`], [`error`] and [`exit_state`] (the state groups each exit reason carries) hold what
//! both backends share.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod address;
pub mod asid;
pub mod error;
pub mod exit_state;
pub mod nested_paging;
pub mod state;
pub mod svm;
pub mod vmx;
pub mod xsave;

#[cfg(test)]
mod tests;

pub use address::{GuestPhys, HostPhys};
pub use error::{ExitError, ReplyError};
pub use exit_state::{ExitStateError, ExitStateTable};
pub use state::{ExitHeader, SavedRegisters, BASE_STATE};
