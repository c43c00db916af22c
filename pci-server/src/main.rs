//! The pci-server binary: a ring-3 program init loads from its boot module into a domain of its
//! own. Its PCI logic lives in the host-tested `pci-core`; this binary connects it to the
//! hardware and to its clients:
//!
//! 1. says hello to the iommu-server (the common protocol);
//! 2. maps the ECAM window bus by bus ([`ecam`]) and enumerates segment 0;
//! 3. checks the system description's assignments against what it found and refuses missing
//!    functions loudly ([`assignments`]); enables the SR-IOV virtual functions it assigns;
//! 4. prints the boot listing (`pci_core::listing`), reports every bridge's bus numbers to the
//!    iommu-server so that it can route devices behind DMAR bridge scopes
//!    ([`bridge_report`]), and puts every endpoint in the IOMMU's quarantine domain
//!    ([`iommu`]);
//! 5. tells init it is ready and serves `pci-api` requests and the common protocol
//!    ([`service`]).
//!
//! Capabilities init gives it (its table at start):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own protection domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | init's portal ([`sluice_rt::abi::boot::PARENT_PORTAL`]) | `CALL` |
//! | 3 | the iommu-server's portal | `CALL` |
//! | 4 | the ECAM window of PCI segment 0, buses start..=end (memory; empty when there is none) | `READ`, `WRITE` |
//! | 5 | the system description (boot module) | `READ` |
//! | 6..=15 | device windows BARs are carved from (at most `bars::MAX_WINDOWS`) | `READ`, `WRITE`, `RETYPE` |
//! | 16 | the kernel's interrupt lines, for routing owned functions' INTx ([`intx`]) | `RETYPE`, `ACKNOWLEDGE`, `REMAP` |
//!
//! Arguments ([`arguments`]): the ECAM base (bus 0); start bus, end bus, the number of device
//! windows and the first owner number in one word; then the windows' pages, packed.
//!
//! Portals served (created by init, handled by this thread): one per client, whose portal id is
//! the client's number in init's start order; for device owners it is their owner id.
#![cfg_attr(target_os = "none", no_std, no_main)]
// On the host only the host-tested modules are built; their start-up users are not.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

mod arguments;
mod assignments;
mod bars;
mod bridge_report;
mod delay;
mod description;
mod ecam;
mod intx;
#[cfg(test)]
mod intx_tests;
mod iommu;
mod irte_check;
mod msix;
#[cfg(test)]
mod msix_lifecycle_tests;
#[cfg(test)]
mod msix_tests;
mod service;
mod service_msi;

#[cfg(target_os = "none")]
mod server_main;

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
