//! Mapping records: every `map` and `io_allow` is recorded on the capability it was made
//! through, so that deleting or revoking that capability reports exactly what the kernel must
//! unmap and flush.

use sluice_abi::syscall::MemoryRights;

use crate::address::{HostPhys, UserSlice};
use crate::capability::CapabilityAddress;
use crate::object::ObjectId;

/// What a mapping gave a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingKind {
    /// Pages of a memory object at a user address range.
    Memory {
        /// Where in the domain's address space.
        range: UserSlice,
        /// The host-physical address of the first page (the range is contiguous).
        physical: HostPhys,
        /// The page permissions installed.
        rights: MemoryRights,
    },
    /// Pages of a memory object in a VM's guest-physical space (`domain` is the VM).
    Guest {
        /// First guest-physical address (page-aligned).
        base: u64,
        /// Length in bytes (page multiple).
        length: u64,
        /// The host-physical address of the first page.
        physical: HostPhys,
        /// The permissions carried into EPT/NPT.
        rights: MemoryRights,
    },
    /// Access to I/O ports (the domain's I/O permission bitmap).
    IoPorts {
        /// First port.
        first: u16,
        /// Number of ports.
        count: u32,
    },
}

impl MappingKind {
    /// True when two mappings of the same domain would cover the same addresses or ports.
    pub fn overlaps(&self, other: &MappingKind) -> bool {
        match (self, other) {
            (MappingKind::Memory { range: a, .. }, MappingKind::Memory { range: b, .. }) => {
                a.overlaps(*b)
            }
            (
                MappingKind::Guest {
                    base: a,
                    length: a_length,
                    ..
                },
                MappingKind::Guest {
                    base: b,
                    length: b_length,
                    ..
                },
            ) => *a < b.saturating_add(*b_length) && *b < a.saturating_add(*a_length),
            (
                MappingKind::IoPorts {
                    first: a_first,
                    count: a_count,
                },
                MappingKind::IoPorts {
                    first: b_first,
                    count: b_count,
                },
            ) => {
                let (a_start, b_start) = (u32::from(*a_first), u32::from(*b_first));
                a_start < b_start.saturating_add(*b_count)
                    && b_start < a_start.saturating_add(*a_count)
            }
            _ => false,
        }
    }
}

/// A mapping as reported to the kernel when it is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The domain whose address space (or I/O bitmap) holds it.
    pub domain: ObjectId,
    /// What it covers.
    pub kind: MappingKind,
}

/// One stored mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappingRecord {
    pub(crate) mapping: Mapping,
    /// The capability it was made through.
    pub(crate) owner: CapabilityAddress,
    /// The domain charged one mapping for it.
    pub(crate) payer: ObjectId,
    /// Next mapping made through the same capability.
    pub(crate) next: Option<u32>,
}
