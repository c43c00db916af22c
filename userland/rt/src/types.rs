//! Typed arguments of the system calls that take more than selectors: a domain's packed name,
//! its kernel-memory quota, and where a new thread starts.

use core::fmt;

use sluice_abi::syscall::{MAX_CPUS, PRIORITY_LEVELS};

/// A protection domain's name as `create_protection_domain` takes it: up to 8 printable ASCII
/// bytes packed little-endian (first byte in bits 7:0), NUL-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DomainName(u64);

/// Why a text cannot be a domain name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainNameError {
    /// Empty text.
    Empty,
    /// More than 8 bytes.
    TooLong { length: usize },
    /// A byte that is not printable ASCII (`!`..=`~`).
    NotPrintable { position: usize },
}

impl fmt::Display for DomainNameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(formatter, "domain name is empty"),
            Self::TooLong { length } => {
                write!(formatter, "domain name has {length} bytes, at most 8 fit")
            }
            Self::NotPrintable { position } => {
                write!(
                    formatter,
                    "domain name byte {position} is not printable ASCII"
                )
            }
        }
    }
}

impl DomainName {
    /// Most bytes a name holds.
    pub const CAPACITY: usize = 8;

    /// Packs `text`, which must be 1 to 8 printable ASCII bytes.
    pub fn new(text: &str) -> Result<DomainName, DomainNameError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(DomainNameError::Empty);
        }
        if bytes.len() > Self::CAPACITY {
            return Err(DomainNameError::TooLong {
                length: bytes.len(),
            });
        }
        if let Some(position) = bytes.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(DomainNameError::NotPrintable { position });
        }
        let mut packed = [0u8; 8];
        for (slot, byte) in packed.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        Ok(DomainName(u64::from_le_bytes(packed)))
    }

    /// The register value.
    pub const fn to_raw(self) -> u64 {
        self.0
    }
}

/// A kernel-memory quota donated to a new domain (`docs/kernel.md`, "Kernel-memory quotas").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Bytes of kernel memory (objects, capability table, page tables).
    pub bytes: u64,
    /// Object-table entries.
    pub objects: u32,
    /// Mapping records.
    pub mappings: u32,
}

/// Where and how a new thread starts (`create_thread` arguments 2..5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadStart {
    /// First instruction (RIP).
    pub instruction_pointer: u64,
    /// Initial RSP.
    pub stack_pointer: u64,
    /// The thread's UTCB page (page-aligned); RDI holds it when the thread starts.
    pub utcb: u64,
    /// Scheduling priority, below [`PRIORITY_LEVELS`].
    pub priority: u8,
    /// The CPU the thread is pinned to, below [`MAX_CPUS`].
    pub cpu: u16,
}

impl ThreadStart {
    /// The packed `priority | cpu << 8` register, or `None` when either is out of range
    /// (the kernel would answer `InvalidArgument`).
    pub fn placement(&self) -> Option<u64> {
        if self.priority >= PRIORITY_LEVELS || self.cpu >= MAX_CPUS {
            return None;
        }
        Some(u64::from(self.priority) | (u64::from(self.cpu) << 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pack_little_endian_and_bad_names_are_refused() {
        let name = DomainName::new("pci").unwrap();
        assert_eq!(name.to_raw(), u64::from_le_bytes(*b"pci\0\0\0\0\0"));
        assert_eq!(
            DomainName::new("12345678").unwrap().to_raw(),
            u64::from_le_bytes(*b"12345678")
        );
        assert_eq!(DomainName::new(""), Err(DomainNameError::Empty));
        assert_eq!(
            DomainName::new("iommu-server"),
            Err(DomainNameError::TooLong { length: 12 })
        );
        assert_eq!(
            DomainName::new("a b"),
            Err(DomainNameError::NotPrintable { position: 1 })
        );
        assert_eq!(
            DomainName::new("é"),
            Err(DomainNameError::NotPrintable { position: 0 })
        );
    }

    #[test]
    fn placement_packs_priority_and_cpu_within_limits() {
        let mut start = ThreadStart {
            instruction_pointer: 0x4000_0000,
            stack_pointer: 0x7000_0000,
            utcb: 0x7000_1000,
            priority: 10,
            cpu: 3,
        };
        assert_eq!(start.placement(), Some(10 | 3 << 8));
        start.priority = PRIORITY_LEVELS;
        assert_eq!(start.placement(), None);
        start.priority = 0;
        start.cpu = MAX_CPUS;
        assert_eq!(start.placement(), None);
    }
}
