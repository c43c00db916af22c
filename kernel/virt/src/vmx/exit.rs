//! VMX exit decoding: the exit-reason field, exit qualification, guest-physical address,
//! instruction length, interruption and IDT-vectoring information and the guest-state area
//! (SDM Vol. 3C chapter 28, section 28.2) become one [`ExitMessage`].
//!
//! Reason mapping (basic exit reason, SDM Vol. 3D Appendix C): 0 exception -> `Exception` (an
//! NMI -> `Preempted`: the kernel delivers host NMIs itself), 1 external interrupt and 52
//! preemption timer -> `Preempted`, 2 -> `TripleFault`, 7 -> `InterruptWindow`, 10 -> `Cpuid`,
//! 12 -> `Hlt`, 30 -> `Io`, 31 / 32 -> `MsrRead` / `MsrWrite`, 48 -> `MemoryFault`, 33 ->
//! `InvalidGuestState`, anything else -> `Unknown` with the exit qualification.
use sluice_abi::vcpu::{
    ActivityState, DecodeError, DescriptorTable, Exception, ExceptionVector, ExitMessage,
    ExitReason, GeneralRegisters, Gpr, GuestPhys, InstructionLength, Interruptibility, IoDirection,
    IoExit, IoSize, MemoryAccess, Mtd, Segment, VcpuState,
};

use super::controls::ControlRegisterPolicy;
use super::fields::{exit_reason, GuestSegment, VmcsField};
use super::{read_field, VmcsRead};
use crate::error::ExitError;
use crate::state::{
    attributes_from_access_rights, decode_event, ExitHeader, SavedRegisters, Vendor, BASE_STATE,
};

/// General-purpose registers of each state group, in message order.
pub(crate) const GPR_GROUPS: [(Mtd, &[Gpr]); 3] = [
    (Mtd::GPR_ACDB, &[Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx]),
    (Mtd::GPR_BSD, &[Gpr::Rbp, Gpr::Rsi, Gpr::Rdi]),
    (
        Mtd::GPR_R8_R15,
        &[
            Gpr::R8,
            Gpr::R9,
            Gpr::R10,
            Gpr::R11,
            Gpr::R12,
            Gpr::R13,
            Gpr::R14,
            Gpr::R15,
        ],
    ),
];

/// Segment groups and their registers, in message order.
pub(crate) const SEGMENT_GROUPS: [(Mtd, [GuestSegment; 2]); 4] = [
    (Mtd::SEGMENT_CS_SS, [GuestSegment::Cs, GuestSegment::Ss]),
    (Mtd::SEGMENT_DS_ES, [GuestSegment::Ds, GuestSegment::Es]),
    (Mtd::SEGMENT_FS_GS, [GuestSegment::Fs, GuestSegment::Gs]),
    (Mtd::SEGMENT_TR_LDTR, [GuestSegment::Tr, GuestSegment::Ldtr]),
];

/// Exit-interruption and IDT-vectoring information: bit 31 valid, bit 11 error code valid
/// (SDM Vol. 3C section 25.9.2, Table 25-18).
pub(crate) const INFO_VALID: u64 = 1 << 31;
pub(crate) const INFO_ERROR_CODE_VALID: u64 = 1 << 11;
/// Interruptibility bits the exit message carries (STI, MOV SS, NMI; Table 25-3).
pub(crate) const INTERRUPTIBILITY_CARRIED: u64 = 0b1011;
/// Guest-physical addresses are below 2^52 (SDM Vol. 3A section 4.1.4).
const GPA_LIMIT: u64 = 1 << 52;

#[inline]
pub(crate) fn read<V: VmcsRead + ?Sized>(vmcs: &V, field: VmcsField) -> Result<u64, ExitError> {
    read_field(vmcs, field, ExitError::FieldUnreadable)
}

/// Decodes the current exit. `saved` holds the registers the kernel saved on the exit (all
/// GPRs but RSP, and CR2); `requested` adds state groups to [`BASE_STATE`].
pub fn decode_exit<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    requested: Mtd,
) -> Result<ExitMessage, ExitError> {
    let mut state = VcpuState::default();
    let header = decode_exit_into(vmcs, saved, requested, &mut state)?;
    Ok(header.into_message(state))
}

