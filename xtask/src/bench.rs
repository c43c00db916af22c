//! `cargo xtask bench`: boots the benchmark system under QEMU with `-icount shift=0,sleep=off`
//! (RDTSC counts retired instructions exactly) and turns the `bench:` lines the benchmark
//! programs print into a table next to published anchors, or JSON.
//!
//! Line format (a contract between the benchmark programs and this file):
//! `bench: NAME iterations=N total=T per=P unit=instructions`

use crate::run::{self, Emulator, RunOptions};
use crate::{artifacts, image, system, tools};
use std::time::Duration;

/// One measured figure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    pub name: String,
    pub iterations: u64,
    pub total: u64,
    pub per_iteration: u64,
    pub unit: String,
    pub anchor: Option<&'static str>,
    pub target: Option<u64>,
}

/// Published numbers the figures are compared against (context, not pass/fail).
fn anchor_for(name: &str) -> (Option<&'static str>, Option<u64>) {
    match name {
        "ipc-call-reply-cross-space" => (
            Some("seL4 ~1,265 cycles round trip (Haswell); L4Re/Fiasco ~1,200 instructions round trip between spaces"),
            Some(600),
        ),
        "vm-exit-cpuid-round-trip" => (Some("guest CPUID -> kernel -> vmm-server -> guest, all instructions"), None),
        "vm-exit-vmm-share" => (Some("the vmm-server's instructions per CPUID exit"), None),
        "vm-exit-kernel-share" => (Some("round trip minus the VMM's share; target under 800"), Some(800)),
        "null-system-call" => (Some("kernel entry and exit of a refused call"), None),
        _ => (None, None),
    }
}

/// Parses the benchmark lines in a serial log.
pub fn parse(serial: &str) -> Vec<Figure> {
    serial
        .lines()
        .filter_map(|line| {
            // Guest output arrives prefixed with the guest's name (`[bench] bench: ...`).
            let rest = &line[line.find("bench: ")? + "bench: ".len()..];
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_string();
            let field = |key: &str| -> Option<String> {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(key).map(str::to_string))
            };
            let iterations = field("iterations=")?.parse().ok()?;
            let total = field("total=")?.parse().ok()?;
            let per_iteration = field("per=")?.parse().ok()?;
            let unit = field("unit=").unwrap_or_else(|| "instructions".into());
            let (anchor, target) = anchor_for(&name);
            Some(Figure {
                name,
                iterations,
                total,
                per_iteration,
                unit,
                anchor,
                target,
            })
        })
        .collect()
}

/// Formats the table.
pub fn table(figures: &[Figure]) -> String {
    let mut out = format!(
        "{:<32} {:>10} {:>14} {:>12}  {}\n",
        "benchmark", "iterations", "per iteration", "target", "anchor"
    );
    for f in figures {
        let target = f.target.map(|t| format!("< {t}")).unwrap_or_default();
        out.push_str(&format!(
            "{:<44} {:>10} {:>10} {:<3} {:>12}  {}\n",
            f.name,
            f.iterations,
            f.per_iteration,
            if f.unit == "instructions" {
                "ins"
            } else {
                &f.unit
            },
            target,
            f.anchor.unwrap_or("")
        ));
    }
    out
}

/// Adds the kernel's share of a VM exit (round trip minus the VMM's share) where both exist.
fn with_kernel_share(mut figures: Vec<Figure>, platform: &str) -> Vec<Figure> {
    let find = |name: &str| figures.iter().find(|f| f.name == name).cloned();
    if let (Some(total), Some(vmm)) = (find("vm-exit-cpuid-round-trip"), find("vm-exit-vmm-share"))
    {
        let per_iteration = total.per_iteration.saturating_sub(vmm.per_iteration);
        let (anchor, target) = anchor_for("vm-exit-kernel-share");
        figures.push(Figure {
            name: "vm-exit-kernel-share".into(),
            iterations: total.iterations,
            total: per_iteration * total.iterations,
            per_iteration,
            unit: total.unit.clone(),
            anchor,
            target,
        });
    }
    for figure in &mut figures {
        figure.name = format!("{} ({platform})", figure.name);
    }
    figures
}

/// Boots the benchmark system on one emulator and returns its figures.
fn measure(emulator: Emulator, platform: &str, timeout: u64) -> Result<Vec<Figure>, String> {
    let plan = system::load(Some(&artifacts::workspace_root().join(BENCH_SYSTEM)))?;
    let built = artifacts::build(false)?;
    let dir = run::run_dir(&format!("bench-{platform}"))?;
    let iso = image::build(&image::ImageSpec {
        artifacts: &built,
        system_description: &plan.description,
        system_name: &plan.name,
        cmdline: format!("{} init.bench", emulator.exit_flag()),
        output: dir.join("sluice.iso"),
    })?;
    let machine = plan.machine(&dir)?;
    let options = RunOptions {
        emulator,
        timeout: Duration::from_secs(timeout),
        live: false,
        icount: emulator == Emulator::Qemu,
        dir,
    };
    eprintln!("xtask: running benchmarks on {platform} (instruction counts)");
    let outcome = run::run(&iso, &machine, &options)?;
    let figures = parse(&outcome.serial);
    if figures.is_empty() || !outcome.success() {
        return Err(format!(
            "{platform}: no benchmark figures: {}",
            outcome.reason
        ));
    }
    Ok(with_kernel_share(figures, platform))
}

/// The system `cargo xtask bench` boots.
pub(crate) const BENCH_SYSTEM: &str = "userland/systems/bench.toml";

/// Runs the benchmarks on QEMU (SVM, `-icount`) and Bochs (VMX, TSC = instructions retired).
pub fn run(json: bool, timeout: u64) -> Result<bool, String> {
    tools::ensure(tools::Needs {
        image: true,
        qemu: true,
        bochs: true,
    })?;
    let mut figures = measure(Emulator::Qemu, "qemu-svm", timeout)?;
    match measure(Emulator::Bochs, "bochs-vmx", timeout) {
        Ok(more) => figures.extend(more),
        Err(error) => eprintln!("xtask: {error}"),
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", table(&figures));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        let serial = "init: x\nbench: ipc-call-reply-cross-space iterations=10000 total=5230000 per=523 unit=instructions\nbench: broken iterations=x\n";
        let figures = parse(serial);
        assert_eq!(figures.len(), 1);
        assert_eq!(figures[0].per_iteration, 523);
        assert_eq!(figures[0].target, Some(600));
        assert!(table(&figures).contains("ipc-call-reply-cross-space"));
    }
}
