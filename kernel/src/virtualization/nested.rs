//! The kernel's side of the nested page tables: table memory through the direct map and table
//! frames from the frame allocator, for `kernel_virt::nested_paging`.

use crate::frames;
use crate::paging::phys_to_virt;
use kernel_virt::nested_paging::{FrameSource, TableMemory};
use kernel_virt::HostPhys;

/// Physical memory through the direct map.
pub struct DirectMap;

impl TableMemory for DirectMap {
    fn read(&self, address: HostPhys) -> u64 {
        // SAFETY: the tables only name frames the frame allocator handed out for them, which
        // lie in the direct map; entries are 8-byte aligned.
        unsafe { core::ptr::read_volatile(phys_to_virt(address.0) as *const u64) }
    }

    fn write(&mut self, address: HostPhys, value: u64) {
        // SAFETY: as in `read`; the frame belongs to these tables.
        unsafe { core::ptr::write_volatile(phys_to_virt(address.0) as *mut u64, value) }
    }
}

/// Table frames from the kernel's pool.
pub struct KernelFrames;

impl FrameSource for KernelFrames {
    fn allocate_zeroed(&mut self) -> Option<HostPhys> {
        frames::allocate().map(HostPhys)
    }

    fn free(&mut self, frame: HostPhys) {
        frames::free(frame.0);
    }
}