/// [`decode_exit`] without building the message: the state groups go into `state` (which
/// keeps its old values outside `state.mtd`), the rest is returned; encode both with
/// [`ExitHeader::encode`]. The kernel keeps `state` per CPU so no exit zeroes or moves it.
pub fn decode_exit_into<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    requested: Mtd,
    state: &mut VcpuState,
) -> Result<ExitHeader, ExitError> {
    let header = decode_header(vmcs, saved)?;
    read_state(vmcs, saved, requested.union(BASE_STATE), state)?;
    Ok(header)
}

/// The reason, instruction length and exit code of the current exit.
#[inline]
pub(crate) fn decode_header<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
) -> Result<ExitHeader, ExitError> {
    let raw_reason = read(vmcs, VmcsField::ExitReason)?;
    header_from(vmcs, saved, raw_reason, || {
        read(vmcs, VmcsField::ExitInstructionLength)
    })
}

/// [`decode_header`] with the exit-reason field already read; `length` reads the instruction
/// length field, which only instruction exits need.
#[inline]
pub(crate) fn header_from<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    raw_reason: u64,
    length: impl FnOnce() -> Result<u64, ExitError>,
) -> Result<ExitHeader, ExitError> {
    let basic = (raw_reason & 0xffff) as u16;
    let reason = decode_reason(vmcs, saved, basic)?;
    let instruction_length = match basic {
        exit_reason::CPUID
        | exit_reason::HLT
        | exit_reason::IO_INSTRUCTION
        | exit_reason::RDMSR
        | exit_reason::WRMSR => {
            let length = length()?;
            Some(
                u8::try_from(length)
                    .ok()
                    .and_then(InstructionLength::new)
                    .ok_or(ExitError::BadInstructionLength {
                        exit_code: u64::from(basic),
                        length,
                    })?,
            )
        }
        _ => None,
    };
    Ok(ExitHeader {
        reason,
        instruction_length,
        hardware_exit_code: u64::from(basic),
    })
}

#[inline]
fn decode_reason<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    basic: u16,
) -> Result<ExitReason, ExitError> {
    let qualification = || read(vmcs, VmcsField::ExitQualification);
    let ecx = saved.gpr.get(Gpr::Rcx) as u32;
    Ok(match basic {
        exit_reason::EXCEPTION_OR_NMI => exception_exit(vmcs)?,
        exit_reason::EXTERNAL_INTERRUPT | exit_reason::PREEMPTION_TIMER => ExitReason::Preempted,
        exit_reason::TRIPLE_FAULT => ExitReason::TripleFault,
        exit_reason::INTERRUPT_WINDOW => ExitReason::InterruptWindow,
        exit_reason::CPUID => ExitReason::Cpuid,
        exit_reason::HLT => ExitReason::Hlt,
        exit_reason::IO_INSTRUCTION => ExitReason::Io(io_exit(qualification()?)?),
        exit_reason::RDMSR => ExitReason::MsrRead { msr: ecx },
        exit_reason::WRMSR => ExitReason::MsrWrite {
            msr: ecx,
            value: edx_eax(&saved.gpr),
        },
        exit_reason::EPT_VIOLATION => {
            let gpa = read(vmcs, VmcsField::GuestPhysicalAddress)?;
            memory_fault(gpa, qualification()?)?
        }
        exit_reason::INVALID_GUEST_STATE => ExitReason::InvalidGuestState {
            detail: qualification()?,
        },
        _ => ExitReason::Unknown {
            raw: qualification()?,
        },
    })
}

/// EDX:EAX, the WRMSR operand (SDM Vol. 2B WRMSR).
pub(crate) fn edx_eax(gpr: &GeneralRegisters) -> u64 {
    (gpr.get(Gpr::Rdx) & 0xffff_ffff) << 32 | (gpr.get(Gpr::Rax) & 0xffff_ffff)
}

