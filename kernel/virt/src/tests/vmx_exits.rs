//! VMX exits: one realistic raw exit per reason, decoded and round-tripped; malformed
//! information refused with named errors; random VMCS contents never panic.
use proptest::prelude::*;
use sluice_abi::vcpu::{
    ActivityState, DecodeError, Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr,
    GuestPhys, IoDirection, IoExit, IoSize, MemoryAccess, Mtd,
};

use super::fixtures::*;
use crate::error::ExitError;
use crate::state::BASE_STATE;
use crate::vmx::{decode_exit, VmcsField};

fn exit_with(reason: u64, extra: &[(VmcsField, u64)]) -> Result<ExitMessage, ExitError> {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::ExitReason, reason);
    vmcs.set(VmcsField::ExitQualification, 0);
    for &(field, value) in extra {
        vmcs.set(field, value);
    }
    decode_exit(&vmcs, &saved_registers(), Mtd::empty())
}

fn decoded(reason: u64, extra: &[(VmcsField, u64)]) -> ExitMessage {
    let exit = exit_with(reason, extra).expect("decodes");
    assert_round_trip(&exit);
    exit
}

#[test]
fn cpuid_exit_carries_the_base_state_with_the_guest_view_of_cr0_and_cr4() {
    let exit = decoded(10, &[(VmcsField::ExitInstructionLength, 2)]);
    assert_eq!(exit.reason, ExitReason::Cpuid);
    assert_eq!(exit.instruction_length.map(|l| l.bytes()), Some(2));
    assert_eq!(exit.hardware_exit_code, 10);
    let state = exit.state;
    assert_eq!(state.mtd, BASE_STATE);
    assert_eq!(
        state.cr0, GUEST_CR0,
        "NE forced by VMX is hidden by the read shadow"
    );
    assert_eq!(state.cr4, GUEST_CR4, "VMXE is hidden");
    assert_eq!(state.cr2, 0xdead_0000);
    assert_eq!(state.efer, GUEST_EFER);
    assert_eq!(state.gpr.get(Gpr::Rsp), 0x7ff0, "RSP from the VMCS");
    assert_eq!(
        state.gpr.get(Gpr::Rcx),
        0x1111_0001,
        "RCX from the kernel's save area"
    );
    assert_eq!(state.gpr.get(Gpr::R15), 0x1111_000f);
    assert_eq!(state.rip, 0x10_0000);
    assert_eq!(state.cs.attributes.bits(), 0xa9b);
    assert!(state.cs.attributes.long_mode());
    assert_eq!(state.ss.attributes.bits(), 0xc93);
    assert_eq!(state.activity, ActivityState::Active);
    assert_eq!(state.pending_event, None);
    assert_eq!(state.ds.base, 0, "groups not asked for stay empty");
}

#[test]
fn io_exits_decode_size_direction_string_and_rep() {
    // out dx, al to COM1.
    let out = decoded(
        30,
        &[
            (VmcsField::ExitQualification, 0x3f8 << 16),
            (VmcsField::ExitInstructionLength, 1),
        ],
    );
    assert_eq!(
        out.reason,
        ExitReason::Io(IoExit {
            port: 0x3f8,
            size: IoSize::Byte,
            direction: IoDirection::Out,
            string: false,
            rep: false
        })
    );
    assert_eq!(out.instruction_length.map(|l| l.bytes()), Some(1));
    // in eax, dx from 0xcfc.
    let input = decoded(
        30,
        &[
            (VmcsField::ExitQualification, 0xcfc << 16 | 1 << 3 | 3),
            (VmcsField::ExitInstructionLength, 1),
        ],
    );
    assert_eq!(
        input.reason,
        ExitReason::Io(IoExit {
            port: 0xcfc,
            size: IoSize::Dword,
            direction: IoDirection::In,
            string: false,
            rep: false
        })
    );
    // rep insw from 0x1f0.
    let string = decoded(
        30,
        &[
            (
                VmcsField::ExitQualification,
                0x1f0 << 16 | 1 << 5 | 1 << 4 | 1 << 3 | 1,
            ),
            (VmcsField::ExitInstructionLength, 3),
        ],
    );
    assert_eq!(
        string.reason,
        ExitReason::Io(IoExit {
            port: 0x1f0,
            size: IoSize::Word,
            direction: IoDirection::In,
            string: true,
            rep: true
        })
    );
    assert_eq!(
        exit_with(
            30,
            &[
                (VmcsField::ExitQualification, 2),
                (VmcsField::ExitInstructionLength, 1)
            ]
        ),
        Err(ExitError::BadIoSize(2))
    );
}

