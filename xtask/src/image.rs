//! The GRUB boot image: the kernel plus its Multiboot2 modules (userland programs and the
//! compiled system description), made with `grub-mkrescue`. The same ISO boots QEMU, Bochs and
//! bare metal (docs/bare-metal.md); only the kernel command line differs.

use crate::artifacts::Artifacts;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into one image.
pub struct ImageSpec<'a> {
    pub artifacts: &'a Artifacts,
    /// The compiled system description (a module named `sysdesc`).
    pub system_description: &'a [u8],
    pub system_name: &'a str,
    /// Kernel command line.
    pub cmdline: String,
    /// Where the ISO goes.
    pub output: PathBuf,
}

/// The GRUB configuration for an image (exposed for tests).
pub fn grub_config(cmdline: &str, modules: &[(String, String)]) -> String {
    let mut config = String::from("set timeout=0\nset default=0\n\n");
    config.push_str("menuentry \"Sluice\" {\n");
    config.push_str(&format!("    multiboot2 /boot/kernel.elf {cmdline}\n"));
    for (file, module_cmdline) in modules {
        config.push_str(&format!("    module2 /boot/{file} {module_cmdline}\n"));
    }
    config.push_str("    boot\n}\n");
    config
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Builds the ISO and returns its path.
pub fn build(spec: &ImageSpec<'_>) -> Result<PathBuf, String> {
    let staging = spec.output.with_extension("d");
    let _ = std::fs::remove_dir_all(&staging);
    let boot = staging.join("boot");
    std::fs::create_dir_all(boot.join("grub"))
        .map_err(|e| format!("cannot create {}: {e}", boot.display()))?;
    copy(&spec.artifacts.kernel, &boot.join("kernel.elf"))?;
    let mut modules = Vec::new();
    for (name, path) in &spec.artifacts.programs {
        copy(path, &boot.join(name))?;
        modules.push((name.clone(), name.clone()));
    }
    std::fs::write(boot.join("system.bin"), spec.system_description)
        .map_err(|e| format!("cannot write system.bin: {e}"))?;
    modules.push(("system.bin".into(), format!("sysdesc {}", spec.system_name)));
    let config = grub_config(&spec.cmdline, &modules);
    std::fs::write(boot.join("grub/grub.cfg"), config)
        .map_err(|e| format!("cannot write grub.cfg: {e}"))?;

    let check = Command::new("grub-file")
        .arg("--is-x86-multiboot2")
        .arg(boot.join("kernel.elf"))
        .status();
    if !matches!(check, Ok(s) if s.success()) {
        return Err("grub-file says the kernel is not a Multiboot2 image".into());
    }
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&spec.output)
        .arg(&staging)
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "grub-mkrescue failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(spec.output.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_config_lists_kernel_flags_and_modules_in_order() {
        let modules = vec![
            ("init".to_string(), "init".to_string()),
            ("system.bin".into(), "sysdesc demo".into()),
        ];
        let config = grub_config("exit=qemu test-fault=pf", &modules);
        assert!(config.contains("multiboot2 /boot/kernel.elf exit=qemu test-fault=pf\n"));
        let init = config.find("module2 /boot/init init").expect("init module");
        let sysdesc = config
            .find("module2 /boot/system.bin sysdesc demo")
            .expect("sysdesc module");
        assert!(init < sysdesc);
        assert!(config.contains("set timeout=0"));
    }
}
