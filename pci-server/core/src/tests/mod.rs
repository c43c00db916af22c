//! Host tests against the behavioural fakes, one file per concern.

mod enumeration;
mod filter;
mod groups;
mod intx;
mod malformed;
mod msi;
mod msix;
mod ownership;
mod properties;
mod reset;
mod sriov;

use crate::fake::{desktop_topology, q35_ecam, q35_topology, FakeConfigSpace};
use crate::{Bdf, EnumerationOptions, Inventory};

/// Shorthand for a BDF.
fn b(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::from_bus_devfn(bus, (device << 3) | function)
}

/// Enumerates a fake with default options.
fn enumerate(config: &mut FakeConfigSpace) -> Inventory {
    Inventory::enumerate(config, &q35_ecam(), EnumerationOptions::default())
}

/// The q35 fake and its inventory.
fn q35() -> (FakeConfigSpace, Inventory) {
    let mut config = q35_topology();
    let inventory = enumerate(&mut config);
    (config, inventory)
}

/// The desktop fake and its inventory.
fn desktop() -> (FakeConfigSpace, Inventory) {
    let mut config = desktop_topology();
    let inventory = enumerate(&mut config);
    (config, inventory)
}
