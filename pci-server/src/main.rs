//! The pci-server binary: a ring-3 program init loads from its boot module into a domain of its
//! own. Its PCI logic lives in the host-tested `pci-core`; this file is the thin shell: it
//! starts, says hello to the iommu-server, tells init it is ready, and answers the common
//! protocol (`HELLO`) on its portals.
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
//!
//! Portals served (created by init, handled by this thread): one per client, whose portal id is
//! the client's number in init's start order (the vmm-server's is 3).
#![cfg_attr(target_os = "none", no_std, no_main)]

use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;

/// Selector of the iommu-server's portal.
pub const IOMMU_PORTAL: Selector = Selector(3);
/// Selector of the ECAM window (see the table above).
#[allow(dead_code)]
pub const ECAM_WINDOW: Selector = Selector(4);

#[cfg(target_os = "none")]
sluice_rt::entry!(run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_startup: Startup) {
    sluice_rt::log!("pci-server: started");
    match MessageBuffer::current() {
        Some(mut buffer) => sluice_rt::protocol::run_server(
            &mut buffer,
            "pci-server",
            Some((IOMMU_PORTAL, "iommu-server")),
            Selector(PARENT_PORTAL),
        ),
        None => sluice_rt::log!("pci-server: no UTCB recorded at entry"),
    }
}

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
