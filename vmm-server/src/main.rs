//! The vmm-server binary: a ring-3 program init loads from its boot module into a domain of its
//! own, one per guest. Its platform logic lives in the host-tested `vmm-core`; this binary says
//! hello to the pci-server, tells init it is ready, loads and runs its guest (guest.rs), reports
//! the guest's end to init (`GUEST_DONE`), then answers the common protocol on its portals.
//!
//! Capabilities init gives it (its table at start):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own protection domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | init's portal ([`sluice_rt::abi::boot::PARENT_PORTAL`]) | `CALL` |
//! | 3 | the pci-server's portal | `CALL` |
//! | 4 | the guest's RAM (when it runs a guest) | every memory right |
//! | 5 | the built-in guest image (boot module `guest-probe`) | `READ` |
//! | 6 | the system description (boot module `sysdesc`) | `READ` |
//!
//! Arguments (the block on its stack, `sluice_rt::start`): word 0 = the index of its guest in
//! the system description (`u64::MAX`: no guest).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod heap;

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
    let guest = match unsafe { startup.arguments() } {
        Ok(arguments) => arguments.get(0),
        Err(error) => {
            sluice_rt::log!("vmm-server: bad argument block: {error}");
            None
        }
    };
    let Some(mut buffer) = MessageBuffer::current() else {
        sluice_rt::log!("vmm-server: no UTCB recorded at entry");
        return;
    };
    match sluice_rt::protocol::hello(&mut buffer, PCI_PORTAL) {
        Ok(version) => sluice_rt::log!("vmm-server: pci-server answered hello: version {version}"),
        Err(error) => sluice_rt::log!("vmm-server: hello to pci-server failed: {error}"),
    }
    if let Err(error) = sluice_rt::protocol::ready(&mut buffer, Selector(PARENT_PORTAL)) {
        sluice_rt::log!("vmm-server: ready to init failed: {error}");
    }
    match guest {
        Some(index) if index != u64::MAX => run_guest(index, &mut buffer),
        _ => sluice_rt::log!("vmm-server: no guest to run"),
    }
    sluice_rt::protocol::serve(&mut buffer, "vmm-server")
}

#[cfg(target_os = "none")]
fn run_guest(index: u64, buffer: &mut MessageBuffer) {
    heap::init();
    let (status, exits) = match guest::run(index, buffer) {
        Ok(outcome) => (outcome.status, outcome.exits),
        Err(error) => {
            sluice_rt::log!("vmm-server: guest {index} could not run: {error}");
            (0x2_0000, 0)
        }
    };
    let done = sluice_rt::protocol::Request::GuestDone {
        guest: index,
        status,
        exits,
    };
    if let Err(error) = sluice_rt::protocol::request(buffer, Selector(PARENT_PORTAL), done, 0) {
        sluice_rt::log!("vmm-server: reporting guest {index} to init failed: {error}");
    }
}

#[cfg(not(target_os = "none"))]
fn run_guest(_index: u64, _buffer: &mut MessageBuffer) {}

/// On the host the program has nothing to run (it is built for x86_64-unknown-none).
#[cfg(not(target_os = "none"))]
fn main() {}
