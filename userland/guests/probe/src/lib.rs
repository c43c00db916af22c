//! The probe guest's contract with the VMM that runs it, as pure, host-tested code: the fixed
//! layout and device constants ([`layout`]), the exit status of every check ([`check`]), the
//! parameter block the VMM fills before starting the guest ([`parameters`]) and the register
//! patterns of the FPU check ([`fpu`]).
//!
//! The bare-metal guest itself is the `guest-probe` binary of this crate (`src/main.rs`); it
//! reads every address, port and vector from here, and the host tests check the built image
//! against the same values.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod check;
pub mod fpu;
pub mod layout;
pub mod parameters;
