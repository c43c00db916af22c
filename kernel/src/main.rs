//! The Sluice kernel (being written).
#![cfg_attr(target_os = "none", no_std, no_main)]
fn main() {}
