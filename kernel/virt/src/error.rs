//! Named errors of exit decoding and reply application, shared by the VMX and SVM backends.
//!
//! Hardware exit information is trusted only as far as it is checked: a value the architecture
//! never produces (an undefined event type, an I/O exit without a size, an instruction length
//! above 15) becomes one of these errors, never a panic and never a malformed message. A reply
//! the VMM sends that would make VM entry fail or corrupt the guest is refused before anything
//! is written.
use core::fmt;

use sluice_abi::vcpu::{ActivityState, DecodeError, EncodeError};

use crate::vmx::fields::VmcsField;

/// Why raw exit information could not be turned into an exit message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitError {
    /// The kernel's VMREAD of this field failed.
    FieldUnreadable(VmcsField),
    /// The instruction length of an instruction exit is outside 1..=15.
    BadInstructionLength {
        /// Raw hardware exit code.
        exit_code: u64,
        /// Length reported (VMX field, or SVM nRIP - RIP).
        length: u64,
    },
    /// The faulting guest-physical address is not below 2^52.
    GuestPhysicalAddressTooWide(u64),
    /// The I/O exit information encodes no valid access size.
    BadIoSize(u64),
    /// SVM MSR exit with EXITINFO1 other than 0 (RDMSR) or 1 (WRMSR).
    BadMsrAccess(u64),
    /// A VMX exception or NMI exit whose exit interruption information is not valid.
    InterruptionInfoNotValid(u64),
    /// Event information (named source) with an event type the architecture does not define.
    BadEventType {
        /// Which field.
        source: &'static str,
        /// The raw field.
        raw: u64,
    },
    /// Event information (named source) whose vector or error code is invalid for its type.
    BadEvent {
        /// Which field.
        source: &'static str,
        /// What the exit-message ABI refused.
        error: DecodeError,
    },
    /// A GDTR or IDTR limit above 0xffff.
    DescriptorLimitTooLarge {
        /// "GDTR" or "IDTR".
        table: &'static str,
        /// The limit read.
        limit: u64,
    },
    /// Guest activity state above 3 (SDM Vol. 3C section 25.4.2).
    BadActivityState(u64),
    /// The decoded exit did not fit the message buffer (a buffer shorter than
    /// `MAX_EXIT_WORDS`).
    MessageEncoding(EncodeError),
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitError::FieldUnreadable(field) => write!(
                f,
                "VMREAD of VMCS field {field:?} (encoding {:#06x}) failed",
                field.encoding()
            ),
            ExitError::BadInstructionLength { exit_code, length } => write!(
                f,
                "exit {exit_code:#x} reports instruction length {length}, not 1..=15"
            ),
            ExitError::GuestPhysicalAddressTooWide(gpa) => {
                write!(
                    f,
                    "faulting guest-physical address {gpa:#x} is not below 2^52"
                )
            }
            ExitError::BadIoSize(raw) => {
                write!(
                    f,
                    "I/O exit information {raw:#x} encodes no valid access size"
                )
            }
            ExitError::BadMsrAccess(raw) => {
                write!(
                    f,
                    "MSR exit with EXITINFO1 {raw:#x}, neither RDMSR (0) nor WRMSR (1)"
                )
            }
            ExitError::InterruptionInfoNotValid(raw) => write!(
                f,
                "exception or NMI exit with invalid exit interruption information {raw:#x}"
            ),
            ExitError::BadEventType { source, raw } => {
                write!(f, "{source} {raw:#x} has an undefined event type")
            }
            ExitError::BadEvent { source, error } => write!(f, "{source} is invalid: {error}"),
            ExitError::DescriptorLimitTooLarge { table, limit } => {
                write!(f, "{table} limit {limit:#x} is above 0xffff")
            }
            ExitError::BadActivityState(state) => {
                write!(f, "guest activity state {state} is undefined")
            }
            ExitError::MessageEncoding(error) => write!(f, "exit message not encodable: {error}"),
        }
    }
}

/// Why a reply could not be applied; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The reply's descriptor contains the exit-only pending-event group.
    PendingEventNotWritable,
    /// RFLAGS with bit 1 clear or a reserved bit (3, 5, 15, 22..63) set (SDM Vol. 1 section 3.4.3).
    ReservedRflags(u64),
    /// An external interrupt injected while RFLAGS.IF is clear or an STI / MOV SS shadow is
    /// active (SDM Vol. 3C section 27.3.1.5).
    InterruptBlocked {
        /// RFLAGS.IF at entry.
        interrupts_enabled: bool,
        /// Interruptibility bits at entry.
        interruptibility: u32,
    },
    /// An NMI injected while blocked by MOV SS or by an earlier NMI.
    NmiBlocked {
        /// Interruptibility bits at entry.
        interruptibility: u32,
    },
    /// An exception injected with an error code where VM entry requires none, or without one
    /// where it requires one (SDM Vol. 3C section 27.2.1.3).
    ErrorCodeMismatch {
        /// The vector.
        vector: u8,
        /// Whether this entry requires an error code for it.
        required: bool,
    },
    /// An event injected while the guest is shut down or waiting for SIPI.
    InjectionWhileInactive(ActivityState),
    /// SVM has no such activity state (it intercepts HLT; there is no VMCB field).
    UnsupportedActivityState(ActivityState),
    /// SVM keeps no such interruptibility bit in the VMCB (NMI blocking is not visible).
    UnsupportedInterruptibility(u32),
    /// The kernel's VMREAD of this field failed.
    FieldUnreadable(VmcsField),
    /// The reply's words do not decode (`sluice_abi::vcpu::Reply::from_words` refuses them).
    Malformed(DecodeError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::PendingEventNotWritable => {
                write!(f, "a reply cannot write the pending-event group")
            }
            ReplyError::ReservedRflags(value) => {
                write!(f, "RFLAGS {value:#x} has bit 1 clear or a reserved bit set")
            }
            ReplyError::InterruptBlocked {
                interrupts_enabled,
                interruptibility,
            } => write!(
                f,
                "external interrupt injected while the guest cannot take it \
                 (RFLAGS.IF={}, interruptibility {interruptibility:#x})",
                u8::from(*interrupts_enabled)
            ),
            ReplyError::NmiBlocked { interruptibility } => write!(
                f,
                "NMI injected while blocked (interruptibility {interruptibility:#x})"
            ),
            ReplyError::ErrorCodeMismatch { vector, required } => {
                if *required {
                    write!(
                        f,
                        "exception {vector} must be injected with an error code here"
                    )
                } else {
                    write!(
                        f,
                        "exception {vector} must be injected without an error code here"
                    )
                }
            }
            ReplyError::InjectionWhileInactive(state) => {
                write!(
                    f,
                    "event injected while the guest activity state is {state:?}"
                )
            }
            ReplyError::UnsupportedActivityState(state) => {
                write!(f, "activity state {state:?} cannot be set on SVM")
            }
            ReplyError::UnsupportedInterruptibility(bits) => write!(
                f,
                "interruptibility bits {bits:#x} cannot be set on SVM (only the interrupt shadow)"
            ),
            ReplyError::Malformed(error) => write!(f, "malformed reply: {error}"),
            ReplyError::FieldUnreadable(field) => write!(
                f,
                "VMREAD of VMCS field {field:?} (encoding {:#06x}) failed",
                field.encoding()
            ),
        }
    }
}
