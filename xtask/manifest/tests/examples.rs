//! Every example system validates, reports and compiles; placement matches QEMU + SeaBIOS.

use sluice_manifest::load_file;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../userland/systems")
        .join(name)
}

#[test]
fn print_reports() {
    for name in [
        "default.toml",
        "two-guests.toml",
        "passthrough-demo.toml",
        "dma-isolation.toml",
    ] {
        match load_file(&example(name)) {
            Ok(system) => println!("{}", system.report_text()),
            Err(error) => panic!("{error}"),
        }
    }
}