/// I/O exit qualification (SDM Vol. 3C Table 28-5): size - 1 in bits 2:0, IN in bit 3, string
/// in bit 4, REP in bit 5, port in bits 31:16.
fn io_exit(qualification: u64) -> Result<IoExit, ExitError> {
    let size = match qualification & 0x7 {
        0 => IoSize::Byte,
        1 => IoSize::Word,
        3 => IoSize::Dword,
        _ => return Err(ExitError::BadIoSize(qualification)),
    };
    Ok(IoExit {
        port: (qualification >> 16) as u16,
        size,
        direction: if qualification & (1 << 3) != 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: qualification & (1 << 4) != 0,
        rep: qualification & (1 << 5) != 0,
    })
}

/// EPT violation (SDM Vol. 3C Table 28-7): bit 1 data write, bit 2 instruction fetch.
fn memory_fault(gpa: u64, qualification: u64) -> Result<ExitReason, ExitError> {
    if gpa >= GPA_LIMIT {
        return Err(ExitError::GuestPhysicalAddressTooWide(gpa));
    }
    let access = if qualification & (1 << 2) != 0 {
        MemoryAccess::Execute
    } else if qualification & (1 << 1) != 0 {
        MemoryAccess::Write
    } else {
        MemoryAccess::Read
    };
    Ok(ExitReason::MemoryFault {
        gpa: GuestPhys(gpa),
        access,
    })
}

/// Exit reason 0: the exit interruption information (SDM Vol. 3C section 28.2.2).
fn exception_exit<V: VmcsRead + ?Sized>(vmcs: &V) -> Result<ExitReason, ExitError> {
    const SOURCE: &str = "exit interruption information";
    let info = read(vmcs, VmcsField::ExitInterruptionInfo)?;
    if info & INFO_VALID == 0 {
        return Err(ExitError::InterruptionInfoNotValid(info));
    }
    let vector = (info & 0xff) as u8;
    match (info >> 8) & 0x7 {
        // NMI: the host's; the kernel handles it and the VMM only sees a preemption.
        2 => Ok(ExitReason::Preempted),
        // Hardware exception, privileged software exception (INT1), software exception.
        3 | 5 | 6 => {
            let bad = |error| ExitError::BadEvent {
                source: SOURCE,
                error,
            };
            let number = ExceptionVector::new(vector).ok_or(bad(DecodeError::BadVector(vector)))?;
            let error_code = if info & INFO_ERROR_CODE_VALID != 0 {
                Some(read(vmcs, VmcsField::ExitInterruptionErrorCode)? as u32)
            } else {
                None
            };
            Ok(ExitReason::Exception(
                Exception::new(number, error_code).map_err(bad)?,
            ))
        }
        _ => Err(ExitError::BadEventType {
            source: SOURCE,
            raw: info,
        }),
    }
}

#[inline]
pub(crate) fn read_segment<V: VmcsRead + ?Sized>(
    vmcs: &V,
    segment: GuestSegment,
) -> Result<Segment, ExitError> {
    let fields = segment.fields();
    Ok(Segment {
        selector: read(vmcs, fields.selector)? as u16,
        attributes: attributes_from_access_rights(read(vmcs, fields.access_rights)?),
        limit: read(vmcs, fields.limit)? as u32,
        base: read(vmcs, fields.base)?,
    })
}

fn read_table<V: VmcsRead + ?Sized>(
    vmcs: &V,
    base: VmcsField,
    limit: VmcsField,
    table: &'static str,
) -> Result<DescriptorTable, ExitError> {
    let raw_limit = read(vmcs, limit)?;
    Ok(DescriptorTable {
        base: read(vmcs, base)?,
        limit: u16::try_from(raw_limit).map_err(|_| ExitError::DescriptorLimitTooLarge {
            table,
            limit: raw_limit,
        })?,
    })
}

