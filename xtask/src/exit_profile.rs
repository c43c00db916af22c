//! `cargo xtask bench --profile-exit`: where the instructions of one VM exit round trip go.
//!
//! Boots the benchmark system under Bochs (VMX) with its debugger, stops at the kernel's
//! `vcpu_control(run)` fast path once the CPUID loop is under way, traces every instruction up to
//! the next run call (one guest CPUID -> kernel -> vmm-server -> kernel -> guest round trip),
//! and sums them per kernel function (from the kernel ELF's symbols), the vmm-server and the
//! guest. Bochs's time-stamp counter advances by one per instruction, so the trace's length
//! equals the tick difference between the two stops, which is checked.
//!
//! Who runs is followed along the trace: after VMRESUME/VMLAUNCH the guest runs until the VM
//! exit lands at `sluice_vmx_exit`; after IRETQ/SYSRETQ user code runs until an address in the
//! kernel's text (a system call, an interrupt or an exception entry).

use crate::run::{self, Emulator};
use crate::{artifacts, image, system, tools};
use object::{Object, ObjectSymbol, SymbolKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The function whose entry marks one round trip.
const RUN_ENTRY: &str = "kernel::execution::vcpu_run::fast_run";
/// Where every VM exit lands (HOST_RIP).
const VMX_EXIT: &str = "sluice_vmx_exit";
/// Breakpoint hits to let pass first: the probe's checks take a few hundred exits, its CPUID
/// loop 10,100.
const SKIPPED_RUNS: usize = 3_000;

/// A kernel function: start, end, name.
struct Function {
    start: u64,
    end: u64,
    name: String,
}

/// The kernel's functions, sorted by address.
struct Symbols {
    functions: Vec<Function>,
}

impl Symbols {
    fn read(kernel: &Path) -> Result<Symbols, String> {
        let data =
            std::fs::read(kernel).map_err(|e| format!("cannot read {}: {e}", kernel.display()))?;
        let file = object::File::parse(&*data)
            .map_err(|e| format!("{} is not an ELF file: {e}", kernel.display()))?;
        let mut functions: Vec<Function> = file
            .symbols()
            // Functions, and labels of the assembly entry code (no type in the ELF).
            .filter(|symbol| {
                matches!(
                    symbol.kind(),
                    SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown
                ) && symbol.is_definition()
                    && symbol.address() != 0
            })
            .filter_map(|symbol| {
                let name = symbol.name().ok()?;
                Some(Function {
                    start: symbol.address(),
                    end: symbol.address() + symbol.size(),
                    name: format!("{:#}", rustc_demangle::demangle(name)),
                })
            })
            .collect();
        functions.sort_by_key(|function| function.start);
        // Assembly labels have no size: they reach to the next symbol.
        for index in 1..functions.len() {
            let next = functions[index].start;
            if functions[index - 1].end <= functions[index - 1].start {
                functions[index - 1].end = next;
            }
        }
        if functions.is_empty() {
            return Err(format!("{} has no function symbols", kernel.display()));
        }
        Ok(Symbols { functions })
    }

    fn address_of(&self, name: &str) -> Result<u64, String> {
        self.functions
            .iter()
            .find(|function| function.name == name)
            .map(|function| function.start)
            .ok_or_else(|| format!("the kernel has no symbol {name}"))
    }

    /// The function containing `address`, if it is kernel text.
    fn function_at(&self, address: u64) -> Option<&str> {
        let index = self
            .functions
            .partition_point(|function| function.start <= address);
        let function = self.functions.get(index.checked_sub(1)?)?;
        (address < function.end.max(function.start + 1)).then_some(function.name.as_str())
    }
}

/// Who executes a traced instruction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Kernel,
    User,
    Guest,
}

/// One round trip, summed.
#[derive(Default)]
struct Profile {
    kernel: BTreeMap<String, u64>,
    user: u64,
    guest: u64,
}

impl Profile {
    fn kernel_total(&self) -> u64 {
        self.kernel.values().sum()
    }
}

