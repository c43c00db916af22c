//! The vmm-server binary: a ring-3 program init loads from its boot module into a domain of its
//! own (one per guest). Its platform logic lives in the host-tested `vmm-core`; this file is the
//! thin shell: it starts, says hello to the pci-server, tells init it is ready, and answers the
//! common protocol (`HELLO`) on its portals.
//!
//! Capabilities init gives it (its table at start):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own protection domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | init's portal ([`sluice_rt::abi::boot::PARENT_PORTAL`]) | `CALL` |
//! | 3 | the pci-server's portal | `CALL` |
//!
//! Arguments (the block on its stack, `sluice_rt::start`): word 0 = the index of its guest in
//! the system description.
#![cfg_attr(target_os = "none", no_std, no_main)]

use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;

/// Selector of the pci-server's portal.
pub const PCI_PORTAL: Selector = Selector(3);

#[cfg(target_os = "none")]
sluice_rt::entry!(run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(startup: Startup) {
    sluice_rt::log!("vmm-server: started");
    // SAFETY: init starts every vmm-server with an argument block (sluice_rt::start).
    match unsafe { startup.arguments() } {
        Ok(arguments) => match arguments.get(0) {
            Some(guest) => sluice_rt::log!("vmm-server: serving guest {guest}"),
            None => sluice_rt::log!("vmm-server: no guest index given"),
        },
        Err(error) => sluice_rt::log!("vmm-server: bad argument block: {error}"),
    }
    match MessageBuffer::current() {
        Some(mut buffer) => sluice_rt::protocol::run_server(
            &mut buffer,
            "vmm-server",
            Some((PCI_PORTAL, "pci-server")),
            Selector(PARENT_PORTAL),
        ),
        None => sluice_rt::log!("vmm-server: no UTCB recorded at entry"),
    }
}

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
