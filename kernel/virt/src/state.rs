//! What both backends share: the registers the kernel saves itself on an exit, the state groups
//! every exit carries, the common event-information layout (VMX IDT-vectoring / entry
//! interruption information and SVM EXITINTINFO / EVENTINJ agree on bits 0..12 and 31), the
//! checks an injection must pass, and segment attribute conversion.
use sluice_abi::vcpu::{
    encode_exit, ActivityState, DecodeError, EncodeError, Event, Exception, ExceptionVector,
    ExitMessage, ExitReason, GeneralRegisters, InstructionLength, Interruptibility, Mtd,
    SegmentAttributes, VcpuState, MAX_EXIT_WORDS,
};

use crate::error::{ExitError, ReplyError};

/// State groups every exit message carries: the vmm-server's `REQUIRED_STATE`
/// (`vmm-server/core/src/vmm.rs`); a vCPU may ask for more.
pub const BASE_STATE: Mtd = Mtd::GPR_ACDB
    .union(Mtd::GPR_BSD)
    .union(Mtd::GPR_R8_R15)
    .union(Mtd::RSP)
    .union(Mtd::RIP)
    .union(Mtd::RFLAGS)
    .union(Mtd::CONTROL_REGISTERS)
    .union(Mtd::EFER)
    .union(Mtd::SEGMENT_CS_SS)
    .union(Mtd::INTERRUPT_STATE)
    .union(Mtd::PENDING_EVENT);

/// Reply groups whose words need no checks of their own beyond RFLAGS (see `ReplyHeader`): a
/// reply of only these is applied straight from its words on both backends.
pub(crate) const DIRECT_REPLY_GROUPS: Mtd = Mtd::GPR_ACDB
    .union(Mtd::GPR_BSD)
    .union(Mtd::GPR_R8_R15)
    .union(Mtd::RSP)
    .union(Mtd::RIP)
    .union(Mtd::RFLAGS)
    .union(Mtd::CONTROL_REGISTERS)
    .union(Mtd::EFER)
    .union(Mtd::TSC_OFFSET);

/// An exit message without its state (see `svm::decode_exit_into`, `vmx::decode_exit_into`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitHeader {
    /// Why the guest exited.
    pub reason: ExitReason,
    /// Length of the exiting instruction, when known.
    pub instruction_length: Option<InstructionLength>,
    /// Raw hardware exit code.
    pub hardware_exit_code: u64,
}

impl ExitHeader {
    /// The message of this header and `state`.
    pub fn into_message(self, state: VcpuState) -> ExitMessage {
        ExitMessage {
            reason: self.reason,
            instruction_length: self.instruction_length,
            hardware_exit_code: self.hardware_exit_code,
            state,
        }
    }

    /// Encodes the message of this header and `state` into `out` (the words
    /// `ExitMessage::to_words` writes for it), returning the word count.
    pub fn encode(&self, state: &VcpuState, out: &mut [u64]) -> Result<usize, EncodeError> {
        encode_exit(
            &self.reason,
            self.instruction_length,
            self.hardware_exit_code,
            state,
            out,
        )
    }
}

/// Fills an exit buffer whose size covers every message (`MAX_EXIT_WORDS`).
pub(crate) struct Words<'a> {
    pub(crate) out: &'a mut [u64; MAX_EXIT_WORDS],
    pub(crate) position: usize,
}

impl Words<'_> {
    #[inline]
    pub(crate) fn put(&mut self, word: u64) {
        // The descriptor's words never exceed MAX_EXIT_WORDS, so the slot always exists.
        if let Some(slot) = self.out.get_mut(self.position) {
            *slot = word;
        }
        self.position += 1;
    }
}

/// Guest registers the kernel saves and restores itself around VM entry, because neither the
/// VMCS nor the VMCB holds them.
///
/// VMX: every general-purpose register except RSP (which is in the VMCS), and CR2.
/// SVM: every general-purpose register except RAX and RSP (which are in the VMCB); `cr2` is
/// unused (the VMCB holds CR2). Slots the backend takes from the VMCS / VMCB are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SavedRegisters {
    /// General-purpose registers.
    pub gpr: GeneralRegisters,
    /// CR2 (VMX only).
    pub cr2: u64,
}

