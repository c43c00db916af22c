//! Physical memory and frame allocation, as seen by table builders.
//!
//! Every table the server builds for the hardware (root, context, second-level, interrupt
//! remapping, invalidation queue) is written through [`PhysMemory`] into frames obtained from a
//! [`FrameAllocator`]. The server implements both on frames the kernel gave it; tests use
//! [`crate::fake::FakeMemory`] and [`crate::fake::FakeFrameAllocator`].
//!
//! Addresses handed to these traits were computed by the server from frames it allocated, never
//! taken from a client, so the traits are infallible.

use iommu_api::HostPhys;

/// Size of a frame and of the smallest page, 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// 64-bit access to host-physical memory the server owns.
pub trait PhysMemory {
    /// Reads the naturally aligned u64 at `address`.
    fn read_u64(&self, address: HostPhys) -> u64;
    /// Writes the naturally aligned u64 at `address`.
    fn write_u64(&mut self, address: HostPhys, value: u64);
    /// Writes zeros over the 4 KiB frame at `frame`.
    fn zero_frame(&mut self, frame: HostPhys) {
        for index in 0..PAGE_SIZE / 8 {
            self.write_u64(HostPhys(frame.0 + index * 8), 0);
        }
    }
}

/// A source of 4 KiB frames for tables.
pub trait FrameAllocator {
    /// A free, 4 KiB aligned frame (contents unspecified), or `None` when exhausted.
    fn allocate_frame(&mut self) -> Option<HostPhys>;
    /// Returns a frame. Callers hand back table frames only after the IOTLB was flushed.
    fn free_frame(&mut self, frame: HostPhys);
}

/// Allocates a frame and zeroes it.
pub fn allocate_zeroed<M: PhysMemory, A: FrameAllocator>(
    memory: &mut M,
    frames: &mut A,
) -> Option<HostPhys> {
    let frame = frames.allocate_frame()?;
    memory.zero_frame(frame);
    Some(frame)
}

/// True when `value` is a multiple of 4 KiB.
pub const fn is_page_aligned(value: u64) -> bool {
    value.is_multiple_of(PAGE_SIZE)
}