#[test]
fn ept_violations_report_gpa_and_access() {
    let gpa = (VmcsField::GuestPhysicalAddress, 0xfe00_0010);
    for (qualification, access) in [
        (0x181, MemoryAccess::Read),
        (0x182, MemoryAccess::Write),
        (0x184, MemoryAccess::Execute),
        (0x186, MemoryAccess::Execute),
    ] {
        let exit = decoded(48, &[gpa, (VmcsField::ExitQualification, qualification)]);
        assert_eq!(
            exit.reason,
            ExitReason::MemoryFault {
                gpa: GuestPhys(0xfe00_0010),
                access
            }
        );
        assert_eq!(exit.instruction_length, None);
    }
    assert_eq!(
        exit_with(48, &[(VmcsField::GuestPhysicalAddress, 1 << 52)]),
        Err(ExitError::GuestPhysicalAddressTooWide(1 << 52))
    );
}

#[test]
fn msr_exits_take_ecx_and_edx_eax_from_saved_registers() {
    let mut vmcs = long_mode_vmcs();
    let mut saved = saved_registers();
    saved.gpr.set(Gpr::Rcx, 0xffff_ffff_c000_0080);
    saved.gpr.set(Gpr::Rax, 0xaaaa_aaaa_0000_0d01);
    saved.gpr.set(Gpr::Rdx, 0xbbbb_bbbb_0000_0001);
    vmcs.set(VmcsField::ExitInstructionLength, 2);
    vmcs.set(VmcsField::ExitReason, 31);
    let read = decode_exit(&vmcs, &saved, Mtd::empty()).unwrap();
    assert_eq!(read.reason, ExitReason::MsrRead { msr: 0xc000_0080 });
    vmcs.set(VmcsField::ExitReason, 32);
    let write = decode_exit(&vmcs, &saved, Mtd::empty()).unwrap();
    assert_eq!(
        write.reason,
        ExitReason::MsrWrite {
            msr: 0xc000_0080,
            value: 0x1_0000_0d01
        }
    );
    assert_round_trip(&write);
}

#[test]
fn simple_reasons_map_as_documented() {
    let length = (VmcsField::ExitInstructionLength, 1);
    assert_eq!(decoded(12, &[length]).reason, ExitReason::Hlt);
    assert_eq!(decoded(7, &[]).reason, ExitReason::InterruptWindow);
    assert_eq!(decoded(1, &[]).reason, ExitReason::Preempted);
    assert_eq!(decoded(52, &[]).reason, ExitReason::Preempted);
    assert_eq!(decoded(2, &[]).reason, ExitReason::TripleFault);
    let failed = decoded(0x8000_0021, &[(VmcsField::ExitQualification, 3)]);
    assert_eq!(
        (failed.reason, failed.hardware_exit_code),
        (ExitReason::InvalidGuestState { detail: 3 }, 33)
    );
    let xsetbv = decoded(55, &[(VmcsField::ExitQualification, 9)]);
    assert_eq!(
        (xsetbv.reason, xsetbv.hardware_exit_code),
        (ExitReason::Unknown { raw: 9 }, 55)
    );
    assert_eq!(
        xsetbv.instruction_length, None,
        "only I/O, CPUID, MSR and HLT report a length"
    );
}

#[test]
fn exception_exits_decode_vector_and_error_code() {
    let info = VmcsField::ExitInterruptionInfo;
    let gp = decoded(
        0,
        &[
            (info, 13 | 3 << 8 | 1 << 11 | 1 << 31),
            (VmcsField::ExitInterruptionErrorCode, 0x10),
        ],
    );
    assert_eq!(
        gp.reason,
        ExitReason::Exception(
            Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0x10)).unwrap()
        )
    );
    let ud = decoded(0, &[(info, 6 | 3 << 8 | 1 << 31)]);
    assert_eq!(
        ud.reason,
        ExitReason::Exception(Exception::new(ExceptionVector::INVALID_OPCODE, None).unwrap())
    );
    let breakpoint = decoded(0, &[(info, 3 | 6 << 8 | 1 << 31)]);
    assert!(matches!(breakpoint.reason, ExitReason::Exception(e) if e.vector().number() == 3));
    assert_eq!(
        decoded(0, &[(info, 2 | 2 << 8 | 1 << 31)]).reason,
        ExitReason::Preempted,
        "host NMI"
    );
    assert_eq!(
        exit_with(0, &[(info, 13 | 3 << 8)]),
        Err(ExitError::InterruptionInfoNotValid(13 | 3 << 8))
    );
    assert_eq!(
        exit_with(
            0,
            &[
                (info, 6 | 3 << 8 | 1 << 11 | 1 << 31),
                (VmcsField::ExitInterruptionErrorCode, 0)
            ]
        ),
        Err(ExitError::BadEvent {
            source: "exit interruption information",
            error: DecodeError::ErrorCodeNotAllowed(6)
        })
    );
    assert!(matches!(
        exit_with(0, &[(info, 0x40 | 3 << 8 | 1 << 31)]),
        Err(ExitError::BadEvent { .. })
    ));
    assert!(matches!(
        exit_with(0, &[(info, 1 << 8 | 1 << 31)]),
        Err(ExitError::BadEventType { .. })
    ));
}

