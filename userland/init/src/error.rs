//! Every way init can fail, with the exit code it powers off with. Every failure is logged
//! with the kernel's `Status` name where the kernel refused something; init never panics.

use core::fmt;

use kernel_core::elf::ElfError;
use sluice_abi::syscall::Status;
use sluice_sysdesc::SysdescError;

use crate::kernel::NotMapped;

/// A step of starting a program, named in failure reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    MapModule,
    CreateDomain,
    CarveSegment { index: usize },
    MapScratch,
    UnmapScratch,
    MapSegment { index: usize, address: u64 },
    CarveThreadMemory,
    MapStack { address: u64 },
    MapUtcb { address: u64 },
    CreateThread,
    CreatePortal { portal_id: u64 },
    Delegate { destination: u32 },
    CarveDevice { address: u64 },
    CarveRam { size: u64 },
    CreateNotification,
    BindInterrupt { line: u32 },
    UnmapModule,
    StartThread,
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MapModule => write!(formatter, "map its module"),
            Self::CreateDomain => write!(formatter, "create its domain"),
            Self::CarveSegment { index } => write!(formatter, "carve RAM for segment {index}"),
            Self::MapScratch => write!(formatter, "map scratch memory"),
            Self::CarveRam { size } => write!(formatter, "carve {} KiB of RAM for it", size / 1024),
            Self::UnmapScratch => write!(formatter, "unmap scratch memory"),
            Self::MapSegment { index, address } => {
                write!(formatter, "map segment {index} at {address:#x}")
            }
            Self::CarveThreadMemory => write!(formatter, "carve RAM for its stack and UTCB"),
            Self::MapStack { address } => write!(formatter, "map its stack at {address:#x}"),
            Self::MapUtcb { address } => write!(formatter, "map its UTCB at {address:#x}"),
            Self::CreateThread => write!(formatter, "create its thread"),
            Self::CreatePortal { portal_id } => write!(formatter, "create portal {portal_id}"),
            Self::Delegate { destination } => {
                write!(formatter, "delegate its capability {destination}")
            }
            Self::CarveDevice { address } => {
                write!(formatter, "carve device memory at {address:#x}")
            }
            Self::CreateNotification => write!(formatter, "create a notification for it"),
            Self::BindInterrupt { line } => write!(formatter, "bind interrupt line {line}"),
            Self::UnmapModule => write!(formatter, "unmap its module"),
            Self::StartThread => write!(formatter, "start its thread"),
        }
    }
}

/// Why init gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The boot-information page has no valid magic.
    BadBootInfo,
    /// A boot module init needs is not listed.
    ModuleMissing { module: &'static str },
    /// The system description does not parse.
    Sysdesc(SysdescError),
    /// A program module is not a loadable executable.
    Elf {
        program: &'static str,
        error: ElfError,
    },
    /// No RAM boot capability has `bytes` left.
    OutOfRam { program: &'static str, bytes: u64 },
    /// Init's capability table has no free selector left.
    OutOfSelectors,
    /// No DeviceMmio boot capability covers a device range a server needs.
    DeviceNotCovered { program: &'static str, address: u64 },
    /// The kernel refused a step.
    Kernel {
        program: &'static str,
        action: Action,
        status: Status,
    },
    /// Init touched its own memory outside its mappings (a bug in init).
    NotMapped(NotMapped),
    /// A program's argument block does not fit.
    Arguments { program: &'static str },
    /// `reply_and_wait` failed in the service loop.
    Service(Status),
    /// A thread faulted when no misbehaving program was expected to.
    UnexpectedFault { bits: u64 },
    /// At least one guest failed (its vmm-server reported a non-zero status).
    GuestsFailed { failed: u64 },
    /// The misbehaving program reported other errors than the kernel must give.
    MisbehaveReport { empty_slot: u64, wrong_type: u64 },
    /// Misbehave mode 7 (the vCPU capability lifecycle) did not pass every step: `passed` and
    /// `failed` are its report's step masks (bit `n - 1` = step `n`).
    MisbehaveLifecycle { passed: u64, failed: u64 },
}

impl InitError {
    /// The code init powers off with (0 is success, so every failure is non-zero).
    pub fn exit_code(&self) -> u32 {
        match self {
            Self::BadBootInfo => 2,
            Self::ModuleMissing { .. } => 3,
            Self::Sysdesc(_) => 4,
            Self::Elf { .. } => 5,
            Self::OutOfRam { .. } | Self::OutOfSelectors => 6,
            Self::DeviceNotCovered { .. } => 7,
            Self::Kernel { .. } => 8,
            Self::NotMapped(_) | Self::Arguments { .. } => 9,
            Self::Service(_) => 10,
            Self::UnexpectedFault { .. } => 11,
            Self::MisbehaveReport { .. } => 12,
            Self::GuestsFailed { .. } => 13,
            Self::MisbehaveLifecycle { .. } => 14,
        }
    }
}

/// The steps whose bits are set in a misbehave report word, as `1, 2, 5` (bit `n - 1` = step
/// `n`), or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepList(pub u64);

impl fmt::Display for StepList {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return formatter.write_str("none");
        }
        let mut separator = "";
        for step in (0..64)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| bit + 1)
        {
            write!(formatter, "{separator}{step}")?;
            separator = ", ";
        }
        Ok(())
    }
}

fn status_name(raw: u64) -> &'static str {
    match Status::from_raw(raw) {
        Some(status) => status.description(),
        None => "not a status",
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBootInfo => write!(formatter, "boot information page has no valid magic"),
            Self::GuestsFailed { failed } => write!(formatter, "{failed} guest(s) failed"),
            Self::ModuleMissing { module } => write!(formatter, "boot module {module} missing"),
            Self::Sysdesc(error) => write!(formatter, "system description: {error}"),
            Self::Elf { program, error } => write!(formatter, "{program}: {error}"),
            Self::OutOfRam { program, bytes } => {
                write!(formatter, "{program}: no RAM boot capability has {bytes} bytes left")
            }
            Self::OutOfSelectors => write!(formatter, "init's capability table is full"),
            Self::DeviceNotCovered { program, address } => write!(
                formatter,
                "{program}: no device-memory boot capability covers {address:#x}"
            ),
            Self::Kernel {
                program,
                action,
                status,
            } => write!(formatter, "{program}: {action}: {status:?} ({status})"),
            Self::NotMapped(range) => write!(
                formatter,
                "init touched {:#x}+{:#x} outside its mappings",
                range.address, range.length
            ),
            Self::Arguments { program } => write!(formatter, "{program}: argument block does not fit"),
            Self::Service(status) => write!(formatter, "reply_and_wait: {status:?} ({status})"),
            Self::UnexpectedFault { bits } => write!(
                formatter,
                "a thread faulted (notification bits {bits:#x}) while none was expected to"
            ),
            Self::MisbehaveReport {
                empty_slot,
                wrong_type,
            } => write!(
                formatter,
                "misbehave mode 1 saw '{}' and '{}' instead of an empty-slot and a wrong-type error",
                status_name(*empty_slot),
                status_name(*wrong_type)
            ),
            Self::MisbehaveLifecycle { passed, failed } => write!(
                formatter,
                "misbehave mode 7 (vcpu capability lifecycle) did not pass every step: passed {}, failed {}",
                StepList(*passed),
                StepList(*failed)
            ),
        }
    }
}

impl From<NotMapped> for InitError {
    fn from(range: NotMapped) -> Self {
        InitError::NotMapped(range)
    }
}
