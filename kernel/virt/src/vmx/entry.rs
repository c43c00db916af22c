//! Applying a VMM [`Reply`] on VMX: the list of VMWRITEs (state groups the reply carries, event
//! injection through the VM-entry interruption-information field, interrupt-window exiting),
//! plus the kernel-saved registers to restore. Everything is validated before the plan exists,
//! so a refused reply changes nothing.
use heapless::Vec;
use sluice_abi::vcpu::{ActivityState, Event, Gpr, Interruptibility, Mtd, Reply};

use super::control_bits::{EntryControls, PrimaryProcessorControls};
use super::controls::ControlRegisterPolicy;
use super::exit::{activity_state, GPR_GROUPS, SEGMENT_GROUPS};
use super::fields::VmcsField;
use super::{read_field, VmcsRead};
use crate::error::ReplyError;
use crate::state::{
    access_rights_from_attributes, check_injection, check_rflags, injection_word, SavedRegisters,
};

/// Most VMWRITEs one plan can hold (every group, an injection and the window control).
pub const MAX_ENTRY_WRITES: usize = 64;

/// IA32_EFER.LMA (SDM Vol. 3A section 2.2.1).
const EFER_LMA: u64 = 1 << 10;
/// CR0.PE.
const CR0_PE: u64 = 1 << 0;
/// Interruptibility bits the reply controls (STI, MOV SS, NMI).
const INTERRUPTIBILITY_CARRIED: u64 = 0b1011;
/// Exceptions for which VM entry requires an error code in protected mode and refuses one
/// otherwise: #DF, #TS, #NP, #SS, #GP, #PF, #AC (SDM Vol. 3C section 27.2.1.3).
const ERROR_CODE_VECTORS: [u8; 7] = [8, 10, 11, 12, 13, 14, 17];

/// One VMWRITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcsWrite {
    /// The field.
    pub field: VmcsField,
    /// The value.
    pub value: u64,
}

/// What the kernel does before VMRESUME: VMWRITE every entry of `writes` in order, and restore
/// the guest GPRs (and CR2) from `saved`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryPlan {
    /// VMWRITEs in order.
    pub writes: Vec<VmcsWrite, MAX_ENTRY_WRITES>,
    /// The kernel-saved registers with the reply's updates applied.
    pub saved: SavedRegisters,
}

impl EntryPlan {
    /// The value of the last write to `field`, if the plan writes it.
    pub fn value_of(&self, field: VmcsField) -> Option<u64> {
        self.writes
            .iter()
            .rev()
            .find(|write| write.field == field)
            .map(|write| write.value)
    }
}

fn read<V: VmcsRead + ?Sized>(vmcs: &V, field: VmcsField) -> Result<u64, ReplyError> {
    read_field(vmcs, field, ReplyError::FieldUnreadable)
}

/// The guest's interruptibility (the bits a reply controls) and activity state, from the VMCS.
pub(crate) fn interrupt_state<V: VmcsRead + ?Sized>(
    vmcs: &V,
) -> Result<(Interruptibility, ActivityState), ReplyError> {
    let raw = read(vmcs, VmcsField::GuestInterruptibility)? & INTERRUPTIBILITY_CARRIED;
    let activity = activity_state(read(vmcs, VmcsField::GuestActivityState)?)
        .map_err(|_| ReplyError::FieldUnreadable(VmcsField::GuestActivityState))?;
    Ok((
        Interruptibility::new(raw as u32).unwrap_or_default(),
        activity,
    ))
}

/// Validates `reply` against the current VMCS and returns the writes that apply it.
///
/// The interrupt-window exiting control is set to `reply.request_interrupt_window` on every
/// reply, so it is armed when asked for and disarmed by the first reply that does not ask
/// (normally the one answering the window exit).
pub fn plan_entry<V: VmcsRead + ?Sized>(
    reply: &Reply,
    vmcs: &V,
    saved: &SavedRegisters,
    policy: &ControlRegisterPolicy,
) -> Result<EntryPlan, ReplyError> {
    let mut writes = Vec::new();
    let mut saved = *saved;
    apply_entry(reply, vmcs, &mut saved, policy, |field, value| {
        // MAX_ENTRY_WRITES covers a reply with every group, an injection and the window
        // control (see the test `a_reply_with_every_group_fits`), so this never drops a write.
        let _ = writes.push(VmcsWrite { field, value });
    })?;
    Ok(EntryPlan { writes, saved })
}

