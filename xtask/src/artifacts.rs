//! Building the bare-metal binaries: the kernel and every userland program, for
//! `x86_64-unknown-none`, with the workspace's own cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bare-metal target triple.
pub const TARGET: &str = "x86_64-unknown-none";

/// The userland programs the image carries as Multiboot2 modules, in load order
/// (`init` first: it is the root task).
pub const USER_PROGRAMS: &[&str] = &[
    "init",
    "iommu-server",
    "pci-server",
    "vmm-server",
    "misbehave",
    "bench",
    "dma-test",
];

/// The built-in test guest (its own workspace: `userland/guests/probe`), shipped as the boot
/// module of this name; the vmm-server loads it into guests whose kernel is `builtin:probe` or
/// `builtin:hello`.
pub const GUEST_PROBE: &str = "guest-probe";

/// Builds the built-in test guest in its own directory (its own workspace and configuration).
fn build_guest_probe(verbose: bool) -> Result<PathBuf, String> {
    let directory = workspace_root().join("userland/guests/probe");
    let target = target_dir().join("guests");
    let mut command = cargo();
    command
        .current_dir(&directory)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--bin",
            GUEST_PROBE,
        ]);
    if !verbose {
        command.arg("--quiet");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the built-in guest failed ({status})"));
    }
    Ok(target.join(TARGET).join("release").join(GUEST_PROBE))
}

/// Paths of the built binaries.
pub struct Artifacts {
    pub kernel: PathBuf,
    pub programs: Vec<(String, PathBuf)>,
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where xtask keeps images and run directories.
pub fn work_dir() -> PathBuf {
    target_dir().join("sluice")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the kernel and all userland programs (release: emulators are slow).
pub fn build(verbose: bool) -> Result<Artifacts, String> {
    crate::tools::ensure_rust_target()?;
    let mut command = cargo();
    command.current_dir(workspace_root()).args([
        "build",
        "--release",
        "--target",
        TARGET,
        "-p",
        "kernel",
    ]);
    for program in USER_PROGRAMS {
        command.args(["-p", program]);
    }
    if !verbose {
        command.arg("--quiet");
    }
    eprintln!(
        "xtask: building kernel and {} userland programs for {TARGET}",
        USER_PROGRAMS.len()
    );
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build for {TARGET} failed ({status})"));
    }
    let out = target_dir().join(TARGET).join("release");
    let mut artifacts = Artifacts {
        kernel: out.join("kernel"),
        programs: USER_PROGRAMS
            .iter()
            .map(|p| (p.to_string(), out.join(p)))
            .collect(),
    };
    artifacts
        .programs
        .push((GUEST_PROBE.to_string(), build_guest_probe(verbose)?));
    for path in std::iter::once(&artifacts.kernel).chain(artifacts.programs.iter().map(|(_, p)| p))
    {
        if !path.is_file() {
            return Err(format!("build succeeded but {} is missing", path.display()));
        }
    }
    Ok(artifacts)
}
