//! The physical frame allocator: hands out zeroed 4 KiB frames from the free ranges
//! `kernel_core::frames` computed, and takes them back onto a free list (each free frame holds
//! the address of the next one, written through the direct map).

use crate::paging::{phys_to_virt, PAGE_4K};
use crate::sync::SpinLock;
use kernel_core::frames::{Range, MAX_RANGES};

struct Allocator {
    ranges: heapless::Vec<Range, MAX_RANGES>,
    /// Index of the range being carved and the next unused frame in it.
    current: usize,
    next: u64,
    /// Head of the list of returned frames (0 = empty).
    free_list: u64,
    free_frames: u64,
    total_frames: u64,
}

static ALLOCATOR: SpinLock<Allocator> = SpinLock::new(Allocator {
    ranges: heapless::Vec::new(),
    current: 0,
    next: 0,
    free_list: 0,
    free_frames: 0,
    total_frames: 0,
});

/// Takes the free ranges; returns the number of frames.
pub fn init(ranges: heapless::Vec<Range, MAX_RANGES>) -> u64 {
    let mut allocator = ALLOCATOR.lock();
    let total: u64 = ranges.iter().map(|r| r.len() / PAGE_4K).sum();
    allocator.next = ranges.first().map(|r| r.start).unwrap_or(0);
    allocator.ranges = ranges;
    allocator.current = 0;
    allocator.free_frames = total;
    allocator.total_frames = total;
    total
}

/// A zeroed frame, or `None` when memory is exhausted.
pub fn allocate() -> Option<u64> {
    let mut allocator = ALLOCATOR.lock();
    let frame = if allocator.free_list != 0 {
        let frame = allocator.free_list;
        // SAFETY: `frame` is on the free list, so it is an unused RAM frame in the direct map
        // whose first word holds the next free frame.
        allocator.free_list = unsafe { core::ptr::read(phys_to_virt(frame) as *const u64) };
        frame
    } else {
        loop {
            let range = *allocator.ranges.get(allocator.current)?;
            if allocator.next + PAGE_4K <= range.end {
                let frame = allocator.next;
                allocator.next += PAGE_4K;
                break frame;
            }
            allocator.current += 1;
            allocator.next = allocator
                .ranges
                .get(allocator.current)
                .map(|r| r.start)
                .unwrap_or(0);
        }
    };
    allocator.free_frames -= 1;
    drop(allocator);
    // SAFETY: the frame was just taken from the allocator, so nothing else refers to it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame), 0, PAGE_4K as usize) };
    Some(frame)
}

/// Returns a frame. The caller must hold the only reference to it (unmapped and flushed).
pub fn free(frame: u64) {
    let mut allocator = ALLOCATOR.lock();
    // SAFETY: the caller gives up the frame; its first word now links the free list.
    unsafe { core::ptr::write(phys_to_virt(frame) as *mut u64, allocator.free_list) };
    allocator.free_list = frame;
    allocator.free_frames += 1;
}

/// (free, total) frames.
pub fn statistics() -> (u64, u64) {
    let allocator = ALLOCATOR.lock();
    (allocator.free_frames, allocator.total_frames)
}
