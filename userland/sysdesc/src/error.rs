//! Every way a system description can be rejected, by the parser or the writer.

use core::fmt;

/// Why a description was refused. Each variant names what is wrong; none carries the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysdescError {
    /// Fewer bytes than a header.
    TooShort,
    /// The first 8 bytes are not [`crate::MAGIC`].
    BadMagic,
    /// A version this parser does not know.
    UnsupportedVersion(u32),
    /// `header_len` or a record length differs from this version's layout.
    BadRecordSize,
    /// `total_len` differs from the number of bytes given.
    LengthMismatch { declared: u32, actual: usize },
    /// A table does not start where the canonical layout puts it, or runs past the end.
    BadLayout,
    /// More guests or devices than the limits allow.
    TooMany,
    /// Unknown bits in a flags field.
    UnknownFlags,
    /// A string reference points outside the string table or is not UTF-8.
    BadString,
    /// A guest name is empty, not UTF-8, or has bytes after its NUL padding.
    BadGuestName { guest: usize },
    /// Two guests share a name.
    DuplicateGuestName { guest: usize },
    /// A guest's memory is zero or not a multiple of 2 MiB.
    BadGuestMemory { guest: usize },
    /// Guest memory adds up to more than the machine has (or overflows).
    MemoryOvercommit,
    /// A guest owns no CPU, or a CPU at or beyond `machine_cpus`.
    BadCpuMask { guest: usize },
    /// Two guests own the same host CPU.
    CpuOwnedTwice { guest: usize },
    /// vCPUs are zero or more than the CPUs the guest owns.
    BadVcpus { guest: usize },
    /// The kernel kind or built-in id is unknown.
    BadKernel { guest: usize },
    /// A reserved field is not zero.
    ReservedNotZero,
    /// A device names a guest index that does not exist.
    BadGuestIndex { device: usize },
    /// A host BDF appears twice.
    DuplicateHostBdf { device: usize },
    /// Two devices of one guest share a guest BDF.
    DuplicateGuestBdf { device: usize },
    /// `machine_cpus` is zero or above [`crate::MAX_CPUS`].
    BadMachineCpus,
    /// The output buffer given to the writer is too small.
    BufferTooSmall { needed: usize },
    /// A size does not fit the 32-bit fields of the layout.
    Overflow,
}

impl fmt::Display for SysdescError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(f, "description shorter than its header"),
            Self::BadMagic => write!(f, "not a Sluice system description (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported description version {v}"),
            Self::BadRecordSize => write!(f, "header or record size does not match this version"),
            Self::LengthMismatch { declared, actual } => {
                write!(f, "header says {declared} bytes but {actual} were given")
            }
            Self::BadLayout => write!(f, "tables are not laid out canonically inside the bytes"),
            Self::TooMany => write!(f, "more guests or devices than the limits allow"),
            Self::UnknownFlags => write!(f, "unknown flag bits set"),
            Self::BadString => write!(f, "string reference out of bounds or not UTF-8"),
            Self::BadGuestName { guest } => write!(f, "guest {guest}: bad name"),
            Self::DuplicateGuestName { guest } => write!(f, "guest {guest}: duplicate name"),
            Self::BadGuestMemory { guest } => {
                write!(f, "guest {guest}: memory zero or not a multiple of 2 MiB")
            }
            Self::MemoryOvercommit => write!(f, "guest memory exceeds machine memory"),
            Self::BadCpuMask { guest } => {
                write!(f, "guest {guest}: CPU mask empty or beyond the machine")
            }
            Self::CpuOwnedTwice { guest } => write!(f, "guest {guest}: a host CPU is owned twice"),
            Self::BadVcpus { guest } => write!(f, "guest {guest}: vCPUs zero or above owned CPUs"),
            Self::BadKernel { guest } => {
                write!(f, "guest {guest}: unknown kernel kind or built-in")
            }
            Self::ReservedNotZero => write!(f, "reserved field not zero"),
            Self::BadGuestIndex { device } => {
                write!(f, "device {device}: guest index out of range")
            }
            Self::DuplicateHostBdf { device } => {
                write!(f, "device {device}: host BDF assigned twice")
            }
            Self::DuplicateGuestBdf { device } => {
                write!(f, "device {device}: guest BDF used twice in one guest")
            }
            Self::BadMachineCpus => write!(f, "machine CPU count zero or above the limit"),
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: need {needed} bytes")
            }
            Self::Overflow => write!(f, "a size does not fit the layout's 32-bit fields"),
        }
    }
}
