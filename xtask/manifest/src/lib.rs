//! System manifests: parse, validate, report, compile to the boot-time description.
//!
//! `load_file`/`load_str` read a TOML manifest (docs/manifest.md), check every rule in
//! [`rules`] in one pass, and return a [`System`] or a [`ManifestError`] listing every
//! violation miette-style (file:line:col, key, what is wrong, how to fix it).
#![forbid(unsafe_code)]

mod assign;
mod compile;
mod diagnostic;
mod groups;
pub mod models;
mod qemu;
mod report;
pub mod rules;
mod schema;
mod system;
mod topology;
mod tree;
pub mod units;

pub use diagnostic::{ManifestError, Violation};
pub use system::{
    Guest, KernelRef, Machine, PciAssignment, System, DEFAULT_MACHINE_MEMORY, HYPERVISOR_RESERVE,
};
pub use topology::PlacedDevice;
pub use units::{Bdf, SlotAddr};

use std::path::Path;

/// Read and validate a manifest file. Kernel paths are resolved against its directory.
pub fn load_file(path: &Path) -> Result<System, ManifestError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_with_base(&name, &text, path.parent().unwrap_or(Path::new("."))),
        Err(error) => Err(ManifestError::new(
            &name,
            "",
            vec![Violation::new(
                rules::FILE_UNREADABLE,
                "",
                0..0,
                format!("cannot read the manifest: {error}"),
                "check the path given to --system / check",
            )],
        )),
    }
}

/// Validate manifest text; `file_name` is used in messages, kernel paths are relative to
/// the current directory.
pub fn load_str(file_name: &str, text: &str) -> Result<System, ManifestError> {
    load_with_base(file_name, text, Path::new("."))
}

fn load_with_base(file_name: &str, text: &str, base_dir: &Path) -> Result<System, ManifestError> {
    let root = match tree::parse_document(text) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            return Err(ManifestError::new(
                file_name,
                text,
                vec![Violation::new(
                    rules::TOML_SYNTAX,
                    "",
                    span,
                    format!("not valid TOML: {}", error.message()),
                    "fix the syntax at the marked place (quotes, brackets, `key = value`)",
                )],
            ));
        }
    };
    let mut violations = Vec::new();
    let raw = schema::read(&root, &mut violations);
    let system = system::build(&raw, base_dir, &mut violations);
    match system {
        Some(system) if violations.is_empty() => Ok(system),
        _ => {
            violations.sort_by_key(|v| v.span.start);
            Err(ManifestError::new(file_name, text, violations))
        }
    }
}
