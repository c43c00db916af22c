//! The vmm-server's heap: the instruction decoder (iced-x86 in vmm-core) allocates, so the
//! binary provides a global allocator over a static arena.

use linked_list_allocator::LockedHeap;

/// Arena size: the decoder's and device models' working memory.
const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the arena to the allocator; call once before anything allocates.
pub fn init() {
    let arena = &raw mut ARENA;
    // SAFETY: called once at start, before any allocation; the arena is a static used only by
    // the allocator from here on.
    unsafe { ALLOCATOR.lock().init(arena as *mut u8, HEAP_SIZE) };
}
