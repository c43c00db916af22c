//! The iommu-server binary: a ring-3 program init loads from its boot module into a domain of
//! its own. Its VT-d logic lives in the host-tested `iommu-core`; this binary connects it to
//! the hardware and to its clients:
//!
//! 1. maps the ACPI DMAR table, parses it and checks which unit covers which device
//!    (`iommu_core::dmar::Topology`), then maps the register page of every unit init gave it
//!    one for (a unit without one is logged as not brought up and its devices are refused);
//! 2. brings each unit up in frames of the RAM init gave it ([`bringup`], [`hardware`]): root
//!    table, queued invalidation, fault reporting to its fault-event line, the interrupt
//!    remapping table, then the quarantine domain shared by all units, translation on;
//! 3. starts a fault-watcher thread that waits on that line's notification and calls the
//!    main thread, which reads and clears every unit's fault records, logs each as
//!    `iommu: fault bdf=BB:DD.F addr=0x... kind=read|write reason=0xNN (name)` and queues it
//!    for the device's owner (whose notification it signals);
//! 4. tells init it is ready and serves `iommu-api` ([`service`], checked by [`policy`]) and
//!    the common protocol; the pci-server's report of the bridges' bus numbers resolves the
//!    DMAR's bridge scopes and re-routes devices before the first is placed ([`bridges`]).
//!
//! Capabilities init gives it (its table at start):
//!
//! | selector | what | rights |
//! |---|---|---|
//! | 0 | its own protection domain | `CREATE_THREAD`, `MAP` |
//! | 1 | its own thread | `CONTROL`, `BIND_PORTAL` |
//! | 2 | init's portal ([`sluice_rt::abi::boot::PARENT_PORTAL`]) | `CALL` |
//! | 3 | the first DMAR unit's register page (empty when the machine has no VT-d) | `READ`, `WRITE` |
//! | 4 | the ACPI DMAR table (firmware capability `acpi-dmar`) | `READ` |
//! | 5 | 256 KiB of RAM for its tables | `READ`, `WRITE`, `DMA_MAP` |
//! | 6 | a notification its fault-event line is bound to (bit 0) | `WAIT` |
//! | 7 | that bound interrupt line | `ACKNOWLEDGE` |
//! | 8 | RAM for the fault watcher's stack and UTCB | `READ`, `WRITE` |
//! | 9..=15 | the register pages of DMAR units 1..=7 in DMAR order (each empty when init did not hand it out) | `READ`, `WRITE` |
//!
//! Arguments: the fault-event line, the pci-server's portal id, the first owner's portal id,
//! the first owner's MSI line, 1 if passthrough without interrupt remapping is allowed, the
//! DMAR table's offset in its first page, and its length.
//!
//! Portals served (created by init, handled by this thread): one per client, whose portal id is
//! the client's number in init's start order (the pci-server's is 2), plus the watcher's.
#![cfg_attr(target_os = "none", no_std, no_main)]
// On the host only the host-tested modules are built; their start-up users are not.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

mod bridges;
mod bringup;
mod hardware;
mod ioapic_pins;
mod kernel;
mod policy;
mod service;

#[cfg(target_os = "none")]
mod server_main;

#[cfg(test)]
mod tests;

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
