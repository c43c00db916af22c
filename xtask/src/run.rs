//! Booting an image on an emulator and watching its serial console until the system reports its
//! end, the emulator exits, or the timeout passes. QEMU and Bochs settings follow
//! docs/emulators.md (verified recipes).

use crate::verdict::{self, Verdict};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which emulator boots the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emulator {
    /// QEMU TCG, q35, SVM+NPT, intel-iommu with interrupt remapping (the default).
    Qemu,
    /// Bochs with a VMX+EPT CPU model (no IOMMU).
    Bochs,
    /// QEMU with KVM and `-cpu host`, for hosts whose KVM runs guests with nested VMX.
    Kvm,
}

impl Emulator {
    /// The kernel's `exit=` flag for this emulator.
    pub fn exit_flag(self) -> &'static str {
        match self {
            Emulator::Qemu | Emulator::Kvm => "exit=qemu",
            Emulator::Bochs => "exit=bochs",
        }
    }
}

/// The machine a run emulates, from the system manifest.
pub struct Machine {
    /// QEMU arguments for memory, CPUs, the IOMMU and devices.
    pub qemu_args: Vec<String>,
    pub memory_mib: u64,
    pub cpus: u32,
}

impl Machine {
    /// Overrides the number of CPUs (QEMU `-smp`, Bochs `count`).
    pub fn set_cpus(&mut self, cpus: u32) -> Result<(), String> {
        if !(1..=8).contains(&cpus) {
            return Err(format!("--smp {cpus}: Sluice brings up 1 to 8 CPUs"));
        }
        self.cpus = cpus;
        match self.qemu_args.iter().position(|a| a == "-smp") {
            Some(at) if at + 1 < self.qemu_args.len() => self.qemu_args[at + 1] = cpus.to_string(),
            _ => self
                .qemu_args
                .extend(["-smp".to_string(), cpus.to_string()]),
        }
        Ok(())
    }
}

/// How to run.
pub struct RunOptions {
    pub emulator: Emulator,
    pub timeout: Duration,
    /// Print the serial console as it arrives.
    pub live: bool,
    /// QEMU `-icount shift=0,sleep=off` (instruction-exact RDTSC, for benchmarks).
    pub icount: bool,
    /// The run directory (from [`run_dir`]): serial log, emulator output, Bochs configuration.
    pub dir: PathBuf,
}

/// How a run ended.
pub struct RunOutcome {
    pub verdict: Verdict,
    pub serial: String,
    /// Why the run ended, one line (printed last by `run`).
    pub reason: String,
    pub elapsed: Duration,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        self.verdict == Verdict::Clean
    }
}