#[test]
fn idt_vectoring_information_becomes_the_pending_event() {
    let fault = [
        (VmcsField::GuestPhysicalAddress, 0x2000),
        (VmcsField::ExitQualification, 0x82),
    ];
    let with = |info: u64, code: u64| {
        let mut extra = fault.to_vec();
        extra.push((VmcsField::IdtVectoringInfo, info));
        extra.push((VmcsField::IdtVectoringErrorCode, code));
        exit_with(48, &extra)
    };
    let external = with(0x30 | 1 << 31, 0).unwrap();
    assert_eq!(
        external.state.pending_event,
        Some(Event::ExternalInterrupt(0x30))
    );
    assert_round_trip(&external);
    let page_fault = with(14 | 3 << 8 | 1 << 11 | 1 << 31, 2).unwrap();
    assert_eq!(
        page_fault.state.pending_event,
        Some(Event::Exception(
            Exception::new(ExceptionVector::PAGE_FAULT, Some(2)).unwrap()
        ))
    );
    assert_eq!(
        with(2 | 2 << 8 | 1 << 31, 0).unwrap().state.pending_event,
        Some(Event::Nmi)
    );
    // INT 0x80 and INT3 are re-executed, not re-injected.
    assert_eq!(
        with(0x80 | 4 << 8 | 1 << 31, 0)
            .unwrap()
            .state
            .pending_event,
        None
    );
    assert_eq!(
        with(3 | 6 << 8 | 1 << 31, 0).unwrap().state.pending_event,
        None
    );
    assert_eq!(
        with(14 | 3 << 8, 0).unwrap().state.pending_event,
        None,
        "not valid"
    );
    assert!(matches!(
        with(5 | 2 << 8 | 1 << 31, 0),
        Err(ExitError::BadEvent {
            error: DecodeError::BadVector(5),
            ..
        })
    ));
    assert!(matches!(
        with(1 << 8 | 1 << 31, 0),
        Err(ExitError::BadEventType {
            source: "IDT-vectoring information",
            ..
        })
    ));
    assert!(matches!(
        with(0x20 | 1 << 11 | 1 << 31, 0),
        Err(ExitError::BadEvent { .. })
    ));
}

#[test]
fn extra_groups_and_interrupt_state_are_read_when_asked() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::ExitReason, 7);
    vmcs.set(VmcsField::GuestInterruptibility, 0b1_0101); // STI + SMI + enclave bits
    vmcs.set(VmcsField::GuestActivityState, 1);
    vmcs.set(VmcsField::GuestTrSelector, 0x28);
    vmcs.set(VmcsField::GuestTrAccessRights, 0x8b);
    let requested =
        Mtd::DESCRIPTOR_TABLES | Mtd::SEGMENT_TR_LDTR | Mtd::TSC_OFFSET | Mtd::SEGMENT_DS_ES;
    let exit = decode_exit(&vmcs, &saved_registers(), requested).unwrap();
    assert_round_trip(&exit);
    assert_eq!(exit.state.mtd, BASE_STATE | requested);
    assert_eq!(
        exit.state.interruptibility.bits(),
        1,
        "SMI and enclave bits are not carried"
    );
    assert_eq!(exit.state.activity, ActivityState::Hlt);
    assert_eq!(
        (exit.state.gdtr.base, exit.state.gdtr.limit),
        (0x5000, 0x27)
    );
    assert_eq!(exit.state.tr.selector, 0x28);
    assert_eq!(exit.state.tr.attributes.bits(), 0x8b);
    assert_eq!(exit.state.ds.attributes.bits(), 0x1000, "unusable DS");
    assert_eq!(exit.state.tsc_offset, 0x1234);
}

