//! `cargo xtask`: build, image, run, check and test Sluice systems.
//!
//! Every command that takes `--system FILE` validates the manifest first and stops with its
//! errors before building anything (docs/manifest.md).

mod artifacts;
mod bench;
mod exit_profile;
mod image;
mod run;
mod system;
mod test;
mod tools;
mod verdict;

use clap::{Parser, Subcommand};
use run::Emulator;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, image, run, check and test Sluice systems",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Build the kernel and every userland program for x86_64-unknown-none.
    Build {
        /// Show cargo's full output.
        #[arg(long)]
        verbose: bool,
    },
    /// Build a GRUB ISO with the kernel and its modules; prints its path.
    Image {
        /// The system manifest (default: userland/systems/default.toml).
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Extra kernel command-line flags (e.g. `exit=qemu`, `test-fault=pf`).
        #[arg(long, value_name = "FLAGS", default_value = "")]
        cmdline: String,
        /// Where to write the ISO (default: target/sluice/<system>.iso).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Boot the system on an emulator and show its serial console live.
    Run {
        /// The system manifest (default: userland/systems/default.toml).
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Which emulator boots it.
        #[arg(long, value_enum, default_value_t = Emulator::Qemu)]
        emulator: Emulator,
        /// Seconds before the run is stopped and counted as failed.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
        /// Extra kernel command-line flags (e.g. `test-fault=pf` raises a test page fault).
        #[arg(long, value_name = "FLAGS", default_value = "")]
        cmdline: String,
        /// Instruction-exact timing under QEMU (`-icount shift=0,sleep=off`).
        #[arg(long)]
        icount: bool,
        /// Number of emulated CPUs (overrides the manifest's `machine.cpus`).
        #[arg(long, value_name = "N")]
        smp: Option<u32>,
    },
    /// Validate a system manifest and print its platform report.
    Check {
        /// The system manifest.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Boot the benchmark system under QEMU -icount (SVM) and Bochs (VMX); print instruction counts.
    Bench {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Seconds before the run is stopped.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        timeout: u64,
        /// Instead of the figures: trace one VM exit round trip under Bochs (VMX) and print
        /// how many instructions each kernel function, the vmm-server and the guest execute.
        #[arg(long)]
        profile_exit: bool,
    },
    /// Run lints, host unit tests and emulator boot tests; prints `N passed, N failed` last.
    Test {
        /// Only the host unit tests (and lints).
        #[arg(long, conflicts_with = "boot_only")]
        host_only: bool,
        /// Only the emulator boot tests.
        #[arg(long)]
        boot_only: bool,
        /// Skip rustfmt and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Only boot tests whose name contains this text.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        /// Boot tests run at the same time (each emulator uses one core).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Commands) -> Result<bool, String> {
    match command {
        Commands::Build { verbose } => {
            let built = artifacts::build(verbose)?;
            println!("{}", built.kernel.display());
            for (_, path) in &built.programs {
                println!("{}", path.display());
            }
            Ok(true)
        }
        Commands::Image {
            system,
            cmdline,
            output,
        } => {
            let plan = system::load(system.as_deref())?;
            tools::ensure(tools::Needs {
                image: true,
                qemu: false,
                bochs: false,
            })?;
            let built = artifacts::build(false)?;
            let output =
                output.unwrap_or_else(|| artifacts::work_dir().join(format!("{}.iso", plan.name)));
            if let Some(parent) = output.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            let spec = image::ImageSpec {
                artifacts: &built,
                system_description: &plan.description,
                system_name: &plan.name,
                cmdline,
                output,
            };
            println!("{}", image::build(&spec)?.display());
            Ok(true)
        }
        Commands::Run {
            system,
            emulator,
            timeout,
            cmdline,
            icount,
            smp,
        } => {
            let plan = system::load(system.as_deref())?;
            let bochs = emulator == Emulator::Bochs;
            tools::ensure(tools::Needs {
                image: true,
                qemu: !bochs,
                bochs,
            })?;
            let built = artifacts::build(false)?;
            let dir = run::run_dir(&plan.name)?;
            let spec = image::ImageSpec {
                artifacts: &built,
                system_description: &plan.description,
                system_name: &plan.name,
                cmdline: format!("{} {cmdline}", emulator.exit_flag())
                    .trim()
                    .to_string(),
                output: dir.join("sluice.iso"),
            };
            let iso = image::build(&spec)?;
            let mut machine = plan.machine(&dir)?;
            if let Some(cpus) = smp {
                machine.set_cpus(cpus)?;
            }
            eprintln!(
                "xtask: booting system \"{}\" ({}) on {emulator:?} (timeout {timeout} s)",
                plan.name,
                plan.manifest.display()
            );
            let options = run::RunOptions {
                emulator,
                timeout: Duration::from_secs(timeout),
                live: true,
                icount,
                dir: dir.clone(),
            };
            let outcome = run::run(&iso, &machine, &options)?;
            let status = if outcome.success() { "ok" } else { "FAILED" };
            eprintln!(
                "xtask: run {status} after {:.1} s: {}",
                outcome.elapsed.as_secs_f64(),
                outcome.reason
            );
            Ok(outcome.success())
        }
        Commands::Bench {
            profile_exit: true,
            timeout,
            ..
        } => exit_profile::run(timeout),
        Commands::Bench { json, timeout, .. } => bench::run(json, timeout),
        Commands::Check { file, json } => {
            let plan = system::load(Some(&file))?;
            println!("{}", plan.report(json));
            Ok(true)
        }
        Commands::Test {
            host_only,
            boot_only,
            no_lint,
            filter,
            jobs,
        } => test::run(&test::TestOptions {
            host: !boot_only,
            boot: !host_only,
            lint: !no_lint && !boot_only,
            filter,
            jobs,
        }),
    }
}