/// Creates a fresh run directory.
pub fn run_dir(label: &str) -> Result<PathBuf, String> {
    let dir = crate::artifacts::work_dir()
        .join("runs")
        .join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn qemu_command(iso: &Path, serial: &Path, machine: &Machine, options: &RunOptions) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    match options.emulator {
        Emulator::Kvm => command.args([
            "-accel",
            "kvm",
            "-machine",
            "q35,kernel-irqchip=split", // intel-iommu with intremap needs a split irqchip under KVM
            "-cpu",
            "host",
        ]),
        _ => command.args([
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-cpu",
            "qemu64,+svm,+npt",
        ]),
    };
    if options.icount {
        command.args(["-icount", "shift=0,sleep=off"]);
    }
    command
        .args(&machine.qemu_args)
        .args([
            "-nic",
            "none",
            "-boot",
            "d",
            "-display",
            "none",
            "-vga",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-cdrom")
        .arg(iso)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    command
}

/// The Bochs configuration (docs/emulators.md: Debian's Bochs has no `nogui`, so `rfb` with no
/// wait; the built-in debugger is told to continue by `-rc`).
pub fn bochs_config(iso: &Path, serial: &Path, log: &Path, memory_mib: u64, cpus: u32) -> String {
    format!(
        "megs: {memory_mib}\n\
         cpu: model=corei7_skylake_x, count={cpus}, ips=200000000, reset_on_triple_fault=0\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         pci: enabled=1, chipset=i440fx\n\
         display_library: rfb, options=\"timeout=0\"\n\
         ata0-master: type=cdrom, path={}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev={}\n\
         log: {}\n\
         panic: action=fatal\nerror: action=report\ninfo: action=report\ndebug: action=ignore\n\
         clock: sync=none, time0=local\n\
         speaker: enabled=0\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n",
        iso.display(),
        serial.display(),
        log.display()
    )
}

/// The Bochs command for `iso` on `machine`, with its configuration and the debugger script
/// `debugger` (`c` alone just runs) written into `dir`.
pub fn bochs_command(
    dir: &Path,
    iso: &Path,
    serial: &Path,
    machine: &Machine,
    debugger: &str,
) -> Result<Command, String> {
    // Bochs caps at a few GiB and needs no more for its tests.
    let memory = machine.memory_mib.clamp(32, 2048);
    let config = bochs_config(
        iso,
        serial,
        &dir.join("bochs.log"),
        memory,
        machine.cpus.max(1),
    );
    let config_path = dir.join("bochsrc");
    std::fs::write(&config_path, config).map_err(|e| format!("cannot write bochsrc: {e}"))?;
    std::fs::write(dir.join("debugger.rc"), debugger)
        .map_err(|e| format!("cannot write debugger.rc: {e}"))?;
    let mut command = Command::new("bochs");
    command
        .arg("-q")
        .arg("-f")
        .arg(&config_path)
        .arg("-rc")
        .arg(dir.join("debugger.rc"));
    Ok(command)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Boots `iso` and watches it.
pub fn run(iso: &Path, machine: &Machine, options: &RunOptions) -> Result<RunOutcome, String> {
    let dir = &options.dir;
    let serial_path = dir.join("serial.txt");
    std::fs::write(&serial_path, b"")
        .map_err(|e| format!("cannot create {}: {e}", serial_path.display()))?;
    let mut command = match options.emulator {
        Emulator::Qemu | Emulator::Kvm => qemu_command(iso, &serial_path, machine, options),
        Emulator::Bochs => bochs_command(dir, iso, &serial_path, machine, "c\n")?,
    };
    let stdout = std::fs::File::create(dir.join("emulator.out")).map_err(|e| e.to_string())?;
    let stderr = stdout.try_clone().map_err(|e| e.to_string())?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;

    let mut serial = String::new();
    let mut file = std::fs::File::open(&serial_path).map_err(|e| e.to_string())?;
    let mut offset = 0u64;
    let mut finished_at: Option<Instant> = None;
    let reason = loop {
        std::thread::sleep(Duration::from_millis(50));
        let mut fresh = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut fresh).is_ok() {
            offset += fresh.len() as u64;
            let text = String::from_utf8_lossy(&fresh).replace('\r', "");
            if options.live {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
            serial.push_str(&text);
        }
        if let Ok(Some(status)) = child.try_wait() {
            break match verdict::judge(&serial) {
                Verdict::Running => {
                    format!("emulator exited ({status}) before the system reported its end")
                }
                _ => final_reason(&serial),
            };
        }
        if finished_at.is_none() && verdict::finished(&serial) {
            finished_at = Some(Instant::now());
        }
        // After the final line, give the emulator a moment to exit by itself (the exit device
        // or Bochs' shutdown port), then stop it.
        if finished_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            kill(&mut child);
            break final_reason(&serial);
        }
        if started.elapsed() > options.timeout {
            kill(&mut child);
            break format!(
                "timeout: no final line after {} s (serial log: {})",
                options.timeout.as_secs(),
                serial_path.display()
            );
        }
    };
    let verdict = match verdict::judge(&serial) {
        Verdict::Running => Verdict::Failed(reason.clone()),
        other => other,
    };
    Ok(RunOutcome {
        verdict,
        serial,
        reason,
        elapsed: started.elapsed(),
    })
}

fn final_reason(serial: &str) -> String {
    match verdict::judge(serial) {
        Verdict::Clean => "the system reported a clean shutdown".into(),
        Verdict::Failed(line) => format!("the system failed: {line}"),
        Verdict::Running => "the system did not report its end".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bochs_config_follows_the_recipe() {
        let config = bochs_config(
            Path::new("/x/a.iso"),
            Path::new("/x/s.txt"),
            Path::new("/x/b.log"),
            256,
            2,
        );
        assert!(config.contains("cpu: model=corei7_skylake_x, count=2,"));
        assert!(config.contains("megs: 256\n"));
        assert!(config.contains("display_library: rfb, options=\"timeout=0\""));
        assert!(config.contains("ata0-master: type=cdrom, path=/x/a.iso, status=inserted"));
        assert!(config.contains("com1: enabled=1, mode=file, dev=/x/s.txt"));
    }

    #[test]
    fn smp_override_replaces_or_adds_the_qemu_argument() {
        let mut machine = Machine {
            qemu_args: vec!["-m".into(), "512M".into(), "-smp".into(), "1".into()],
            memory_mib: 512,
            cpus: 1,
        };
        machine.set_cpus(2).unwrap();
        assert_eq!(machine.qemu_args, vec!["-m", "512M", "-smp", "2"]);
        assert_eq!(machine.cpus, 2);
        let mut bare = Machine {
            qemu_args: vec![],
            memory_mib: 512,
            cpus: 1,
        };
        bare.set_cpus(3).unwrap();
        assert_eq!(bare.qemu_args, vec!["-smp", "3"]);
        assert!(bare.set_cpus(0).is_err() && bare.set_cpus(9).is_err());
    }

    #[test]
    fn exit_flags_match_the_kernel() {
        assert_eq!(Emulator::Qemu.exit_flag(), "exit=qemu");
        assert_eq!(Emulator::Bochs.exit_flag(), "exit=bochs");
    }
}