/// RFLAGS.IF (SDM Vol. 1 section 3.4.3.3).
pub const RFLAGS_INTERRUPT_ENABLE: u64 = 1 << 9;
/// RFLAGS bit 1, always 1 (SDM Vol. 1 section 3.4.3).
const RFLAGS_FIXED_ONE: u64 = 1 << 1;
/// RFLAGS bits that must be 0: 3, 5, 15 and 22..63 (SDM Vol. 1 Figure 3-8; VM-entry check in
/// SDM Vol. 3C section 27.3.1.4).
const RFLAGS_RESERVED: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);

/// Bit 31 of event information: valid (SDM Vol. 3C section 25.9.3; APM Vol. 2 section 15.20).
pub(crate) const EVENT_VALID: u64 = 1 << 31;
/// Bit 11 of event information: an error code is delivered.
pub(crate) const EVENT_ERROR_CODE_VALID: u64 = 1 << 11;

/// Event types in bits 8..11 of event information. The VMX and SVM codes agree for the three
/// types a reply can inject (SDM Vol. 3C Table 25-17; APM Vol. 2 section 15.20).
pub(crate) mod event_type {
    /// External interrupt (VMX) / INTR (SVM).
    pub const EXTERNAL_INTERRUPT: u64 = 0;
    /// NMI.
    pub const NMI: u64 = 2;
    /// Hardware exception (VMX) / exception (SVM).
    pub const EXCEPTION: u64 = 3;
    /// Software interrupt INT n.
    pub const SOFTWARE_INTERRUPT: u64 = 4;
    /// VMX: privileged software exception (INT1).
    pub const PRIVILEGED_SOFTWARE_EXCEPTION: u64 = 5;
    /// VMX: software exception (INT3, INTO).
    pub const SOFTWARE_EXCEPTION: u64 = 6;
}

/// Which vendor's event encoding is being decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Vendor {
    Vmx,
    Svm,
}

/// Decodes event information (`raw` bits 0..32) plus its error code into the event the VMM must
/// re-inject. Events raised by an instruction (INT n, INT3, INTO, INT1) come back as `None`:
/// the exit leaves RIP on the instruction, so resuming executes it again and raises them anew.
pub(crate) fn decode_event(
    raw: u64,
    error_code: u32,
    source: &'static str,
    vendor: Vendor,
) -> Result<Option<Event>, ExitError> {
    if raw & EVENT_VALID == 0 {
        return Ok(None);
    }
    let vector = (raw & 0xff) as u8;
    let kind = (raw >> 8) & 0x7;
    let has_error_code = raw & EVENT_ERROR_CODE_VALID != 0;
    let bad = |error: DecodeError| ExitError::BadEvent { source, error };
    if has_error_code && kind != event_type::EXCEPTION {
        return Err(bad(DecodeError::ErrorCodeNotAllowed(vector)));
    }
    match (kind, vendor) {
        (event_type::EXTERNAL_INTERRUPT, _) => Ok(Some(Event::ExternalInterrupt(vector))),
        (event_type::NMI, _) if vector == 2 => Ok(Some(Event::Nmi)),
        (event_type::NMI, _) => Err(bad(DecodeError::BadVector(vector))),
        // SVM reports INT3 / INTO as exceptions; they are re-executed like software exceptions.
        (event_type::EXCEPTION, Vendor::Svm) if vector == 3 || vector == 4 => Ok(None),
        (event_type::EXCEPTION, _) => {
            let number = ExceptionVector::new(vector).ok_or(bad(DecodeError::BadVector(vector)))?;
            let exception =
                Exception::new(number, has_error_code.then_some(error_code)).map_err(bad)?;
            Ok(Some(Event::Exception(exception)))
        }
        (event_type::SOFTWARE_INTERRUPT, _) => Ok(None),
        (
            event_type::PRIVILEGED_SOFTWARE_EXCEPTION | event_type::SOFTWARE_EXCEPTION,
            Vendor::Vmx,
        ) => Ok(None),
        _ => Err(ExitError::BadEventType { source, raw }),
    }
}

