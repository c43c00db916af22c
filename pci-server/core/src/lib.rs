//! PCI logic (enumeration, BARs, capabilities, groups, resets, ownership) behind a
//! config-space trait.
//!
//! Everything here talks to hardware only through [`ConfigSpace`] (config reads/writes),
//! [`Delay`] (bounded waits), [`msi::MsixTable`] (MSI-X table MMIO) and
//! [`ownership::IommuBinding`] (domain attachment, done over IPC by the server binary), so it
//! all runs under `cargo test` against the behavioural fakes in [`fake`] (feature `fake`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "fake"))]
extern crate alloc;

pub mod acs;
pub mod alias;
pub mod bar;
pub mod capability;
pub mod class_name;
pub mod config_space;
pub mod ecam;
pub mod filter;
pub mod function;
pub mod group;
pub mod intx;
pub mod inventory;
pub mod listing;
pub mod msi;
pub mod msix;
pub mod ownership;
pub mod registers;
pub mod reset;
pub mod reset_exec;
pub mod saved_state;
pub mod sriov;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use config_space::{AccessWidth, ConfigSpace, Delay, CONFIG_SPACE_SIZE};
pub use ecam::{EcamError, EcamRegion, HostPhys};
pub use function::{BusNumbers, FunctionInfo, HeaderKind};
pub use inventory::{EnumerationOptions, Inventory, TopologyError};
pub use pci_api::{Bdf, OwnerId};

#[cfg(test)]
mod tests;
