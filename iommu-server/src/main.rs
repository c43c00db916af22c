//! The iommu-server binary: a ring-3 program init loads from its boot module into a domain of
//! its own. Its VT-d logic lives in the host-tested `iommu-core`; this file is the thin shell:
//! it starts, tells init it is ready, and answers the common protocol (`HELLO`) on its portals.
//!
//! Capabilities init gives it (its table at start):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own protection domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | init's portal ([`sluice_rt::abi::boot::PARENT_PORTAL`]) | `CALL` |
//! | 3 | the first DMAR unit's register page (memory, 4 KiB; empty when the machine has no VT-d) | `READ`, `WRITE` |
//!
//! Portals served (created by init, handled by this thread): one per client, whose portal id is
//! the client's number in init's start order (the pci-server's is 2).
#![cfg_attr(target_os = "none", no_std, no_main)]

use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;

/// Selector of the DMAR unit's register page (see the table above).
#[allow(dead_code)]
pub const DMAR_REGISTERS: Selector = Selector(3);

#[cfg(target_os = "none")]
sluice_rt::entry!(run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(_startup: Startup) {
    sluice_rt::log!("iommu-server: started");
    match MessageBuffer::current() {
        Some(mut buffer) => sluice_rt::protocol::run_server(
            &mut buffer,
            "iommu-server",
            None,
            Selector(PARENT_PORTAL),
        ),
        None => sluice_rt::log!("iommu-server: no UTCB recorded at entry"),
    }
}

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