#[test]
fn unreadable_or_impossible_fields_are_named_errors() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::ExitReason, 10);
    assert_eq!(
        decode_exit(&vmcs, &saved_registers(), Mtd::empty()),
        Err(ExitError::FieldUnreadable(VmcsField::ExitInstructionLength))
    );
    vmcs.set(VmcsField::ExitInstructionLength, 0);
    assert_eq!(
        decode_exit(&vmcs, &saved_registers(), Mtd::empty()),
        Err(ExitError::BadInstructionLength {
            exit_code: 10,
            length: 0
        })
    );
    vmcs.set(VmcsField::ExitInstructionLength, 16);
    assert!(matches!(
        decode_exit(&vmcs, &saved_registers(), Mtd::empty()),
        Err(ExitError::BadInstructionLength { length: 16, .. })
    ));
    vmcs.set(VmcsField::ExitInstructionLength, 2);
    vmcs.set(VmcsField::GuestActivityState, 7);
    assert_eq!(
        decode_exit(&vmcs, &saved_registers(), Mtd::empty()),
        Err(ExitError::BadActivityState(7))
    );
    vmcs.set(VmcsField::GuestActivityState, 0);
    vmcs.set(VmcsField::GuestGdtrLimit, 0x1_0000);
    assert_eq!(
        decode_exit(&vmcs, &saved_registers(), Mtd::DESCRIPTOR_TABLES),
        Err(ExitError::DescriptorLimitTooLarge {
            table: "GDTR",
            limit: 0x1_0000
        })
    );
    vmcs.fields.remove(&VmcsField::GuestCr3);
    let error = decode_exit(&vmcs, &saved_registers(), Mtd::empty()).unwrap_err();
    assert_eq!(error, ExitError::FieldUnreadable(VmcsField::GuestCr3));
    assert!(error.to_string().contains("GuestCr3"));
}

/// Every field the decoder may read.
const READ_FIELDS: [VmcsField; 48] = {
    use VmcsField::*;
    [
        ExitReason,
        ExitQualification,
        ExitInstructionLength,
        GuestPhysicalAddress,
        ExitInterruptionInfo,
        ExitInterruptionErrorCode,
        IdtVectoringInfo,
        IdtVectoringErrorCode,
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
        GuestDsSelector,
        GuestDsAccessRights,
        GuestDsLimit,
        GuestDsBase,
        GuestEsSelector,
        GuestEsAccessRights,
        GuestEsLimit,
        GuestEsBase,
        GuestInterruptibility,
        GuestActivityState,
        GuestGdtrBase,
        GuestGdtrLimit,
        GuestIdtrBase,
        GuestIdtrLimit,
        TscOffset,
        GuestTrSelector,
        GuestTrAccessRights,
        GuestTrLimit,
        GuestTrBase,
        GuestLdtrSelector,
        GuestLdtrAccessRights,
    ]
};

/// A random value for one field: absent (a failed VMREAD), small, any, or event-shaped.
fn random_value() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        8 => (0u64..64).prop_map(Some),
        4 => any::<u64>().prop_map(Some),
        4 => (0u8..40, 0u64..8, any::<bool>(), any::<bool>())
            .prop_map(|(vector, kind, code, valid)| Some(u64::from(vector) | kind << 8 | u64::from(code) << 11 | u64::from(valid) << 31)),
    ]
}

/// Exit-information fields: always random.
const EXIT_FIELDS: usize = 8;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Starts from a valid guest and randomizes the exit information and, with `mutate`, some
    /// guest-state fields, so both the accepting and the refusing paths are exercised.
    #[test]
    fn random_vmcs_contents_decode_or_fail_with_a_named_error(
        values in proptest::collection::vec(random_value(), READ_FIELDS.len()),
        mutate in proptest::collection::vec(0u8..12, READ_FIELDS.len()),
        registers in proptest::collection::vec(any::<u64>(), 16),
        requested in 0u64..(1 << 16),
        reason in prop_oneof![
            3 => prop::sample::select(vec![0u64, 1, 2, 7, 10, 12, 30, 31, 32, 33, 48, 52, 0x8000_0021]),
            1 => any::<u64>(),
        ],
        length in prop_oneof![1u64..16, any::<u64>()],
    ) {
        let mut vmcs = long_mode_vmcs();
        for (index, (field, value)) in READ_FIELDS.iter().zip(values).enumerate() {
            if index >= EXIT_FIELDS && mutate.get(index).is_none_or(|&m| m != 0) {
                continue;
            }
            match value {
                Some(value) => { vmcs.set(*field, value); }
                None => { vmcs.fields.remove(field); }
            }
        }
        vmcs.set(VmcsField::ExitReason, reason);
        vmcs.set(VmcsField::ExitInstructionLength, length);
        let mut saved = saved_registers();
        for (register, value) in sluice_abi::vcpu::Gpr::ALL.into_iter().zip(registers) {
            saved.gpr.set(register, value);
        }
        let requested = Mtd::from_bits(requested).unwrap_or_default();
        match decode_exit(&vmcs, &saved, requested) {
            Ok(exit) => assert_round_trip(&exit),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}