/// Reads the groups of `mtd` from the VMCS and the kernel-saved registers. Groups not in `mtd`
/// stay zero.
fn read_state<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    mtd: Mtd,
    state: &mut VcpuState,
) -> Result<(), ExitError> {
    state.mtd = mtd;
    for (group, registers) in GPR_GROUPS {
        if mtd.contains(group) {
            for &register in registers {
                state.gpr.set(register, saved.gpr.get(register));
            }
        }
    }
    if mtd.contains(Mtd::RSP) {
        state.gpr.set(Gpr::Rsp, read(vmcs, VmcsField::GuestRsp)?);
    }
    if mtd.contains(Mtd::RIP) {
        state.rip = read(vmcs, VmcsField::GuestRip)?;
    }
    if mtd.contains(Mtd::RFLAGS) {
        state.rflags = read(vmcs, VmcsField::GuestRflags)?;
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        state.cr0 = ControlRegisterPolicy::visible(
            read(vmcs, VmcsField::GuestCr0)?,
            read(vmcs, VmcsField::Cr0ReadShadow)?,
            read(vmcs, VmcsField::Cr0GuestHostMask)?,
        );
        state.cr2 = saved.cr2;
        state.cr3 = read(vmcs, VmcsField::GuestCr3)?;
        state.cr4 = ControlRegisterPolicy::visible(
            read(vmcs, VmcsField::GuestCr4)?,
            read(vmcs, VmcsField::Cr4ReadShadow)?,
            read(vmcs, VmcsField::Cr4GuestHostMask)?,
        );
    }
    if mtd.contains(Mtd::EFER) {
        state.efer = read(vmcs, VmcsField::GuestEfer)?;
    }
    for (group, [first, second]) in SEGMENT_GROUPS {
        if mtd.contains(group) {
            let (a, b) = (read_segment(vmcs, first)?, read_segment(vmcs, second)?);
            let (slot_a, slot_b) = match first {
                GuestSegment::Cs => (&mut state.cs, &mut state.ss),
                GuestSegment::Ds => (&mut state.ds, &mut state.es),
                GuestSegment::Fs => (&mut state.fs, &mut state.gs),
                _ => (&mut state.tr, &mut state.ldtr),
            };
            *slot_a = a;
            *slot_b = b;
        }
    }
    if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
        state.gdtr = read_table(
            vmcs,
            VmcsField::GuestGdtrBase,
            VmcsField::GuestGdtrLimit,
            "GDTR",
        )?;
        state.idtr = read_table(
            vmcs,
            VmcsField::GuestIdtrBase,
            VmcsField::GuestIdtrLimit,
            "IDTR",
        )?;
    }
    if mtd.contains(Mtd::INTERRUPT_STATE) {
        // Blocking by SMI (bit 2) and enclave interruption (bit 4) are not the VMM's business;
        // they stay in the VMCS untouched.
        let raw = read(vmcs, VmcsField::GuestInterruptibility)? & INTERRUPTIBILITY_CARRIED;
        state.interruptibility = Interruptibility::new(raw as u32).unwrap_or_default();
        state.activity = activity_state(read(vmcs, VmcsField::GuestActivityState)?)?;
    }
    if mtd.contains(Mtd::PENDING_EVENT) {
        let info = read(vmcs, VmcsField::IdtVectoringInfo)?;
        let error_code = if info & INFO_VALID != 0 && info & INFO_ERROR_CODE_VALID != 0 {
            read(vmcs, VmcsField::IdtVectoringErrorCode)? as u32
        } else {
            0
        };
        state.pending_event =
            decode_event(info, error_code, "IDT-vectoring information", Vendor::Vmx)?;
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        state.tsc_offset = read(vmcs, VmcsField::TscOffset)?;
    }
    Ok(())
}

/// Guest activity state (SDM Vol. 3C section 25.4.2).
pub(crate) fn activity_state(raw: u64) -> Result<ActivityState, ExitError> {
    match raw {
        0 => Ok(ActivityState::Active),
        1 => Ok(ActivityState::Hlt),
        2 => Ok(ActivityState::Shutdown),
        3 => Ok(ActivityState::WaitForSipi),
        other => Err(ExitError::BadActivityState(other)),
    }
}
