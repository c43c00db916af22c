//! The Intel VMX backend's pure half: VMCS field encodings ([`fields`]) and control bits
//! ([`control_bits`]), control adjustment against the capability MSRs ([`controls`]), exit
//! decoding ([`exit`]) and direct encoding ([`encode`]), the VMCS writes that apply a reply
//! ([`entry`], and straight from the reply's words: [`reply`]) and the kernel-handled
//! control-register access exits ([`control_register`]).
//!
//! The kernel reaches the VMCS only through [`VmcsRead`] (VMREAD) and the write lists this
//! module returns (VMWRITE each in order).
pub mod control_bits;
pub mod control_register;
pub mod controls;
pub mod encode;
pub mod entry;
pub mod exit;
pub mod fields;
pub mod reply;

pub use control_bits::{
    EntryControls, ExitControls, PinBasedControls, PrimaryProcessorControls,
    SecondaryProcessorControls,
};
pub use controls::{
    ControlError, ControlRegisterPolicy, Controls, DesiredControls, VmxCapabilities,
};
pub use encode::{encode_exit, encode_exit_with};
pub use entry::{apply_entry, plan_entry, EntryPlan, VmcsWrite};
pub use exit::{decode_exit, decode_exit_into};
pub use fields::{FieldKind, FieldWidth, GuestSegment, VmcsField};
pub use reply::apply_reply_words;

/// Read access to the current VMCS: the kernel implements it with VMREAD (returning `None` when
/// VMREAD fails), tests with a map.
pub trait VmcsRead {
    /// The field's value, zero-extended to 64 bits.
    fn read(&self, field: VmcsField) -> Option<u64>;

    /// Reads every field of [`encode::EXIT_FIELDS`] into the same position of `out`, each
    /// truncated to its width (VMREAD zero-extends, so the hardware gives exactly that), and
    /// says whether all reads succeeded (if not, `out` is partly written). The kernel replaces
    /// this loop with one unrolled VMREAD sequence.
    fn read_exit_fields(&self, out: &mut [u64; encode::EXIT_FIELD_COUNT]) -> bool {
        for (slot, field) in out.iter_mut().zip(encode::EXIT_FIELDS) {
            match self.read(field) {
                Some(value) => *slot = field.truncate(value),
                None => return false,
            }
        }
        true
    }
}

/// Reads `field`, turning a failed VMREAD into the caller's error (built only on failure).
#[inline]
pub(crate) fn read_field<V: VmcsRead + ?Sized, E>(
    vmcs: &V,
    field: VmcsField,
    error: fn(VmcsField) -> E,
) -> Result<u64, E> {
    match vmcs.read(field) {
        Some(value) => Ok(field.truncate(value)),
        None => Err(error(field)),
    }
}