/// One traced instruction: linear address and disassembly (Bochs's trace format
/// `(0).[ticks] [0xphysical] SEL:LINEAR (context): mnemonic operands ; bytes`).
fn parse_line(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix("(0).[")?;
    let mut words = rest.split_whitespace();
    words.next()?; // ticks]
    words.next()?; // [physical]
    let linear = words.next()?.split(':').nth(1)?;
    let address = u64::from_str_radix(linear, 16).ok()?;
    let text = rest.split_once("): ").map(|(_, text)| text)?;
    Some((address, text.split(';').next()?.trim()))
}

/// Sums the traced instructions after `Tracing enabled`, from the first at `run_entry` up to
/// (not including) the next one there: the debugger also shows the instruction it stops at.
fn profile(trace: &str, symbols: &Symbols, run_entry: u64, vmx_exit: u64) -> Profile {
    let mut profile = Profile::default();
    let mut mode = Mode::Kernel;
    let start = trace.find("Tracing enabled").unwrap_or(trace.len());
    for (index, (address, text)) in trace[start..].lines().filter_map(parse_line).enumerate() {
        mode = match mode {
            Mode::Guest if address == vmx_exit => Mode::Kernel,
            Mode::User if symbols.function_at(address).is_some() => Mode::Kernel,
            other => other,
        };
        if index > 0 && mode == Mode::Kernel && address == run_entry {
            break;
        }
        match mode {
            Mode::Kernel => {
                let name = symbols
                    .function_at(address)
                    .unwrap_or("(outside the kernel's symbols)");
                *profile.kernel.entry(name.to_string()).or_default() += 1;
            }
            Mode::User => profile.user += 1,
            Mode::Guest => profile.guest += 1,
        }
        let mnemonic = text.split_whitespace().next().unwrap_or("");
        if mode == Mode::Kernel {
            mode = match mnemonic {
                "vmresume" | "vmlaunch" => Mode::Guest,
                "iret" | "iretq" | "sysret" | "sysretq" => Mode::User,
                _ => Mode::Kernel,
            };
        }
    }
    profile
}

/// The tick counts of the last two breakpoint stops (`Next at t=N`).
fn ticks_between_stops(trace: &str) -> Option<u64> {
    let ticks: Vec<u64> = trace
        .lines()
        .filter_map(|line| line.strip_prefix("Next at t=")?.trim().parse().ok())
        .collect();
    let [.., before, after] = ticks.as_slice() else {
        return None;
    };
    after.checked_sub(*before)
}

