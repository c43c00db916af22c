//! The init binary: a ring-3 program loaded as a Multiboot2 module. Its logic lives in a
//! host-tested crate; this file is the thin hardware-facing shell.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
sluice_rt::entry!(main);

fn main() {
    sluice_rt::log!("init: started");
}
