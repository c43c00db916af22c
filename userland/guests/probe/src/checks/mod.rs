//! The checks the probe runs after the UART, in order; each returns the first [`Mismatch`] it
//! finds. Their failure statuses are [`guest_probe::check::Check`].
pub mod cpuid;
pub mod fpu;
pub mod long_mode;
pub mod mmio;
pub mod msr;
pub mod timer;