/// [`plan_entry`] without the plan: validates `reply` exactly as it does, and only when it is
/// accepted calls `write` with each VMWRITE of the plan, in order (values already truncated to
/// the field's width), and applies the reply's register updates to `saved`. A refused reply
/// calls nothing and leaves `saved` alone. `plan_entry` is built on this, so both agree.
pub fn apply_entry<V: VmcsRead + ?Sized, W: FnMut(VmcsField, u64)>(
    reply: &Reply,
    vmcs: &V,
    saved: &mut SavedRegisters,
    policy: &ControlRegisterPolicy,
    mut write: W,
) -> Result<(), ReplyError> {
    let state = &reply.state;
    let mtd = state.mtd;
    if mtd.contains(Mtd::PENDING_EVENT) {
        return Err(ReplyError::PendingEventNotWritable);
    }
    if mtd.contains(Mtd::RFLAGS) {
        check_rflags(state.rflags)?;
    }
    // Everything read from the VMCS is read before the plan is built.
    let primary = read(vmcs, VmcsField::PrimaryProcessorControls)?;
    let entry_controls = if mtd.contains(Mtd::EFER) {
        read(vmcs, VmcsField::EntryControls)?
    } else {
        0
    };
    // The interrupt state matters only to an injection (its checks, and waking a halted guest).
    let (interruptibility, activity) = match reply.inject {
        None => (Interruptibility::default(), ActivityState::Active),
        Some(_) if mtd.contains(Mtd::INTERRUPT_STATE) => (state.interruptibility, state.activity),
        Some(_) => interrupt_state(vmcs)?,
    };
    if let Some(event) = reply.inject {
        let rflags = if mtd.contains(Mtd::RFLAGS) {
            state.rflags
        } else {
            read(vmcs, VmcsField::GuestRflags)?
        };
        let cr0 = mtd.contains(Mtd::CONTROL_REGISTERS).then_some(state.cr0);
        check_event(event, rflags, interruptibility, activity, cr0, vmcs, policy)?;
    }

    let mut plan = |field: VmcsField, value: u64| write(field, field.truncate(value));
    for (group, registers) in GPR_GROUPS {
        if mtd.contains(group) {
            for &register in registers {
                saved.gpr.set(register, state.gpr.get(register));
            }
        }
    }
    if mtd.contains(Mtd::RSP) {
        plan(VmcsField::GuestRsp, state.gpr.get(Gpr::Rsp));
    }
    if mtd.contains(Mtd::RIP) {
        plan(VmcsField::GuestRip, state.rip);
    }
    if mtd.contains(Mtd::RFLAGS) {
        plan(VmcsField::GuestRflags, state.rflags);
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        write_control_registers(
            [state.cr0, state.cr2, state.cr3, state.cr4],
            policy,
            saved,
            &mut plan,
        );
    }
    if mtd.contains(Mtd::EFER) {
        write_efer(state.efer, entry_controls, &mut plan);
    }
    for (group, registers) in SEGMENT_GROUPS {
        if mtd.contains(group) {
            for register in registers {
                let segment = match register {
                    super::GuestSegment::Cs => state.cs,
                    super::GuestSegment::Ss => state.ss,
                    super::GuestSegment::Ds => state.ds,
                    super::GuestSegment::Es => state.es,
                    super::GuestSegment::Fs => state.fs,
                    super::GuestSegment::Gs => state.gs,
                    super::GuestSegment::Tr => state.tr,
                    super::GuestSegment::Ldtr => state.ldtr,
                };
                let fields = register.fields();
                plan(fields.selector, u64::from(segment.selector));
                plan(fields.base, segment.base);
                plan(fields.limit, u64::from(segment.limit));
                plan(
                    fields.access_rights,
                    access_rights_from_attributes(segment.attributes),
                );
            }
        }
    }
    if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
        plan(VmcsField::GuestGdtrBase, state.gdtr.base);
        plan(VmcsField::GuestGdtrLimit, u64::from(state.gdtr.limit));
        plan(VmcsField::GuestIdtrBase, state.idtr.base);
        plan(VmcsField::GuestIdtrLimit, u64::from(state.idtr.limit));
    }
    if mtd.contains(Mtd::INTERRUPT_STATE) {
        plan(
            VmcsField::GuestInterruptibility,
            u64::from(state.interruptibility.bits()),
        );
        plan(VmcsField::GuestActivityState, state.activity as u64);
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        plan(VmcsField::TscOffset, state.tsc_offset);
    }
    finish(
        reply.inject,
        activity,
        reply.request_interrupt_window,
        primary,
        &mut plan,
    );
    Ok(())
}

