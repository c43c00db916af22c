//! Applying a VMM [`Reply`] to the VMCB before VMRUN: the state groups the reply carries (RAX,
//! RSP, RIP, RFLAGS, control registers, EFER, segments in the VMCB; the other GPRs in the
//! kernel's save area), EVENTINJ, and the interrupt window (V_IRQ with the VINTR intercept).
//! Everything is validated first, so a refused reply changes nothing.
use core::borrow::{Borrow, BorrowMut};

use sluice_abi::vcpu::{
    ActivityState, Event, Gpr, Interruptibility, Mtd, Reply, ReplyHeader, SegmentAttributes,
    REPLY_HEADER_WORDS,
};

use super::exit::{EFER_SVME, SEGMENT_GROUPS};
use super::vmcb::{
    InterceptVector3, Vmcb, VmcbField, VmcbSegment, INTERRUPT_SHADOW, VMCB_SIZE, V_IGN_TPR,
    V_INTR_PRIO_MASK, V_INTR_VECTOR_MASK, V_IRQ,
};
use crate::error::ReplyError;
use crate::state::{
    check_injection, check_rflags, injection_word, SavedRegisters, DIRECT_REPLY_GROUPS,
};
use crate::vmx::exit::GPR_GROUPS;

/// Segment attribute bit 7: present (APM Vol. 2 section 4.7.1).
const ATTRIBUTE_PRESENT: u16 = 1 << 7;
/// The exit message's "unusable" bit 12, which SVM expresses as a non-present segment.
const ATTRIBUTE_UNUSABLE: u16 = 1 << 12;

/// The VMCB attributes for `attributes`: an unusable segment becomes not present.
pub fn vmcb_attributes(attributes: SegmentAttributes) -> u64 {
    let bits = attributes.bits();
    if bits & ATTRIBUTE_UNUSABLE != 0 {
        u64::from(bits & !ATTRIBUTE_UNUSABLE & !ATTRIBUTE_PRESENT)
    } else {
        u64::from(bits)
    }
}

