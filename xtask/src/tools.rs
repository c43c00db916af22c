//! Host tools: finds the emulators and image tools, installs missing ones with apt-get when
//! running as root (with a notice and a progress spinner), otherwise says what to install.
//! Also makes sure the pinned toolchain has the bare-metal target.

use indicatif::{ProgressBar, ProgressStyle};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A program xtask needs and the Debian package that provides it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

/// What building an image needs.
const IMAGE_TOOLS: &[Tool] = &[
    Tool {
        program: "grub-mkrescue",
        package: "grub-common",
    },
    Tool {
        program: "grub-file",
        package: "grub-common",
    },
    Tool {
        program: "xorriso",
        package: "xorriso",
    },
    Tool {
        program: "mformat",
        package: "mtools",
    },
];
/// Files rather than programs: GRUB's BIOS platform modules.
const GRUB_PC_DIR: &str = "/usr/lib/grub/i386-pc";
const QEMU_TOOLS: &[Tool] = &[Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
}];
const BOCHS_TOOLS: &[Tool] = &[Tool {
    program: "bochs",
    package: "bochs",
}];
const BOCHS_FILES: &[(&str, &str)] = &[
    ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    ("/usr/share/vgabios/vgabios.bin", "vgabios"),
];

/// Which tool sets a command needs.
#[derive(Clone, Copy)]
pub struct Needs {
    pub image: bool,
    pub qemu: bool,
    pub bochs: bool,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The Debian packages missing for `needs`, without duplicates.
fn missing_packages(needs: Needs) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let mut want = |present: bool, package: &'static str| {
        if !present && !missing.contains(&package) {
            missing.push(package);
        }
    };
    if needs.image {
        for tool in IMAGE_TOOLS {
            want(on_path(tool.program), tool.package);
        }
        want(
            std::path::Path::new(GRUB_PC_DIR)
                .join("multiboot2.mod")
                .exists(),
            "grub-pc-bin",
        );
    }
    if needs.qemu {
        for tool in QEMU_TOOLS {
            want(on_path(tool.program), tool.package);
        }
    }
    if needs.bochs {
        for tool in BOCHS_TOOLS {
            want(on_path(tool.program), tool.package);
        }
        for (file, package) in BOCHS_FILES {
            want(std::path::Path::new(file).exists(), package);
        }
    }
    missing
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn run_quiet(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let tail: String = String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n");
        Err(format!("{command:?} failed ({}):\n{tail}", output.status))
    }
}

/// Installs what is missing (as root) or explains what to install.
pub fn ensure(needs: Needs) -> Result<(), String> {
    let missing = missing_packages(needs);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "missing host packages: {list}\n  install them with: sudo apt-get install -y {list}"
        ));
    }
    eprintln!("xtask: installing host packages with apt-get: {list}");
    let bar = spinner("apt-get update".into());
    let update = run_quiet(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if let Err(error) = update {
        bar.finish_and_clear();
        return Err(error);
    }
    bar.set_message(format!("apt-get install {list}"));
    let result = run_quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    bar.finish_and_clear();
    result?;
    let still = missing_packages(needs);
    if still.is_empty() {
        eprintln!("xtask: installed {list}");
        Ok(())
    } else {
        Err(format!(
            "apt-get finished but these are still missing: {}",
            still.join(" ")
        ))
    }
}

/// Makes sure the pinned toolchain has the `x86_64-unknown-none` target (rust-toolchain.toml
/// declares it; older rustup versions do not install declared targets by themselves).
pub fn ensure_rust_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "x86_64-unknown-none") =>
        {
            Ok(())
        }
        Ok(_) => {
            eprintln!(
                "xtask: installing the x86_64-unknown-none target and llvm-tools with rustup"
            );
            let bar = spinner("rustup toolchain install".into());
            let result =
                run_quiet(Command::new("rustup").args(["toolchain", "install"])).or_else(|_| {
                    run_quiet(Command::new("rustup").args(["target", "add", "x86_64-unknown-none"]))
                });
            bar.finish_and_clear();
            result
        }
        // No rustup: trust the toolchain; the build will say if the target is missing.
        Err(_) => Ok(()),
    }
}
