//! `cargo xtask test`: lints, host unit tests, bare-metal builds, then the emulator boot tests
//! of `tests/` (two at a time on two cores). Prints `N passed, N failed` last.

use crate::run::{self, Emulator, RunOptions};
use crate::{artifacts, image, system, tools};
use sluice_tests::{BootTest, Expect, BOOT_TESTS};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to run.
pub struct TestOptions {
    pub host: bool,
    pub boot: bool,
    pub lint: bool,
    pub filter: Option<String>,
    pub jobs: usize,
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
            println!("test {name} ... ok {detail}");
        } else {
            self.failed += 1;
            println!("test {name} ... FAILED {detail}");
            self.failures.push(format!("{name}: {detail}"));
        }
    }
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(artifacts::workspace_root());
    command
}

fn step(tally: &mut Tally, name: &str, command: &mut Command) {
    println!("xtask: {name}: {command:?}");
    let ok = matches!(command.status(), Ok(s) if s.success());
    tally.record(name, ok, "");
}

/// Pure crates must also build without std (STYLE.md pattern 1).
const BARE_METAL_LIBRARIES: &[&str] = &[
    "kernel-core",
    "kernel-objects",
    "kernel-virt",
    "sluice-abi",
    "iommu-core",
    "iommu-api",
    "pci-core",
    "pci-api",
    "vmm-core",
    "sluice-sysdesc",
    "sluice-rt",
];

