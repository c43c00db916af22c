//! What deletion and revocation report to the kernel binary. The object model only keeps
//! books; the kernel must act on each event (unmap and flush the TLB, stop threads, release the
//! storage it allocated for an object). Reporting cannot fail, so a commit never fails halfway.

use crate::mapping::Mapping;
use crate::object::{Object, ObjectId};

/// Receives the effects of a delete, revoke or teardown, in the order they happen.
pub trait TeardownSink {
    /// A mapping was removed: unmap it from the domain and flush before the memory is reused.
    fn mapping_removed(&mut self, mapping: &Mapping);
    /// A domain's last capability went: its table was emptied and its threads must stop.
    fn domain_torn_down(&mut self, domain: ObjectId);
    /// An object was freed: release what the kernel allocated for it.
    fn object_destroyed(&mut self, id: ObjectId, object: &Object);
}

/// A sink that ignores everything (for callers that know nothing can be reported).
#[derive(Clone, Copy, Debug, Default)]
pub struct IgnoreTeardown;

impl TeardownSink for IgnoreTeardown {
    fn mapping_removed(&mut self, _mapping: &Mapping) {}
    fn domain_torn_down(&mut self, _domain: ObjectId) {}
    fn object_destroyed(&mut self, _id: ObjectId, _object: &Object) {}
}
