//! Behavioural fakes for host tests (this crate's and other crates', with feature `fake`):
//! a config space whose functions behave like hardware, device builders shaped like real
//! devices (from `lspci -xxx` dumps and QEMU's device models), a q35 topology builder, a
//! recording delay, a recording IOMMU binding and a fake MSI-X table.

mod devices;
mod function;
mod platform;
mod space;
mod topology;

pub use devices::*;
pub use function::{FakeFunction, FakeSriov};
pub use platform::{FakeMsixTable, IommuCall, RecordingDelay, RecordingIommu};
pub use space::{FakeConfigSpace, FakeEvent};
pub use topology::*;
