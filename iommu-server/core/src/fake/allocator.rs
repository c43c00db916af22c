//! A fake frame allocator over a range of host-physical frames, with a limit, that refuses
//! double frees and foreign frames loudly (tests assert on them).

use crate::memory::{FrameAllocator, PAGE_SIZE};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use iommu_api::HostPhys;

/// Hands out frames from `base` upwards, reusing freed ones first (lowest first).
#[derive(Debug)]
pub struct FakeFrameAllocator {
    next: u64,
    limit: u64,
    free: BTreeSet<u64>,
    allocated: BTreeSet<u64>,
    /// Frames returned that were not allocated (double or foreign frees).
    pub bad_frees: Vec<HostPhys>,
}

impl FakeFrameAllocator {
    /// At most `count` frames starting at `base` (4 KiB aligned).
    pub fn new(base: HostPhys, count: u64) -> Self {
        Self {
            next: base.0,
            limit: base.0 + count * PAGE_SIZE,
            free: BTreeSet::new(),
            allocated: BTreeSet::new(),
            bad_frees: Vec::new(),
        }
    }

    /// Frames currently handed out.
    pub fn allocated_count(&self) -> usize {
        self.allocated.len()
    }

    /// Whether `frame` is currently handed out.
    pub fn is_allocated(&self, frame: HostPhys) -> bool {
        self.allocated.contains(&frame.0)
    }

    /// Frames still available.
    pub fn available(&self) -> u64 {
        self.free.len() as u64 + (self.limit - self.next) / PAGE_SIZE
    }
}

impl FrameAllocator for FakeFrameAllocator {
    fn allocate_frame(&mut self) -> Option<HostPhys> {
        let frame = if let Some(frame) = self.free.pop_first() {
            frame
        } else if self.next < self.limit {
            self.next += PAGE_SIZE;
            self.next - PAGE_SIZE
        } else {
            return None;
        };
        self.allocated.insert(frame);
        Some(HostPhys(frame))
    }

    fn free_frame(&mut self, frame: HostPhys) {
        if self.allocated.remove(&frame.0) {
            self.free.insert(frame.0);
        } else {
            self.bad_frees.push(frame);
        }
    }
}
