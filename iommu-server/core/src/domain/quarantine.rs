//! The quarantine domain's tables: either nothing mapped (every DMA faults and is logged), or
//! every I/O virtual address mapped to one scratch page (a released device that keeps doing DMA
//! until its reset completes touches only that page, and does not flood the fault log).
//!
//! The scratch form needs one table per level: every entry of a level points at the one table
//! of the next level, and every leaf at the scratch page.

use crate::dma_remapping::second_level::{ENTRY_READ, ENTRY_WRITE};
use crate::memory::{allocate_zeroed, FrameAllocator, PhysMemory, PAGE_SIZE};
use crate::registers::capability::PagingLevels;
use iommu_api::{HostPhys, IommuError};

/// What quarantined devices see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuarantineMode {
    /// Nothing mapped: every DMA request faults.
    Blocking,
    /// Every address maps to this (server-owned, 4 KiB aligned) scratch page.
    ScratchPage(HostPhys),
}

/// Builds the quarantine tables; returns the root and the frames used (freed by the caller on
/// failure only, never while in use).
pub fn build_quarantine_tables<M: PhysMemory, A: FrameAllocator>(
    memory: &mut M,
    frames: &mut A,
    levels: PagingLevels,
    mode: QuarantineMode,
) -> Result<HostPhys, IommuError> {
    let QuarantineMode::ScratchPage(scratch) = mode else {
        return allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory);
    };
    if scratch.0 % PAGE_SIZE != 0 {
        return Err(IommuError::Misaligned);
    }
    let mut tables: heapless::Vec<HostPhys, 5> = heapless::Vec::new();
    for _ in 0..levels.count() {
        match frames.allocate_frame() {
            Some(frame) if tables.push(frame).is_ok() => {}
            other => {
                if let Some(frame) = other {
                    frames.free_frame(frame);
                }
                for frame in tables {
                    frames.free_frame(frame);
                }
                return Err(IommuError::OutOfTableMemory);
            }
        }
    }
    // tables[0] is the root (top level), the last one the leaf table.
    for (position, table) in tables.iter().enumerate() {
        let target = match tables.get(position + 1) {
            Some(next) => next.0,
            None => scratch.0,
        };
        for index in 0..PAGE_SIZE / 8 {
            memory.write_u64(
                HostPhys(table.0 + index * 8),
                target | ENTRY_READ | ENTRY_WRITE,
            );
        }
    }
    tables.first().copied().ok_or(IommuError::OutOfTableMemory)
}
