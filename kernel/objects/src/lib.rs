//! Kernel object model: capability spaces, rights, derivation, revocation, quotas, syscall
//! decoding; host-tested.
//!
//! The kernel binary embeds one [`ObjectModel`] (fixed-size tables, no allocation) behind its
//! kernel lock. A system call goes: raw registers -> [`decode::decode`] (pure, checks every
//! argument) -> one `ObjectModel` method per call (looks up and validates everything, then
//! commits; a refused call changes nothing) -> the kernel acts on the result and on what a
//! [`TeardownSink`] reports (unmap and flush, stop threads, free backing storage).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod address;
pub mod capability;
pub mod control;
pub mod create;
pub mod decode;
pub mod delegate;
pub mod mapping;
pub mod memory;
pub mod model;
pub mod object;
pub mod quota;
pub mod sink;
pub mod virtualization;

pub use address::{HostPhys, UserSlice, UserVirt, USER_END};
pub use capability::{derive, Capability, CapabilityAddress, CapabilityNode, CapabilityTable};
pub use control::PortalTarget;
pub use create::ThreadParameters;
pub use decode::{decode, DecodedSyscall};
pub use mapping::{Mapping, MappingKind};
pub use memory::MAPPING_CHARGE;
pub use model::ObjectModel;
pub use object::{
    object_charge, Interrupt, InterruptBinding, IoPortRange, Memory, MemoryKind, Notification,
    Object, ObjectEntry, ObjectId, ObjectTable, Portal, ProtectionDomain, Thread, ThreadState,
    Vcpu, Vm,
};
pub use quota::{Quota, Resources};
pub use sink::{IgnoreTeardown, TeardownSink};
