//! Guest platform logic of the per-guest vmm-server, host-tested: the byte-level device buses,
//! device models (16550 UART, MMIO test device, debug-exit port), x86 instruction emulation for
//! MMIO and port I/O exits (decoded with iced-x86), CPUID and MSR policy, a virtual timer, the
//! guest page walk, and the exit dispatcher [`Vmm::handle_exit`].
//!
//! Everything here is pure: hardware and the kernel are reached only through the exit message
//! ([`sluice_abi::vcpu`]) and the traits [`GuestMemory`], [`HostCpuid`] and [`BusDevice`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

// iced-x86's decoder allocates; the vmm-server binary provides the global allocator.
extern crate alloc;

pub mod bus;
pub mod cpuid;
pub mod debug_exit;
pub mod exit_decode;
pub mod fixed_length;
pub mod memory;
pub mod mmio;
pub mod msr;
pub mod port_io;
pub mod registers;
pub mod report;
pub mod sinks;
pub mod test_device;
pub mod timer;
pub mod uart;
pub mod vmm;

pub use bus::{AccessError, Bus, BusDevice, BusError, BusKind, UnhandledAccess};
pub use cpuid::{CpuidPolicy, CpuidValues, HostCpuid};
pub use exit_decode::{decode_exit_into, empty_exit};
pub use memory::{GuestMemory, MemoryError, SliceMemory};
pub use report::{ExitAction, StopReason, StopReport};
pub use vmm::{Vmm, VmmConfig, REQUIRED_STATE};
