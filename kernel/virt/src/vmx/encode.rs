//! The VMX exit written straight into message words: what the kernel sends on every exit.
//!
//! [`encode_exit`] gives exactly the words (and the errors) of [`decode_exit`] followed by
//! `ExitMessage::to_words`; the tests compare both on random VMCS contents. For the state the
//! kernel asks for ([`BASE_STATE`]) the fields are read in one batch ([`EXIT_FIELDS`], one
//! VMREAD each, `VmcsRead::read_exit_fields`) and each word is stored at its fixed offset,
//! without building a [`VcpuState`] or computing positions. When any read of the batch fails,
//! the exit is decoded the general way, which names the field that failed first.
//!
//! [`decode_exit`]: super::exit::decode_exit
use sluice_abi::vcpu::{
    exit_header_words, interrupt_state_word, segment_word, Event, Interruptibility, Mtd, VcpuState,
    EXIT_HEADER_WORDS, MAX_EXIT_WORDS,
};

use super::controls::ControlRegisterPolicy;
use super::exit::{
    activity_state, decode_exit_into, header_from, read, INFO_ERROR_CODE_VALID, INFO_VALID,
    INTERRUPTIBILITY_CARRIED,
};
use super::fields::VmcsField;
use super::VmcsRead;
use crate::error::ExitError;
use crate::state::{
    attributes_from_access_rights, decode_event, SavedRegisters, Vendor, BASE_STATE,
};

/// Number of [`EXIT_FIELDS`].
pub const EXIT_FIELD_COUNT: usize = 24;

/// The fields every exit of [`BASE_STATE`] needs, in the order the batch reads them.
pub const EXIT_FIELDS: [VmcsField; EXIT_FIELD_COUNT] = {
    use VmcsField::*;
    [
        ExitReason,
        ExitInstructionLength,
        GuestRsp,
        GuestRip,
        GuestRflags,
        GuestCr0,
        Cr0ReadShadow,
        Cr0GuestHostMask,
        GuestCr3,
        GuestCr4,
        Cr4ReadShadow,
        Cr4GuestHostMask,
        GuestEfer,
        GuestCsSelector,
        GuestCsAccessRights,
        GuestCsLimit,
        GuestCsBase,
        GuestSsSelector,
        GuestSsAccessRights,
        GuestSsLimit,
        GuestSsBase,
        GuestInterruptibility,
        GuestActivityState,
        IdtVectoringInfo,
    ]
};

/// Positions in [`EXIT_FIELDS`].
mod at {
    pub const REASON: usize = 0;
    pub const LENGTH: usize = 1;
    pub const RSP: usize = 2;
    pub const CR0: usize = 5;
    pub const CR3: usize = 8;
    pub const CR4: usize = 9;
    pub const EFER: usize = 12;
    pub const CS: usize = 13;
    pub const SS: usize = 17;
    pub const INTERRUPTIBILITY: usize = 21;
    pub const ACTIVITY: usize = 22;
    pub const VECTORING: usize = 23;
}

/// Encodes the current exit into `out` and returns the word count. `saved` holds the registers
/// the kernel saved on the exit; `requested` adds state groups to [`BASE_STATE`].
pub fn encode_exit<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    requested: Mtd,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    encode_exit_with(vmcs, saved, requested, &mut [0; EXIT_FIELD_COUNT], out)
}

/// [`encode_exit`] with the caller's scratch for the field batch (the kernel keeps one per CPU,
/// so no exit zeroes or copies it); what `raw` holds before and after does not matter.
#[inline]
pub fn encode_exit_with<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    requested: Mtd,
    raw: &mut [u64; EXIT_FIELD_COUNT],
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    if requested.union(BASE_STATE) == BASE_STATE && vmcs.read_exit_fields(raw) {
        return encode_base(vmcs, saved, raw, out);
    }
    // Larger requests (the kernel asks for BASE_STATE) and failed reads: decode, then encode.
    let mut state = VcpuState::default();
    let header = decode_exit_into(vmcs, saved, requested, &mut state)?;
    header
        .encode(&state, out)
        .map_err(ExitError::MessageEncoding)
}

