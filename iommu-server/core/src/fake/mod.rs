//! Behavioural fakes for host tests: physical memory, a frame allocator, a clock, and a VT-d
//! unit modelled on QEMU's emulated intel-iommu (`-device intel-iommu,intremap=on`), and DMAR
//! table builders.
//!
//! Compiled for this crate's tests and, with the `fake` cargo feature, for other crates' tests
//! (it needs `alloc`).

pub mod allocator;
pub mod clock;
pub mod dmar;
pub mod memory;
pub mod vtd;
pub mod walker;

pub use allocator::FakeFrameAllocator;
pub use clock::FakeClock;
pub use memory::FakeMemory;
pub use vtd::{FakeEvent, FakeVtd, FakeVtdConfig};
pub use walker::{AccessKind, RemappedInterrupt};