/// The event-injection word for `event`: vector | type << 8 | error-code valid << 11 | valid
/// << 31 | error code << 32 (the SVM EVENTINJ layout; VMX writes bits 0..32 to the VM-entry
/// interruption-information field and the error code to its own field).
pub(crate) fn injection_word(event: Event) -> u64 {
    match event {
        Event::ExternalInterrupt(vector) => {
            u64::from(vector) | event_type::EXTERNAL_INTERRUPT << 8 | EVENT_VALID
        }
        Event::Nmi => 2 | event_type::NMI << 8 | EVENT_VALID,
        Event::Exception(exception) => {
            let base = u64::from(exception.vector().number()) | event_type::EXCEPTION << 8;
            match exception.error_code() {
                Some(code) => base | EVENT_ERROR_CODE_VALID | EVENT_VALID | u64::from(code) << 32,
                None => base | EVENT_VALID,
            }
        }
    }
}

/// Refuses RFLAGS values VM entry would reject.
pub(crate) fn check_rflags(value: u64) -> Result<(), ReplyError> {
    if value & RFLAGS_RESERVED != 0 || value & RFLAGS_FIXED_ONE == 0 {
        return Err(ReplyError::ReservedRflags(value));
    }
    Ok(())
}

/// Refuses an injection the guest cannot take in the state it will enter with (SDM Vol. 3C
/// section 27.3.1.5: external interrupts need IF = 1 and no STI / MOV SS blocking; NMIs need no
/// MOV SS or NMI blocking; nothing is injected into a shut-down or SIPI-waiting guest).
pub(crate) fn check_injection(
    event: Event,
    rflags: u64,
    interruptibility: Interruptibility,
    activity: ActivityState,
) -> Result<(), ReplyError> {
    if matches!(
        activity,
        ActivityState::Shutdown | ActivityState::WaitForSipi
    ) {
        return Err(ReplyError::InjectionWhileInactive(activity));
    }
    let bits = interruptibility.bits();
    match event {
        Event::ExternalInterrupt(_) => {
            let shadow = Interruptibility::BLOCKING_BY_STI | Interruptibility::BLOCKING_BY_MOV_SS;
            let enabled = rflags & RFLAGS_INTERRUPT_ENABLE != 0;
            if !enabled || bits & shadow != 0 {
                return Err(ReplyError::InterruptBlocked {
                    interrupts_enabled: enabled,
                    interruptibility: bits,
                });
            }
        }
        Event::Nmi => {
            let blocking = Interruptibility::BLOCKING_BY_MOV_SS | Interruptibility::BLOCKING_BY_NMI;
            if bits & blocking != 0 {
                return Err(ReplyError::NmiBlocked {
                    interruptibility: bits,
                });
            }
        }
        Event::Exception(_) => {}
    }
    Ok(())
}

/// VMX access rights (SDM Vol. 3C section 25.4.1, Table 25-2) to the exit message's SVM-format
/// attributes: bits 0..8 stay, bits 12..16 move to 8..12, unusable (bit 16) goes to bit 12.
pub fn attributes_from_access_rights(access_rights: u64) -> SegmentAttributes {
    let bits = (access_rights & 0xff)
        | ((access_rights >> 4) & 0xf00)
        | (((access_rights >> 16) & 1) << 12);
    // At most 13 bits are set, which is exactly what SegmentAttributes accepts.
    SegmentAttributes::new(bits as u16).unwrap_or_default()
}

/// The inverse of [`attributes_from_access_rights`].
pub fn access_rights_from_attributes(attributes: SegmentAttributes) -> u64 {
    let bits = u64::from(attributes.bits());
    (bits & 0xff) | ((bits & 0xf00) << 4) | (((bits >> 12) & 1) << 16)
}