/// Validates `reply` against the VMCB, then writes it: state groups into `vmcb` and `saved`,
/// EVENTINJ (cleared when nothing is injected), and the interrupt window, which is armed
/// (V_IRQ, V_INTR_PRIO 15, V_IGN_TPR, VINTR intercept) when the reply asks for it and
/// disarmed otherwise.
pub fn apply_reply<B: BorrowMut<[u8; VMCB_SIZE]> + Borrow<[u8; VMCB_SIZE]>>(
    reply: &Reply,
    vmcb: &mut Vmcb<B>,
    saved: &mut SavedRegisters,
) -> Result<(), ReplyError> {
    let state = &reply.state;
    let mtd = state.mtd;
    if mtd.contains(Mtd::PENDING_EVENT) {
        return Err(ReplyError::PendingEventNotWritable);
    }
    if mtd.contains(Mtd::RFLAGS) {
        check_rflags(state.rflags)?;
    }
    let interruptibility = if mtd.contains(Mtd::INTERRUPT_STATE) {
        let unsupported = state.interruptibility.bits() & Interruptibility::BLOCKING_BY_NMI;
        if unsupported != 0 {
            return Err(ReplyError::UnsupportedInterruptibility(unsupported));
        }
        if state.activity != ActivityState::Active {
            return Err(ReplyError::UnsupportedActivityState(state.activity));
        }
        state.interruptibility
    } else {
        let shadow = vmcb.read(VmcbField::INTERRUPT_SHADOW) & INTERRUPT_SHADOW != 0;
        Interruptibility::new(if shadow {
            Interruptibility::BLOCKING_BY_STI
        } else {
            0
        })
        .unwrap_or_default()
    };
    if let Some(event) = reply.inject {
        let rflags = if mtd.contains(Mtd::RFLAGS) {
            state.rflags
        } else {
            vmcb.read(VmcbField::RFLAGS)
        };
        check_injection(event, rflags, interruptibility, ActivityState::Active)?;
    }

    // Validated: from here on nothing fails.
    for (group, registers) in GPR_GROUPS {
        if mtd.contains(group) {
            for &register in registers {
                saved.gpr.set(register, state.gpr.get(register));
            }
        }
    }
    if mtd.contains(Mtd::GPR_ACDB) {
        vmcb.write(VmcbField::RAX, state.gpr.get(Gpr::Rax));
    }
    if mtd.contains(Mtd::RSP) {
        vmcb.write(VmcbField::RSP, state.gpr.get(Gpr::Rsp));
    }
    if mtd.contains(Mtd::RIP) {
        vmcb.write(VmcbField::RIP, state.rip);
    }
    if mtd.contains(Mtd::RFLAGS) {
        vmcb.write(VmcbField::RFLAGS, state.rflags);
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        vmcb.write(VmcbField::CR0, state.cr0);
        vmcb.write(VmcbField::CR2, state.cr2);
        vmcb.write(VmcbField::CR3, state.cr3);
        vmcb.write(VmcbField::CR4, state.cr4);
    }
    if mtd.contains(Mtd::EFER) {
        vmcb.write(VmcbField::EFER, state.efer | EFER_SVME);
    }
    for (group, registers) in SEGMENT_GROUPS {
        if mtd.contains(group) {
            for register in registers {
                let segment = match register {
                    VmcbSegment::Cs => state.cs,
                    VmcbSegment::Ss => state.ss,
                    VmcbSegment::Ds => state.ds,
                    VmcbSegment::Es => state.es,
                    VmcbSegment::Fs => state.fs,
                    VmcbSegment::Gs => state.gs,
                    VmcbSegment::Tr => state.tr,
                    _ => state.ldtr,
                };
                vmcb.write(register.selector(), u64::from(segment.selector));
                vmcb.write(register.attributes(), vmcb_attributes(segment.attributes));
                vmcb.write(register.limit(), u64::from(segment.limit));
                vmcb.write(register.base(), segment.base);
            }
        }
    }
    if mtd.contains(Mtd::SEGMENT_CS_SS) {
        // The CPL is SS.DPL (APM Vol. 2 section 15.5.1, VMCB CPL field).
        vmcb.write(
            VmcbField::CPL,
            u64::from((state.ss.attributes.bits() >> 5) & 3),
        );
    }
    if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
        for (table, value) in [
            (VmcbSegment::Gdtr, state.gdtr),
            (VmcbSegment::Idtr, state.idtr),
        ] {
            vmcb.write(table.base(), value.base);
            vmcb.write(table.limit(), u64::from(value.limit));
        }
    }
    if mtd.contains(Mtd::INTERRUPT_STATE) {
        let shadow = Interruptibility::BLOCKING_BY_STI | Interruptibility::BLOCKING_BY_MOV_SS;
        let old = vmcb.read(VmcbField::INTERRUPT_SHADOW);
        let new = if state.interruptibility.bits() & shadow != 0 {
            old | INTERRUPT_SHADOW
        } else {
            old & !INTERRUPT_SHADOW
        };
        vmcb.write(VmcbField::INTERRUPT_SHADOW, new);
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        vmcb.write(VmcbField::TSC_OFFSET, state.tsc_offset);
    }
    finish(vmcb, reply.inject, reply.request_interrupt_window);
    Ok(())
}

/// EVENTINJ and the interrupt window, the last step of every applied reply.
#[inline(always)]
fn finish<B: BorrowMut<[u8; VMCB_SIZE]> + Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &mut Vmcb<B>,
    inject: Option<Event>,
    request_interrupt_window: bool,
) {
    vmcb.write(VmcbField::EVENTINJ, inject.map_or(0, injection_word));
    let virtual_interrupt = vmcb.read(VmcbField::VIRTUAL_INTERRUPT);
    let intercepts = vmcb.read(VmcbField::INTERCEPT_VECTOR_3);
    let vintr = u64::from(InterceptVector3::VINTR.bits());
    let (virtual_interrupt, intercepts) = if request_interrupt_window {
        // A virtual interrupt of top priority that ignores V_TPR: the guest "takes" it, and
        // the VINTR intercept exits first (APM Vol. 2 section 15.21.4).
        (
            (virtual_interrupt & !V_INTR_VECTOR_MASK) | V_IRQ | V_INTR_PRIO_MASK | V_IGN_TPR,
            intercepts | vintr,
        )
    } else {
        (virtual_interrupt & !V_IRQ, intercepts & !vintr)
    };
    if virtual_interrupt != vmcb.read(VmcbField::VIRTUAL_INTERRUPT) {
        vmcb.write(VmcbField::VIRTUAL_INTERRUPT, virtual_interrupt);
    }
    if intercepts != vmcb.read(VmcbField::INTERCEPT_VECTOR_3) {
        vmcb.write(VmcbField::INTERCEPT_VECTOR_3, intercepts);
    }
}