fn lint(tally: &mut Tally) {
    step(
        tally,
        "lint: rustfmt",
        cargo().args(["fmt", "--all", "--", "--check"]),
    );
    step(
        tally,
        "lint: clippy (host)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    );
    let mut bare = cargo();
    bare.args([
        "clippy",
        "--release",
        "--target",
        artifacts::TARGET,
        "-p",
        "kernel",
    ]);
    for program in artifacts::USER_PROGRAMS {
        bare.args(["-p", program]);
    }
    for library in BARE_METAL_LIBRARIES {
        bare.args(["-p", library]);
    }
    bare.args(["--", "-D", "warnings"]);
    step(tally, "lint: clippy (x86_64-unknown-none)", &mut bare);
}

/// Runs `cargo test --workspace`, then the built-in guest's tests (its own workspace), and adds
/// their counts (a build failure counts as one failure).
fn host_tests(tally: &mut Tally) {
    println!("xtask: host unit tests: cargo test --workspace");
    let output = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .output();
    count_tests(tally, output, "host unit tests");
    println!("xtask: built-in guest tests: cargo test in userland/guests/probe");
    let mut guest = cargo();
    guest
        .current_dir(artifacts::workspace_root().join("userland/guests/probe"))
        .env("CARGO_TARGET_DIR", artifacts::target_dir().join("guests"))
        .args(["test", "--no-fail-fast"]);
    count_tests(tally, guest.output(), "built-in guest tests");
}

fn count_tests(tally: &mut Tally, output: std::io::Result<std::process::Output>, what: &str) {
    let Ok(output) = output else {
        tally.record(what, false, "cannot run cargo test");
        return;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (mut passed, mut failed) = (0usize, 0usize);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
        if line.starts_with("test ") && line.ends_with("FAILED") {
            println!("{line}");
            tally.failures.push(line.to_string());
        }
    }
    println!("xtask: {what}: {passed} passed, {failed} failed");
    tally.passed += passed;
    tally.failed += failed;
    if !output.status.success() && failed == 0 {
        eprintln!("{stderr}");
        tally.record(
            "host unit tests (build)",
            false,
            "cargo test failed before running tests",
        );
    }
}

fn count(summary: &str, label: &str) -> usize {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn run_boot_test(test: &BootTest, built: &artifacts::Artifacts) -> Result<(bool, String), String> {
    let manifest = test.system.map(|s| artifacts::workspace_root().join(s));
    let plan = system::load(manifest.as_deref())?;
    let emulator = match test.emulator {
        sluice_tests::Emulator::Qemu => Emulator::Qemu,
        sluice_tests::Emulator::Bochs => Emulator::Bochs,
    };
    let cmdline = format!("{} {}", emulator.exit_flag(), test.cmdline)
        .trim()
        .to_string();
    let dir = run::run_dir(test.name)?;
    let iso = image::build(&image::ImageSpec {
        artifacts: built,
        system_description: &plan.description,
        system_name: &plan.name,
        cmdline,
        output: dir.join("sluice.iso"),
    })?;
    let mut machine = plan.machine(&dir)?;
    if let Some(cpus) = test.cpus {
        machine.set_cpus(cpus)?;
    }
    let options = RunOptions {
        emulator,
        timeout: Duration::from_secs(test.timeout_secs),
        live: false,
        icount: false,
        dir: dir.clone(),
    };
    let outcome = run::run(&iso, &machine, &options)?;
    let ended_as_expected = match test.expect {
        Expect::CleanShutdown => outcome.success(),
        Expect::Failure => !outcome.success() && crate::verdict::finished(&outcome.serial),
    };
    let missing = crate::verdict::missing_markers(&outcome.serial, test.markers);
    let detail = format!(
        "({:.1} s) {}",
        outcome.elapsed.as_secs_f64(),
        outcome.reason
    );
    if ended_as_expected && missing.is_empty() {
        Ok((true, detail))
    } else {
        let tail: Vec<&str> = outcome
            .serial
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Ok((
            false,
            format!(
                "{detail}; missing markers {missing:?}; serial tail:\n    {}",
                tail.join("\n    ")
            ),
        ))
    }
}

fn boot_tests(tally: &mut Tally, filter: Option<&str>, jobs: usize) {
    let selected: Vec<BootTest> = BOOT_TESTS
        .iter()
        .filter(|t| filter.is_none_or(|f| t.name.contains(f)))
        .copied()
        .collect();
    if selected.is_empty() {
        return;
    }
    let built = match artifacts::build(false) {
        Ok(built) => Arc::new(built),
        Err(error) => {
            tally.record("bare-metal build", false, &error);
            return;
        }
    };
    println!("xtask: {} boot tests, {} at a time", selected.len(), jobs);
    let queue = Arc::new(Mutex::new(selected));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (queue, results, built) = (queue.clone(), results.clone(), built.clone());
            std::thread::spawn(move || loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(test) = next else { break };
                let result = run_boot_test(&test, &built).unwrap_or_else(|e| (false, e));
                let ok = result.0;
                println!(
                    "xtask: boot test {} {}",
                    test.name,
                    if ok { "passed" } else { "FAILED" }
                );
                if let Ok(mut r) = results.lock() {
                    r.push((test.name, result));
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let mut results = results.lock().map(|r| r.clone()).unwrap_or_default();
    results.sort_by_key(|(name, _)| BOOT_TESTS.iter().position(|t| t.name == *name));
    for (name, (ok, detail)) in results {
        tally.record(&format!("boot: {name}"), ok, &detail);
    }
}

/// Runs the requested parts; returns whether everything passed.
pub fn run(options: &TestOptions) -> Result<bool, String> {
    let mut tally = Tally::default();
    if options.boot {
        tools::ensure(tools::Needs {
            image: true,
            qemu: true,
            bochs: true,
        })?;
    }
    tools::ensure_rust_target()?;
    if options.lint {
        lint(&mut tally);
    }
    if options.host {
        host_tests(&mut tally);
    }
    if options.boot {
        boot_tests(&mut tally, options.filter.as_deref(), options.jobs);
    }
    if !tally.failures.is_empty() {
        println!("\nfailures:");
        for failure in &tally.failures {
            println!("    {failure}");
        }
    }
    println!("\n{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_cargo_test_summaries() {
        let line =
            "ok. 15 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.05s";
        assert_eq!(super::count(line, " passed"), 15);
        assert_eq!(super::count(line, " failed"), 2);
        assert_eq!(super::count("FAILED. 3 passed; 1 failed;", " failed"), 1);
    }
}
