//! Applying a reply on VMX straight from its message words, the way the kernel answers an
//! exit: the same result as `Reply::from_words` followed by [`apply_entry`], without building a
//! [`Reply`] when the reply carries only GPRs, RSP, RIP, RFLAGS, control registers, EFER or the
//! TSC offset (the usual answer to an exit). The tests compare both on random replies and VMCS
//! contents: the same VMWRITEs in the same order, the same saved registers, the same refusals.
use sluice_abi::vcpu::{ActivityState, Mtd, Reply, ReplyHeader, REPLY_HEADER_WORDS};

use super::controls::ControlRegisterPolicy;
use super::entry::{
    apply_entry, check_event, finish, interrupt_state, write_control_registers, write_efer,
};
use super::fields::VmcsField;
use super::{read_field, VmcsRead};
use crate::error::ReplyError;
use crate::state::{check_rflags, SavedRegisters, DIRECT_REPLY_GROUPS};

#[inline]
fn read<V: VmcsRead + ?Sized>(vmcs: &V, field: VmcsField) -> Result<u64, ReplyError> {
    read_field(vmcs, field, ReplyError::FieldUnreadable)
}

/// Decodes the reply in `words` and applies it: a malformed reply is `ReplyError::Malformed`,
/// a refused one the error [`apply_entry`] gives; either way nothing is written and `saved` is
/// unchanged. Otherwise `write` gets each VMWRITE (values truncated to the field's width) in
/// [`apply_entry`]'s order. Replies with other groups are decoded into `scratch` and go through
/// [`apply_entry`].
#[inline]
pub fn apply_reply_words<V: VmcsRead + ?Sized, W: FnMut(VmcsField, u64)>(
    words: &[u64],
    vmcs: &V,
    saved: &mut SavedRegisters,
    policy: &ControlRegisterPolicy,
    scratch: &mut Reply,
    mut write: W,
) -> Result<(), ReplyError> {
    let header = ReplyHeader::decode(words).map_err(ReplyError::Malformed)?;
    let mtd = header.mtd;
    if !DIRECT_REPLY_GROUPS.contains(mtd) {
        scratch.decode_into(words).map_err(ReplyError::Malformed)?;
        return apply_entry(scratch, vmcs, saved, policy, write);
    }
    // ReplyHeader checked the length: exactly the words of `mtd` follow the header, group by
    // group in bit order, so a group's words start after the words of the lower groups.
    let state = words.get(REPLY_HEADER_WORDS..).unwrap_or(&[]);
    let word = |index: usize| state.get(index).copied().unwrap_or(0);
    let at = |group: Mtd| Mtd::from_bits(mtd.bits() & (group.bits() - 1)).map_or(0, Mtd::words);

    // Checks and VMCS reads, in apply_entry's order; nothing is written before they pass.
    let rflags = if mtd.contains(Mtd::RFLAGS) {
        let rflags = word(at(Mtd::RFLAGS));
        check_rflags(rflags)?;
        Some(rflags)
    } else {
        None
    };
    let primary = read(vmcs, VmcsField::PrimaryProcessorControls)?;
    let entry_controls = if mtd.contains(Mtd::EFER) {
        read(vmcs, VmcsField::EntryControls)?
    } else {
        0
    };
    let activity = match header.inject {
        None => ActivityState::Active,
        Some(event) => {
            let (interruptibility, activity) = interrupt_state(vmcs)?;
            let rflags = match rflags {
                Some(rflags) => rflags,
                None => read(vmcs, VmcsField::GuestRflags)?,
            };
            let cr0 = mtd
                .contains(Mtd::CONTROL_REGISTERS)
                .then(|| word(at(Mtd::CONTROL_REGISTERS)));
            check_event(event, rflags, interruptibility, activity, cr0, vmcs, policy)?;
            activity
        }
    };

    // Validated: from here on nothing fails. The groups in message order; ReplyHeader checked
    // that the words are there, so each group's slice exists (one check per group).
    let mut plan = |field: VmcsField, value: u64| write(field, field.truncate(value));
    let mut next = 0;
    let registers = saved.gpr.as_mut_array();
    for (group, first, count) in [
        (Mtd::GPR_ACDB, 0, 4),
        (Mtd::GPR_BSD, 5, 3),
        (Mtd::GPR_R8_R15, 8, 8),
    ] {
        if mtd.contains(group) {
            if let (Some(to), Some(from)) = (
                registers.get_mut(first..first + count),
                state.get(next..next + count),
            ) {
                to.copy_from_slice(from);
            }
            next += count;
        }
    }
    if mtd.contains(Mtd::RSP) {
        plan(VmcsField::GuestRsp, word(next));
        next += 1;
    }
    if mtd.contains(Mtd::RIP) {
        plan(VmcsField::GuestRip, word(next));
        next += 1;
    }
    if let Some(rflags) = rflags {
        plan(VmcsField::GuestRflags, rflags);
        next += 1;
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        let registers = [word(next), word(next + 1), word(next + 2), word(next + 3)];
        write_control_registers(registers, policy, saved, &mut plan);
        next += 4;
    }
    if mtd.contains(Mtd::EFER) {
        write_efer(word(next), entry_controls, &mut plan);
        next += 1;
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        plan(VmcsField::TscOffset, word(next));
    }
    finish(
        header.inject,
        activity,
        header.request_interrupt_window,
        primary,
        &mut plan,
    );
    Ok(())
}