/// Decodes the reply in `words` and applies it: the same result as `Reply::from_words`
/// followed by [`apply_reply`] (a malformed reply is `ReplyError::Malformed`, a refused one
/// the error `apply_reply` gives; either way nothing changes), without building a [`Reply`]
/// when the reply carries only GPRs, RSP, RIP, RFLAGS, control registers, EFER or the TSC
/// offset (the usual answer to an exit). Other replies are decoded into `scratch` and go
/// through `apply_reply`. The tests compare both paths on random replies and VMCBs.
#[inline]
pub fn apply_reply_words<B: BorrowMut<[u8; VMCB_SIZE]> + Borrow<[u8; VMCB_SIZE]>>(
    words: &[u64],
    vmcb: &mut Vmcb<B>,
    saved: &mut SavedRegisters,
    scratch: &mut Reply,
) -> Result<(), ReplyError> {
    let header = ReplyHeader::decode(words).map_err(ReplyError::Malformed)?;
    let mtd = header.mtd;
    if !DIRECT_REPLY_GROUPS.contains(mtd) {
        scratch.decode_into(words).map_err(ReplyError::Malformed)?;
        return apply_reply(scratch, vmcb, saved);
    }
    // ReplyHeader checked the length: exactly the words of `mtd` follow the header, group by
    // group in bit order, so a group's words start after the words of the lower groups.
    let state = words.get(REPLY_HEADER_WORDS..).unwrap_or(&[]);
    let word = |index: usize| state.get(index).copied().unwrap_or(0);
    let at = |group: Mtd| Mtd::from_bits(mtd.bits() & (group.bits() - 1)).map_or(0, Mtd::words);

    // The only checks of the direct groups: RFLAGS, and an injection against it (the usual
    // answer, GPRs and RIP with nothing to inject, needs neither).
    let rflags = if mtd.contains(Mtd::RFLAGS) {
        let rflags = word(at(Mtd::RFLAGS));
        check_rflags(rflags)?;
        Some(rflags)
    } else {
        None
    };
    if let Some(event) = header.inject {
        let shadow = vmcb.read(VmcbField::INTERRUPT_SHADOW) & INTERRUPT_SHADOW != 0;
        let interruptibility = Interruptibility::new(if shadow {
            Interruptibility::BLOCKING_BY_STI
        } else {
            0
        })
        .unwrap_or_default();
        let rflags = rflags.unwrap_or_else(|| vmcb.read(VmcbField::RFLAGS));
        check_injection(event, rflags, interruptibility, ActivityState::Active)?;
    }

    // Validated: from here on nothing fails. The groups in message order.
    let mut next = 0;
    if mtd.contains(Mtd::GPR_ACDB) {
        for register in [Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx] {
            saved.gpr.set(register, word(next));
            next += 1;
        }
        vmcb.write(VmcbField::RAX, saved.gpr.get(Gpr::Rax));
    }
    if mtd.contains(Mtd::GPR_BSD) {
        for register in [Gpr::Rbp, Gpr::Rsi, Gpr::Rdi] {
            saved.gpr.set(register, word(next));
            next += 1;
        }
    }
    if mtd.contains(Mtd::GPR_R8_R15) {
        for register in [
            Gpr::R8,
            Gpr::R9,
            Gpr::R10,
            Gpr::R11,
            Gpr::R12,
            Gpr::R13,
            Gpr::R14,
            Gpr::R15,
        ] {
            saved.gpr.set(register, word(next));
            next += 1;
        }
    }
    if mtd.contains(Mtd::RSP) {
        vmcb.write(VmcbField::RSP, word(next));
        next += 1;
    }
    if mtd.contains(Mtd::RIP) {
        vmcb.write(VmcbField::RIP, word(next));
        next += 1;
    }
    if let Some(rflags) = rflags {
        vmcb.write(VmcbField::RFLAGS, rflags);
        next += 1;
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        vmcb.write(VmcbField::CR0, word(next));
        vmcb.write(VmcbField::CR2, word(next + 1));
        vmcb.write(VmcbField::CR3, word(next + 2));
        vmcb.write(VmcbField::CR4, word(next + 3));
        next += 4;
    }
    if mtd.contains(Mtd::EFER) {
        vmcb.write(VmcbField::EFER, word(next) | EFER_SVME);
        next += 1;
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        vmcb.write(VmcbField::TSC_OFFSET, word(next));
    }
    finish(vmcb, header.inject, header.request_interrupt_window);
    Ok(())
}
