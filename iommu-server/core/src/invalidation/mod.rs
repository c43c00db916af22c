//! Cache invalidation (VT-d spec 6.5): queued when the unit has it, register-based otherwise.
//!
//! [`Invalidator`] hides which one is used. IOTLB flushes return an [`IotlbFlushed`] proof; table
//! frames detached by an unmap are only released against such a proof.

pub mod descriptor;
pub mod queue;
pub mod register_based;

use crate::clock::Clock;
use crate::memory::PhysMemory;
use crate::registers::VtdRegisters;
use crate::DomainId;
use descriptor::{ContextGranularity, Descriptor, InterruptEntryGranularity, IotlbGranularity};
use iommu_api::IommuError;
pub use queue::InvalidationQueue;

/// Proof that the IOTLB and paging-structure caches were invalidated for a scope. Only this
/// module creates it.
#[derive(Debug, PartialEq, Eq)]
pub struct IotlbFlushed {
    scope: Option<DomainId>,
}

impl IotlbFlushed {
    /// Whether the flush covered every entry of `domain`.
    pub fn covers(&self, domain: DomainId) -> bool {
        self.scope.is_none_or(|flushed| flushed == domain)
    }
}

/// How this unit invalidates its caches.
#[derive(Debug)]
pub enum Invalidator {
    /// Queued invalidation (ECAP.QI = 1, GSTS.QIES = 1).
    Queued(InvalidationQueue),
    /// Register-based invalidation through CCMD_REG and the IOTLB registers at ECAP.IRO.
    Register {
        /// ECAP.IRO in bytes.
        iotlb_offset: u16,
    },
}

/// Drain settings for IOTLB invalidations (CAP.DRD / CAP.DWD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// Drain reads.
    pub reads: bool,
    /// Drain writes.
    pub writes: bool,
}

impl Invalidator {
    /// Whether interrupt entry cache invalidation is possible (queued only).
    pub fn is_queued(&self) -> bool {
        matches!(self, Invalidator::Queued(_))
    }

    /// Invalidates context-cache entries.
    pub fn context<R: VtdRegisters, M: PhysMemory, C: Clock>(
        &mut self,
        registers: &mut R,
        memory: &mut M,
        clock: &mut C,
        granularity: ContextGranularity,
    ) -> Result<(), IommuError> {
        match self {
            Invalidator::Queued(queue) => queue.submit(
                registers,
                memory,
                clock,
                &[Descriptor::ContextCache(granularity)],
            ),
            Invalidator::Register { .. } => {
                register_based::invalidate_context(registers, clock, granularity)
            }
        }
    }

    /// Invalidates IOTLB entries. Page-selective flushes return no proof (they may keep
    /// paging-structure cache entries).
    pub fn iotlb<R: VtdRegisters, M: PhysMemory, C: Clock>(
        &mut self,
        registers: &mut R,
        memory: &mut M,
        clock: &mut C,
        granularity: IotlbGranularity,
        drain: Drain,
    ) -> Result<Option<IotlbFlushed>, IommuError> {
        match self {
            Invalidator::Queued(queue) => queue.submit(
                registers,
                memory,
                clock,
                &[Descriptor::Iotlb {
                    granularity,
                    drain_reads: drain.reads,
                    drain_writes: drain.writes,
                }],
            )?,
            Invalidator::Register { iotlb_offset } => register_based::invalidate_iotlb(
                registers,
                clock,
                *iotlb_offset,
                granularity,
                drain.reads,
                drain.writes,
            )?,
        }
        Ok(match granularity {
            IotlbGranularity::Global => Some(IotlbFlushed { scope: None }),
            IotlbGranularity::Domain(domain) => Some(IotlbFlushed {
                scope: Some(domain),
            }),
            IotlbGranularity::Pages { .. } => None,
        })
    }

    /// Invalidates interrupt entry cache entries (queued invalidation only).
    pub fn interrupt_entries<R: VtdRegisters, M: PhysMemory, C: Clock>(
        &mut self,
        registers: &mut R,
        memory: &mut M,
        clock: &mut C,
        granularity: InterruptEntryGranularity,
    ) -> Result<(), IommuError> {
        match self {
            Invalidator::Queued(queue) => queue.submit(
                registers,
                memory,
                clock,
                &[Descriptor::InterruptEntryCache(granularity)],
            ),
            Invalidator::Register { .. } => Err(IommuError::InterruptRemappingUnavailable),
        }
    }
}