/// Boots the benchmark system under Bochs's debugger and prints the profile of one round trip.
pub fn run(timeout: u64) -> Result<bool, String> {
    tools::ensure(tools::Needs {
        image: true,
        qemu: false,
        bochs: true,
    })?;
    let plan = system::load(Some(
        &artifacts::workspace_root().join(crate::bench::BENCH_SYSTEM),
    ))?;
    let built = artifacts::build(false)?;
    let symbols = Symbols::read(&built.kernel)?;
    let run_entry = symbols.address_of(RUN_ENTRY)?;
    let vmx_exit = symbols.address_of(VMX_EXIT)?;
    let dir = run::run_dir("exit-profile")?;
    let iso = image::build(&image::ImageSpec {
        artifacts: &built,
        system_description: &plan.description,
        system_name: &plan.name,
        cmdline: format!("{} init.bench", Emulator::Bochs.exit_flag()),
        output: dir.join("sluice.iso"),
    })?;
    let mut machine = plan.machine(&dir)?;
    // One CPU: the trace's lines are CPU 0's, and the round trip stays on it.
    machine.set_cpus(1)?;
    let mut script = format!("lb {run_entry:#x}\n");
    script.push_str(&"c\n".repeat(SKIPPED_RUNS));
    script.push_str("trace on\ns 200000\nquit\n");
    let mut command = run::bochs_command(&dir, &iso, &dir.join("serial.txt"), &machine, &script)?;
    let output_path = dir.join("trace.txt");
    let output = std::fs::File::create(&output_path).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: tracing one VM exit round trip under Bochs (stops at {RUN_ENTRY} {run_entry:#x}; trace in {})",
        output_path.display()
    );
    let mut child = command
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(output.try_clone().map_err(|e| e.to_string())?)
        .stderr(output)
        .spawn()
        .map_err(|e| format!("cannot start bochs: {e}"))?;
    let started = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(timeout) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("bochs did not finish the trace within {timeout} s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let trace = std::fs::read_to_string(&output_path).map_err(|e| e.to_string())?;
    let profile = profile(&trace, &symbols, run_entry, vmx_exit);
    let traced = profile.kernel_total() + profile.user + profile.guest;
    if profile.guest == 0 || profile.user == 0 {
        return Err(format!(
            "the trace ({traced} instructions) holds no complete round trip; see {}",
            output_path.display()
        ));
    }
    print!("{}", report(&profile, ticks_between_stops(&trace)));
    let _ = std::io::stdout().flush();
    Ok(true)
}

/// The printed profile.
fn report(profile: &Profile, ticks: Option<u64>) -> String {
    let kernel = profile.kernel_total();
    let total = kernel + profile.user + profile.guest;
    let mut out = format!("one VM exit round trip (guest CPUID, Bochs VMX): {total} instructions");
    if let Some(ticks) = ticks {
        out.push_str(&format!(" ({ticks} TSC ticks between the two stops)"));
    }
    out.push_str(&format!(
        "\n  kernel {kernel}, vmm-server (user) {}, guest {}\n\nkernel functions:\n",
        profile.user, profile.guest
    ));
    let mut functions: Vec<(&String, &u64)> = profile.kernel.iter().collect();
    functions.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (name, count) in functions {
        out.push_str(&format!("{count:>7}  {name}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Symbols {
        let function = |start, end, name: &str| Function {
            start,
            end,
            name: name.into(),
        };
        Symbols {
            functions: vec![
                function(0x1000, 0x1010, "kernel::run"),
                function(0x1010, 0x1020, VMX_EXIT),
                function(0x1020, 0x1030, "syscall_entry"),
            ],
        }
    }

    fn line(address: u64, text: &str) -> String {
        format!("(0).[5] [0x{address:012x}] 0008:{address:016x} (unk. ctxt): {text} ; 90\n")
    }

    #[test]
    fn a_round_trip_is_split_between_kernel_guest_and_user() {
        let mut trace = String::from("Next at t=100\nTracing enabled for CPU0\n");
        trace += &line(0x1000, "push rbx");
        trace += &line(0x1004, "vmresume");
        // The guest runs at addresses that may look like kernel text: only the exit ends it.
        trace += &line(0x1000, "mov eax, 0x0");
        trace += &line(0x2000, "cpuid");
        trace += &line(0x1010, "push rdi");
        trace += &line(0x1012, "iretq");
        trace += &line(0x4000_0000, "mov rax, 0x1");
        trace += &line(0x4000_0004, "syscall");
        trace += &line(0x1020, "swapgs");
        trace += "Next at t=109\n";
        // The stop at the next round trip's first instruction is shown, not executed.
        trace += &line(0x1000, "push rbx");
        let profile = profile(&trace, &symbols(), 0x1000, 0x1010);
        assert_eq!(profile.guest, 2);
        assert_eq!(profile.user, 2);
        assert_eq!(profile.kernel.get("kernel::run"), Some(&2));
        assert_eq!(profile.kernel.get(VMX_EXIT), Some(&2));
        assert_eq!(profile.kernel.get("syscall_entry"), Some(&1));
        assert_eq!(ticks_between_stops(&trace), Some(9));
        let text = report(&profile, Some(9));
        assert!(text.contains("9 instructions"));
        assert!(text.contains("kernel 5, vmm-server (user) 2, guest 2"));
    }

    #[test]
    fn lines_that_are_not_traced_instructions_are_ignored() {
        assert_eq!(parse_line("(0) Breakpoint 1, 0x1000 in ?? ()"), None);
        assert_eq!(parse_line("Next at t=5"), None);
        assert_eq!(parse_line("(0).[5] [0x1] garbage"), None);
        assert_eq!(
            parse_line("(0).[5] [0x000000117310] 0008:0000000000117310 (unk. ctxt): push rbx ; 53"),
            Some((0x117310, "push rbx"))
        );
    }
}
