//! Pure kernel logic, tested on the host: everything the kernel learns from bytes it did not
//! write (the Multiboot2 information, ACPI tables, CPUID/MSR values, its command line) is
//! decoded here, so the bare-metal binary only gathers raw inputs and acts on typed results.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod bytes;
pub mod cmdline;
pub mod cpu_features;
pub mod elf;
pub mod frames;
pub mod ioapic;
pub mod multiboot2;
