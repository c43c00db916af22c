//! The VMX exit written straight into message words: what the kernel sends on every exit.
//!
//! [`encode_exit`] gives exactly the words (and the errors) of [`decode_exit`] followed by
//! `ExitMessage::to_words`; the tests compare both on random VMCS contents. For the state the
//! kernel asks for ([`BASE_STATE`]) every field is read once with VMREAD and stored at its fixed
//! offset, without building a [`VcpuState`] or computing positions (the decode-then-encode route
//! cost ~1,300 instructions per exit on Bochs, this one ~150).
//!
//! [`decode_exit`]: super::exit::decode_exit
use sluice_abi::vcpu::{
    exit_header_words, interrupt_state_word, segment_word, Event, Interruptibility, Mtd, VcpuState,
    EXIT_HEADER_WORDS, MAX_EXIT_WORDS,
};

use super::controls::ControlRegisterPolicy;
use super::exit::{
    activity_state, decode_exit_into, decode_header, read, read_segment, INFO_ERROR_CODE_VALID,
    INFO_VALID, INTERRUPTIBILITY_CARRIED,
};
use super::fields::{GuestSegment, VmcsField};
use super::VmcsRead;
use crate::error::ExitError;
use crate::state::{decode_event, ExitHeader, SavedRegisters, Vendor, BASE_STATE};

/// Encodes the current exit into `out` and returns the word count. `saved` holds the registers
/// the kernel saved on the exit; `requested` adds state groups to [`BASE_STATE`].
#[inline]
pub fn encode_exit<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    requested: Mtd,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    if requested.union(BASE_STATE) == BASE_STATE {
        let header = decode_header(vmcs, saved)?;
        return encode_base(vmcs, saved, &header, out);
    }
    // Larger requests are rare (the kernel asks for BASE_STATE): decode, then encode.
    let mut state = VcpuState::default();
    let header = decode_exit_into(vmcs, saved, requested, &mut state)?;
    header
        .encode(&state, out)
        .map_err(ExitError::MessageEncoding)
}

/// [`encode_exit`] for exactly [`BASE_STATE`]: the fields in the order `decode_exit` reads them
/// (so the first failure is the same), then each word at its fixed offset.
#[inline]
fn encode_base<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    header: &ExitHeader,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    use VmcsField::*;
    const H: usize = EXIT_HEADER_WORDS;
    const COUNT: usize = H + BASE_STATE.words();
    const _: () = assert!(COUNT <= MAX_EXIT_WORDS && COUNT == 35 && H == 6);
    let rsp = read(vmcs, GuestRsp)?;
    let rip = read(vmcs, GuestRip)?;
    let rflags = read(vmcs, GuestRflags)?;
    let cr0 = ControlRegisterPolicy::visible(
        read(vmcs, GuestCr0)?,
        read(vmcs, Cr0ReadShadow)?,
        read(vmcs, Cr0GuestHostMask)?,
    );
    let cr3 = read(vmcs, GuestCr3)?;
    let cr4 = ControlRegisterPolicy::visible(
        read(vmcs, GuestCr4)?,
        read(vmcs, Cr4ReadShadow)?,
        read(vmcs, Cr4GuestHostMask)?,
    );
    let efer = read(vmcs, GuestEfer)?;
    let cs = read_segment(vmcs, GuestSegment::Cs)?;
    let ss = read_segment(vmcs, GuestSegment::Ss)?;
    let interruptibility = read(vmcs, GuestInterruptibility)? & INTERRUPTIBILITY_CARRIED;
    let activity = activity_state(read(vmcs, GuestActivityState)?)?;
    let vectoring = read(vmcs, IdtVectoringInfo)?;
    // Nothing was being delivered (valid bit clear): no event, as `decode_event` concludes.
    let pending = if vectoring & INFO_VALID == 0 {
        0
    } else {
        let error_code = if vectoring & INFO_ERROR_CODE_VALID != 0 {
            read(vmcs, IdtVectoringErrorCode)? as u32
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
    let header_words = exit_header_words(
        &header.reason,
        header.instruction_length,
        header.hardware_exit_code,
        BASE_STATE,
    );
    if let Some(first) = slots.first_chunk_mut::<H>() {
        *first = header_words;
    }
    // GPR_ACDB, GPR_BSD, GPR_R8_R15: the kernel-saved registers in `Gpr` order without RSP.
    let gpr = saved.gpr.as_array();
    slots[6..10].copy_from_slice(&gpr[0..4]);
    slots[10..13].copy_from_slice(&gpr[5..8]);
    slots[13..21].copy_from_slice(&gpr[8..16]);
    // RSP, RIP, RFLAGS
    slots[21] = rsp;
    slots[22] = rip;
    slots[23] = rflags;
    // CONTROL_REGISTERS, EFER
    slots[24] = cr0;
    slots[25] = saved.cr2;
    slots[26] = cr3;
    slots[27] = cr4;
    slots[28] = efer;
    // SEGMENT_CS_SS
    slots[29] = segment_word(cs.selector, cs.attributes, cs.limit);
    slots[30] = cs.base;
    slots[31] = segment_word(ss.selector, ss.attributes, ss.limit);
    slots[32] = ss.base;
    // INTERRUPT_STATE, PENDING_EVENT
    slots[33] = interrupt_state_word(
        Interruptibility::new(interruptibility as u32).unwrap_or_default(),
        activity,
    );
    slots[34] = pending;
    Ok(COUNT)
}
