//! The iommu-server's hardware seams, implemented over memory it mapped into itself:
//!
//! - [`MmioRegisters`]: `VtdRegisters` over the DRHD register page (device memory, mapped
//!   uncached by the kernel), every access volatile;
//! - [`PoolMemory`] and [`PoolFrames`]: `PhysMemory` and `FrameAllocator` over one RAM object
//!   init gave it, whose host-physical base the kernel told it (`memory_physical`). Tables are
//!   written with plain volatile stores: QEMU's VT-d reads guest memory coherently and ECAP.C
//!   is 0 there, so no cache flushing is done. On hardware whose walker does not snoop
//!   (ECAP.C = 0 on a real unit) each table store would need a `clflush` of its line before
//!   the invalidation that publishes it (VT-d spec 6.6 / 9.x "coherency"); see
//!   `docs/passthrough.md`.
//! - [`PollClock`]: the kernel has no clock call, so bounded waits count polls.

use iommu_core::clock::Clock;
use iommu_core::memory::{FrameAllocator, PhysMemory, PAGE_SIZE};
use iommu_core::registers::{Register32, Register64, VtdRegisters};
use iommu_core::HostPhys;
use sluice_rt::mmio::Window;

/// VT-d registers through a mapped window.
pub struct MmioRegisters {
    /// The register page.
    pub window: Window,
}

impl VtdRegisters for MmioRegisters {
    fn read32(&mut self, register: Register32) -> u32 {
        self.window
            .read32(register.offset() as u64)
            .unwrap_or(u32::MAX)
    }

    fn write32(&mut self, register: Register32, value: u32) {
        let _ = self.window.write32(register.offset() as u64, value);
    }

    fn read64(&mut self, register: Register64) -> u64 {
        self.window
            .read64(register.offset() as u64)
            .unwrap_or(u64::MAX)
    }

    fn write64(&mut self, register: Register64, value: u64) {
        let _ = self.window.write64(register.offset() as u64, value);
    }
}

/// A clock that advances one microsecond per reading: every wait on the unit polls a register
/// between readings, and a register read takes at least that long on hardware, so a timeout
/// of T lasts at least T polls and at most about T of real time.
#[derive(Default)]
pub struct PollClock {
    nanoseconds: u64,
}

impl Clock for PollClock {
    fn now(&mut self) -> u64 {
        self.nanoseconds = self.nanoseconds.saturating_add(1000);
        self.nanoseconds
    }
}

/// Physical memory of the frame pool, through its mapping.
#[derive(Clone, Copy)]
pub struct PoolMemory {
    /// The pool, mapped read-write.
    pub window: Window,
    /// Its host-physical base.
    pub physical_base: u64,
}

impl PoolMemory {
    fn offset(&self, address: HostPhys) -> Option<u64> {
        address.0.checked_sub(self.physical_base)
    }
}

impl PhysMemory for PoolMemory {
    fn read_u64(&self, address: HostPhys) -> u64 {
        // Addresses come from frames this pool handed out (iommu-core's contract); anything
        // else reads as zero rather than touching memory outside the pool.
        self.offset(address)
            .and_then(|offset| self.window.read64(offset))
            .unwrap_or(0)
    }

    fn write_u64(&mut self, address: HostPhys, value: u64) {
        if let Some(offset) = self.offset(address) {
            let _ = self.window.write64(offset, value);
        }
    }
}

/// Frames of the pool handed out one by one (a bitmap; up to 512 frames).
pub struct PoolFrames {
    physical_base: u64,
    frames: u64,
    used: [u64; 8],
}

impl PoolFrames {
    /// The frames of `size` bytes from `physical_base` on (page-aligned; beyond 512 frames
    /// the rest is not used).
    pub fn new(physical_base: u64, size: u64) -> Self {
        PoolFrames {
            physical_base,
            frames: (size / PAGE_SIZE).min(512),
            used: [0; 8],
        }
    }

    /// Frames still free.
    pub fn free(&self) -> u64 {
        let used: u32 = self.used.iter().map(|word| word.count_ones()).sum();
        self.frames - u64::from(used)
    }
}

impl FrameAllocator for PoolFrames {
    fn allocate_frame(&mut self) -> Option<HostPhys> {
        let index = (0..self.frames).find(|index| {
            self.used
                .get((index / 64) as usize)
                .is_some_and(|word| word & (1 << (index % 64)) == 0)
        })?;
        let word = self.used.get_mut((index / 64) as usize)?;
        *word |= 1 << (index % 64);
        Some(HostPhys(self.physical_base + index * PAGE_SIZE))
    }

    fn free_frame(&mut self, frame: HostPhys) {
        let Some(offset) = frame.0.checked_sub(self.physical_base) else {
            return;
        };
        let index = offset / PAGE_SIZE;
        if index < self.frames && offset.is_multiple_of(PAGE_SIZE) {
            if let Some(word) = self.used.get_mut((index / 64) as usize) {
                *word &= !(1 << (index % 64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_handed_out_once_and_come_back() {
        let mut frames = PoolFrames::new(0x10_0000, 3 * PAGE_SIZE);
        let a = frames.allocate_frame().unwrap();
        let b = frames.allocate_frame().unwrap();
        let c = frames.allocate_frame().unwrap();
        assert_eq!((a.0, b.0, c.0), (0x10_0000, 0x10_1000, 0x10_2000));
        assert_eq!(frames.allocate_frame(), None);
        frames.free_frame(b);
        frames.free_frame(HostPhys(0x9000)); // not ours: ignored
        frames.free_frame(HostPhys(0x10_0800)); // unaligned: ignored
        assert_eq!(frames.free(), 1);
        assert_eq!(frames.allocate_frame(), Some(b));
    }

    #[test]
    fn pool_memory_stays_inside_the_pool() {
        let mut backing = [0u64; 1024];
        // SAFETY: the array outlives the window and is not referenced while it is used.
        let window = unsafe { Window::new(backing.as_mut_ptr() as u64, 8192) };
        let mut memory = PoolMemory {
            window,
            physical_base: 0x20_0000,
        };
        memory.write_u64(HostPhys(0x20_0008), 42);
        memory.write_u64(HostPhys(0x1f_fff8), 7); // below the pool: ignored
        memory.write_u64(HostPhys(0x20_2000), 7); // past the pool: ignored
        assert_eq!(memory.read_u64(HostPhys(0x20_0008)), 42);
        assert_eq!(memory.read_u64(HostPhys(0x20_2000)), 0);
        assert_eq!(backing[1], 42);
        let mut clock = PollClock::default();
        assert!(clock.now() < clock.now());
    }
}
