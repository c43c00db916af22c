//! Fake host-physical memory: sparse 4 KiB frames, zero where never written.
//!
//! A cheap-to-clone handle: the driver under test, the fake VT-d unit (which reads descriptors
//! and tables like hardware) and the test all see the same memory.

use crate::memory::PhysMemory;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::RefCell;
use iommu_api::HostPhys;

/// Shared sparse memory.
#[derive(Clone, Debug, Default)]
pub struct FakeMemory {
    frames: Rc<RefCell<BTreeMap<u64, [u64; 512]>>>,
}

impl FakeMemory {
    /// Empty (all-zero) memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a u32 (4-byte aligned), as the unit's status writes need.
    pub fn read_u32(&self, address: HostPhys) -> u32 {
        let word = self.read_u64(HostPhys(address.0 & !7));
        (word >> ((address.0 & 4) * 8)) as u32
    }

    /// Writes a u32 (4-byte aligned).
    pub fn write_u32(&mut self, address: HostPhys, value: u32) {
        let aligned = HostPhys(address.0 & !7);
        let shift = (address.0 & 4) * 8;
        let word = self.read_u64(aligned) & !(0xffff_ffffu64 << shift);
        self.write_u64(aligned, word | (u64::from(value) << shift));
    }

    /// How many frames were ever written.
    pub fn touched_frames(&self) -> usize {
        self.frames.borrow().len()
    }
}

impl PhysMemory for FakeMemory {
    fn read_u64(&self, address: HostPhys) -> u64 {
        let frames = self.frames.borrow();
        frames
            .get(&(address.0 >> 12))
            .and_then(|frame| frame.get(((address.0 & 0xfff) / 8) as usize))
            .copied()
            .unwrap_or(0)
    }

    fn write_u64(&mut self, address: HostPhys, value: u64) {
        let mut frames = self.frames.borrow_mut();
        let frame = frames.entry(address.0 >> 12).or_insert([0; 512]);
        if let Some(slot) = frame.get_mut(((address.0 & 0xfff) / 8) as usize) {
            *slot = value;
        }
    }
}