/// The checks of injecting `event` that VM entry would otherwise fail on: blocking by RFLAGS.IF,
/// interruptibility and activity, and an exception's error code, required exactly in protected
/// mode for #DF, #TS, #NP, #SS, #GP, #PF and #AC. `cr0` is the reply's, or `None` to read the
/// guest's from the VMCS.
#[inline]
pub(crate) fn check_event<V: VmcsRead + ?Sized>(
    event: Event,
    rflags: u64,
    interruptibility: Interruptibility,
    activity: ActivityState,
    cr0: Option<u64>,
    vmcs: &V,
    policy: &ControlRegisterPolicy,
) -> Result<(), ReplyError> {
    check_injection(event, rflags, interruptibility, activity)?;
    if let Event::Exception(exception) = event {
        let cr0 = match cr0 {
            Some(cr0) => cr0,
            None => read(vmcs, VmcsField::GuestCr0)?,
        };
        let protected = cr0 & CR0_PE != 0 || !policy.unrestricted_guest;
        let vector = exception.vector().number();
        let required = protected && ERROR_CODE_VECTORS.contains(&vector);
        if exception.error_code().is_some() != required {
            return Err(ReplyError::ErrorCodeMismatch { vector, required });
        }
    }
    Ok(())
}

/// The control-register group (`[cr0, cr2, cr3, cr4]` as the guest sees them): CR0 and CR4
/// through the policy with their read shadows, CR3, and CR2 into the kernel's save area.
#[inline]
pub(crate) fn write_control_registers(
    [cr0, cr2, cr3, cr4]: [u64; 4],
    policy: &ControlRegisterPolicy,
    saved: &mut SavedRegisters,
    plan: &mut impl FnMut(VmcsField, u64),
) {
    plan(VmcsField::GuestCr0, policy.guest_cr0(cr0));
    plan(VmcsField::Cr0ReadShadow, cr0);
    plan(VmcsField::GuestCr3, cr3);
    plan(VmcsField::GuestCr4, policy.guest_cr4(cr4));
    plan(VmcsField::Cr4ReadShadow, cr4);
    saved.cr2 = cr2;
}

/// The EFER group: guest EFER, and "IA-32e mode guest" equal to EFER.LMA as VM entry requires
/// (SDM Vol. 3C section 27.3.1.1); `entry_controls` is the current VM-entry controls field.
#[inline]
pub(crate) fn write_efer(efer: u64, entry_controls: u64, plan: &mut impl FnMut(VmcsField, u64)) {
    plan(VmcsField::GuestEfer, efer);
    let long_mode = EntryControls::IA32E_MODE_GUEST.bits() as u64;
    let controls = if efer & EFER_LMA != 0 {
        entry_controls | long_mode
    } else {
        entry_controls & !long_mode
    };
    plan(VmcsField::EntryControls, controls);
}

/// The last writes of every reply: the injection (interruption information, error code, and a
/// halted guest made active, SDM Vol. 3C section 27.6.1.2), then interrupt-window exiting set
/// to the request when it differs from `primary`, the current primary controls.
#[inline(always)]
pub(crate) fn finish(
    inject: Option<Event>,
    activity: ActivityState,
    request_interrupt_window: bool,
    primary: u64,
    plan: &mut impl FnMut(VmcsField, u64),
) {
    if let Some(event) = inject {
        let word = injection_word(event);
        plan(VmcsField::EntryInterruptionInfo, word & 0xffff_ffff);
        if let Event::Exception(exception) = event {
            if let Some(code) = exception.error_code() {
                plan(VmcsField::EntryExceptionErrorCode, u64::from(code));
            }
        }
        if activity == ActivityState::Hlt {
            plan(VmcsField::GuestActivityState, ActivityState::Active as u64);
        }
    }
    let window = u64::from(PrimaryProcessorControls::INTERRUPT_WINDOW_EXITING.bits());
    let wanted = if request_interrupt_window {
        primary | window
    } else {
        primary & !window
    };
    if wanted != primary {
        plan(VmcsField::PrimaryProcessorControls, wanted);
    }
}