/// The message word and base of the segment whose four fields start at `raw[first]`
/// (selector, access rights, limit, base).
#[inline(always)]
fn segment_words(raw: &[u64; EXIT_FIELD_COUNT], first: usize) -> [u64; 2] {
    let field = |offset: usize| raw.get(first + offset).copied().unwrap_or(0);
    [
        segment_word(
            field(0) as u16,
            attributes_from_access_rights(field(1)),
            field(2) as u32,
        ),
        field(3),
    ]
}

/// [`encode_exit`] for exactly [`BASE_STATE`] from the batch `raw`: the checks in the order
/// `decode_exit` makes them (so the first failure is the same), then each word at its fixed
/// offset.
#[inline]
fn encode_base<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    raw: &[u64; EXIT_FIELD_COUNT],
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    const H: usize = EXIT_HEADER_WORDS;
    const COUNT: usize = H + BASE_STATE.words();
    const _: () = assert!(COUNT <= MAX_EXIT_WORDS && COUNT == 35 && H == 6);
    let header = header_from(vmcs, saved, raw[at::REASON], || Ok(raw[at::LENGTH]))?;
    let activity = activity_state(raw[at::ACTIVITY])?;
    let vectoring = raw[at::VECTORING];
    // Nothing was being delivered (valid bit clear): no event, as `decode_event` concludes.
    let pending = if vectoring & INFO_VALID == 0 {
        0
    } else {
        let error_code = if vectoring & INFO_ERROR_CODE_VALID != 0 {
            read(vmcs, VmcsField::IdtVectoringErrorCode)? as u32
        } else {
            0
        };
        decode_event(
            vectoring,
            error_code,
            "IDT-vectoring information",
            Vendor::Vmx,
        )?
        .map_or(0, Event::to_word)
    };

    let Some(slots) = out.first_chunk_mut::<COUNT>() else {
        // Unreachable: COUNT <= MAX_EXIT_WORDS (checked above at compile time).
        return Ok(0);
    };
    if let Some(first) = slots.first_chunk_mut::<H>() {
        *first = exit_header_words(
            &header.reason,
            header.instruction_length,
            header.hardware_exit_code,
            BASE_STATE,
        );
    }
    // GPR_ACDB, GPR_BSD, GPR_R8_R15: the kernel-saved registers in `Gpr` order without RSP.
    let gpr = saved.gpr.as_array();
    slots[6..10].copy_from_slice(&gpr[0..4]);
    slots[10..13].copy_from_slice(&gpr[5..8]);
    slots[13..21].copy_from_slice(&gpr[8..16]);
    // RSP, RIP, RFLAGS
    slots[21..24].copy_from_slice(&raw[at::RSP..at::RSP + 3]);
    // CONTROL_REGISTERS (CR0 and CR4 as the guest sees them), EFER
    slots[24] = ControlRegisterPolicy::visible(raw[at::CR0], raw[at::CR0 + 1], raw[at::CR0 + 2]);
    slots[25] = saved.cr2;
    slots[26] = raw[at::CR3];
    slots[27] = ControlRegisterPolicy::visible(raw[at::CR4], raw[at::CR4 + 1], raw[at::CR4 + 2]);
    slots[28] = raw[at::EFER];
    // SEGMENT_CS_SS
    let [cs, cs_base] = segment_words(raw, at::CS);
    let [ss, ss_base] = segment_words(raw, at::SS);
    slots[29] = cs;
    slots[30] = cs_base;
    slots[31] = ss;
    slots[32] = ss_base;
    // INTERRUPT_STATE (blocking by SMI and enclave interruption stay in the VMCS), PENDING_EVENT
    let interruptibility = raw[at::INTERRUPTIBILITY] & INTERRUPTIBILITY_CARRIED;
    slots[33] = interrupt_state_word(
        Interruptibility::new(interruptibility as u32).unwrap_or_default(),
        activity,
    );
    slots[34] = pending;
    Ok(COUNT)
}
