//! Turning a system manifest into what the other commands need: the QEMU machine, the compiled
//! description for `init`, and the name. A manifest with any error stops here, before anything is
//! built or written (docs/manifest.md).

use crate::run::Machine;
use std::path::{Path, PathBuf};

/// The manifest `cargo xtask run` boots when none is given.
pub fn default_manifest() -> PathBuf {
    crate::artifacts::workspace_root().join("userland/systems/default.toml")
}

/// A validated system, ready to build and run.
pub struct Plan {
    pub name: String,
    pub manifest: PathBuf,
    pub description: Vec<u8>,
    system: sluice_manifest::System,
}

impl Plan {
    /// The emulated machine; backing files for its devices are created in `run_dir`.
    pub fn machine(&self, run_dir: &Path) -> Result<Machine, String> {
        let qemu_args = self.system.qemu_machine_args(run_dir).map_err(|e| {
            format!(
                "cannot prepare the machine's backing files in {}: {e}",
                run_dir.display()
            )
        })?;
        let machine = self.system.machine();
        Ok(Machine {
            qemu_args,
            memory_mib: machine.memory_bytes >> 20,
            cpus: machine.cpus,
        })
    }

    /// The platform report (text or JSON).
    pub fn report(&self, json: bool) -> String {
        if json {
            serde_json::to_string_pretty(&self.system.report_json())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        } else {
            self.system.report_text()
        }
    }
}

/// Loads and validates `path` (or the default system). The error is the full report.
pub fn load(path: Option<&Path>) -> Result<Plan, String> {
    let manifest = path.map(Path::to_path_buf).unwrap_or_else(default_manifest);
    let system = sluice_manifest::load_file(&manifest).map_err(|e| e.to_string())?;
    Ok(Plan {
        name: system.name().to_string(),
        description: system.compile(),
        manifest,
        system,
    })
}
