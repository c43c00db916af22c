//! SVM exits: one realistic VMCB per exit code (as QEMU TCG and Bochs's ryzen model produce
//! them), decoded and round-tripped; malformed information refused; random VMCB contents
//! never panic.
use proptest::prelude::*;
use sluice_abi::vcpu::{
    Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr, GuestPhys, Interruptibility,
    IoDirection, IoExit, IoSize, MemoryAccess, Mtd,
};

use super::fixtures::*;
use crate::error::ExitError;
use crate::state::BASE_STATE;
use crate::svm::{decode_exit, encode_exit, SvmFeatures, Vmcb, VmcbField, VMCB_SIZE};
use sluice_abi::vcpu::MAX_EXIT_WORDS;

const TCG: SvmFeatures = SvmFeatures { nrip_save: false };
const NRIP: SvmFeatures = SvmFeatures { nrip_save: true };

fn exit_with(
    code: u64,
    info1: u64,
    info2: u64,
    features: SvmFeatures,
    extra: &[(VmcbField, u64)],
) -> Result<ExitMessage, ExitError> {
    let mut vmcb = long_mode_vmcb();
    vmcb.write(VmcbField::EXITCODE, code);
    vmcb.write(VmcbField::EXITINFO1, info1);
    vmcb.write(VmcbField::EXITINFO2, info2);
    for &(field, value) in extra {
        vmcb.write(field, value);
    }
    decode_exit(&vmcb, &saved_registers(), Mtd::empty(), features)
}

fn decoded(code: u64, info1: u64, info2: u64) -> ExitMessage {
    let exit = exit_with(code, info1, info2, TCG, &[]).expect("decodes");
    assert_round_trip(&exit);
    exit
}

#[test]
fn cpuid_under_tcg_has_no_length_and_with_nrip_save_has_one() {
    let exit = decoded(0x72, 0, 0);
    assert_eq!(exit.reason, ExitReason::Cpuid);
    assert_eq!(
        exit.instruction_length, None,
        "no NRIP save under TCG: the VMM decodes"
    );
    assert_eq!(exit.hardware_exit_code, 0x72);
    assert_eq!(exit.state.mtd, BASE_STATE);
    assert_eq!(
        exit.state.gpr.get(Gpr::Rax),
        0x1111_0000,
        "RAX from the VMCB"
    );
    assert_eq!(
        exit.state.gpr.get(Gpr::Rbx),
        0x1111_0003,
        "RBX from the kernel's save area"
    );
    assert_eq!(exit.state.gpr.get(Gpr::Rsp), 0x7ff0);
    assert_eq!(exit.state.efer, GUEST_EFER, "EFER.SVME hidden");
    assert_eq!(
        (exit.state.cr0, exit.state.cr2, exit.state.cr4),
        (GUEST_CR0, 0xdead_0000, GUEST_CR4)
    );
    assert_eq!(exit.state.cs.attributes.bits(), 0xa9b);
    let with_nrip = exit_with(0x72, 0, 0, NRIP, &[(VmcbField::NEXT_RIP, 0x10_0002)]).unwrap();
    assert_eq!(with_nrip.instruction_length.map(|l| l.bytes()), Some(2));
    assert_round_trip(&with_nrip);
    assert_eq!(
        exit_with(0x72, 0, 0, NRIP, &[(VmcbField::NEXT_RIP, 0x10_0000)]),
        Err(ExitError::BadInstructionLength {
            exit_code: 0x72,
            length: 0
        })
    );
    let far = exit_with(0x7f, 0, 0, NRIP, &[(VmcbField::NEXT_RIP, 0)]).unwrap();
    assert_eq!(
        far.instruction_length, None,
        "shutdown is not an instruction exit"
    );
}

#[test]
fn ioio_exits_decode_exitinfo1() {
    // out dx, al to COM1; EXITINFO2 holds the next RIP.
    let out = decoded(0x7b, 0x3f8 << 16 | 1 << 4, 0x10_0001);
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
    let input = decoded(0x7b, 0xcfc << 16 | 1 << 6 | 1, 0);
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
    let rep_outsw = decoded(0x7b, 0x1f0 << 16 | 1 << 5 | 1 << 3 | 1 << 2, 0);
    assert_eq!(
        rep_outsw.reason,
        ExitReason::Io(IoExit {
            port: 0x1f0,
            size: IoSize::Word,
            direction: IoDirection::Out,
            string: true,
            rep: true
        })
    );
    assert_eq!(
        exit_with(0x7b, 0x3f8 << 16, 0, TCG, &[]),
        Err(ExitError::BadIoSize(0x3f8 << 16))
    );
    assert_eq!(
        exit_with(0x7b, 0b11 << 4, 0, TCG, &[]),
        Err(ExitError::BadIoSize(0b11 << 4))
    );
}

#[test]
fn msr_exits_take_eax_from_the_vmcb() {
    let mut saved = saved_registers();
    saved.gpr.set(Gpr::Rcx, 0x1b);
    saved.gpr.set(Gpr::Rdx, 0);
    let mut vmcb = long_mode_vmcb();
    vmcb.write(VmcbField::RAX, 0xfee0_0900);
    vmcb.write(VmcbField::EXITCODE, 0x7c);
    vmcb.write(VmcbField::EXITINFO1, 1);
    let write = decode_exit(&vmcb, &saved, Mtd::empty(), TCG).unwrap();
    assert_eq!(
        write.reason,
        ExitReason::MsrWrite {
            msr: 0x1b,
            value: 0xfee0_0900
        }
    );
    vmcb.write(VmcbField::EXITINFO1, 0);
    assert_eq!(
        decode_exit(&vmcb, &saved, Mtd::empty(), TCG)
            .unwrap()
            .reason,
        ExitReason::MsrRead { msr: 0x1b }
    );
    vmcb.write(VmcbField::EXITINFO1, 2);
    assert_eq!(
        decode_exit(&vmcb, &saved, Mtd::empty(), TCG),
        Err(ExitError::BadMsrAccess(2))
    );
}

#[test]
fn nested_page_faults_report_gpa_and_access() {
    for (info1, access) in [
        (0x4, MemoryAccess::Read),
        (0x6, MemoryAccess::Write),
        (0x1_0000_0014, MemoryAccess::Execute),
        (0x2_0000_0007, MemoryAccess::Write),
    ] {
        let exit = decoded(0x400, info1, 0xfe00_0008);
        assert_eq!(
            exit.reason,
            ExitReason::MemoryFault {
                gpa: GuestPhys(0xfe00_0008),
                access
            }
        );
    }
    assert_eq!(
        exit_with(0x400, 4, u64::MAX, TCG, &[]),
        Err(ExitError::GuestPhysicalAddressTooWide(u64::MAX))
    );
}

#[test]
fn simple_exit_codes_map_as_documented() {
    assert_eq!(decoded(0x78, 0, 0).reason, ExitReason::Hlt);
    assert_eq!(decoded(0x64, 0, 0).reason, ExitReason::InterruptWindow);
    assert_eq!(decoded(0x60, 0, 0).reason, ExitReason::Preempted);
    assert_eq!(decoded(0x61, 0, 0).reason, ExitReason::Preempted);
    assert_eq!(decoded(0x7f, 0, 0).reason, ExitReason::Shutdown);
    let invalid = decoded(u64::MAX, 5, 0);
    assert_eq!(
        (invalid.reason, invalid.hardware_exit_code),
        (ExitReason::InvalidGuestState { detail: 5 }, u64::MAX)
    );
    assert_eq!(
        decoded(0x81, 0x77, 0).reason,
        ExitReason::Unknown { raw: 0x77 }
    );
}

#[test]
fn exception_intercepts_carry_error_codes_only_where_delivered() {
    let gp = decoded(0x4d, 0x18, 0);
    assert_eq!(
        gp.reason,
        ExitReason::Exception(
            Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0x18)).unwrap()
        )
    );
    let ud = decoded(0x46, 0x1234, 0);
    assert_eq!(
        ud.reason,
        ExitReason::Exception(Exception::new(ExceptionVector::INVALID_OPCODE, None).unwrap())
    );
    let real_mode = exit_with(0x4d, 0, 0, TCG, &[(VmcbField::CR0, 0x10)]).unwrap();
    assert_eq!(
        real_mode.reason,
        ExitReason::Exception(Exception::new(ExceptionVector::GENERAL_PROTECTION, None).unwrap())
    );
}

#[test]
fn exitintinfo_becomes_the_pending_event() {
    let with = |info: u64| exit_with(0x400, 6, 0x1000, TCG, &[(VmcbField::EXITINTINFO, info)]);
    assert_eq!(
        with(0x8000_0030).unwrap().state.pending_event,
        Some(Event::ExternalInterrupt(0x30))
    );
    let page_fault = with(2 << 32 | 0x8000_0b0e).unwrap();
    assert_eq!(
        page_fault.state.pending_event,
        Some(Event::Exception(
            Exception::new(ExceptionVector::PAGE_FAULT, Some(2)).unwrap()
        ))
    );
    assert_round_trip(&page_fault);
    assert_eq!(
        with(0x8000_0202).unwrap().state.pending_event,
        Some(Event::Nmi)
    );
    assert_eq!(
        with(0x8000_0303).unwrap().state.pending_event,
        None,
        "INT3 is re-executed"
    );
    assert_eq!(
        with(0x8000_0480).unwrap().state.pending_event,
        None,
        "INT 0x80 is re-executed"
    );
    assert_eq!(
        with(0x0000_0b0e).unwrap().state.pending_event,
        None,
        "not valid"
    );
    assert!(matches!(
        with(0x8000_0580),
        Err(ExitError::BadEventType {
            source: "EXITINTINFO",
            ..
        })
    ));
    assert!(matches!(with(0x8000_0321), Err(ExitError::BadEvent { .. })));
}

#[test]
fn interrupt_shadow_and_extra_groups() {
    let mut vmcb = long_mode_vmcb();
    vmcb.write(VmcbField::EXITCODE, 0x64);
    vmcb.write(VmcbField::INTERRUPT_SHADOW, 1);
    let exit = decode_exit(
        &vmcb,
        &saved_registers(),
        Mtd::DESCRIPTOR_TABLES | Mtd::TSC_OFFSET,
        TCG,
    )
    .unwrap();
    assert_round_trip(&exit);
    assert_eq!(
        exit.state.interruptibility.bits(),
        Interruptibility::BLOCKING_BY_STI
    );
    assert_eq!(
        (exit.state.gdtr.base, exit.state.idtr.limit),
        (0x5000, 0xfff)
    );
    assert_eq!(exit.state.tsc_offset, 0x1234);
    vmcb.write(crate::svm::VmcbSegment::Idtr.limit(), 0x1_0000);
    assert_eq!(
        decode_exit(&vmcb, &saved_registers(), Mtd::DESCRIPTOR_TABLES, TCG),
        Err(ExitError::DescriptorLimitTooLarge {
            table: "IDTR",
            limit: 0x1_0000
        })
    );
}

fn exit_code() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0x40u64..0x60),
        prop::sample::select(vec![
            0x60u64,
            0x61,
            0x64,
            0x72,
            0x78,
            0x7b,
            0x7c,
            0x7f,
            0x81,
            0x400,
            u64::MAX
        ]),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_vmcb_contents_decode_or_fail_with_a_named_error(
        code in exit_code(),
        info1 in prop_oneof![0u64..0x100, any::<u64>(), (0u64..0x80, any::<u16>()).prop_map(|(low, port)| low | u64::from(port) << 16)],
        info2 in prop_oneof![0u64..0x1_0000_0000, any::<u64>()],
        intinfo in prop_oneof![Just(0u64), any::<u64>(), (0u8..40, 0u64..8, any::<bool>(), 0u32..4).prop_map(|(v, t, ev, code)| u64::from(v) | t << 8 | u64::from(ev) << 11 | 1 << 31 | u64::from(code) << 32)],
        page in proptest::collection::vec(any::<u8>(), 0x700),
        nrip_save in any::<bool>(),
        requested in 0u64..(1 << 16),
    ) {
        let mut bytes = [0u8; VMCB_SIZE];
        bytes[..0x700].copy_from_slice(&page);
        let mut vmcb = Vmcb::new(bytes);
        vmcb.write(VmcbField::EXITCODE, code);
        vmcb.write(VmcbField::EXITINFO1, info1);
        vmcb.write(VmcbField::EXITINFO2, info2);
        vmcb.write(VmcbField::EXITINTINFO, intinfo);
        let requested = Mtd::from_bits(requested).unwrap_or_default();
        match decode_exit(&vmcb, &saved_registers(), requested, SvmFeatures { nrip_save }) {
            Ok(exit) => assert_round_trip(&exit),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The kernel's direct encoder (`encode_exit`) must produce exactly the words of
    /// `decode_exit` + `ExitMessage::to_words`, and fail with the same error, on any VMCB.
    #[test]
    fn direct_exit_encoding_matches_decode_then_to_words(
        code in exit_code(),
        info1 in prop_oneof![0u64..0x100, any::<u64>(), (0u64..0x80, any::<u16>()).prop_map(|(low, port)| low | u64::from(port) << 16)],
        info2 in prop_oneof![0u64..0x1_0000_0000, any::<u64>()],
        intinfo in prop_oneof![Just(0u64), any::<u64>(), (0u8..40, 0u64..8, any::<bool>(), 0u32..4).prop_map(|(v, t, ev, code)| u64::from(v) | t << 8 | u64::from(ev) << 11 | 1 << 31 | u64::from(code) << 32)],
        page in proptest::collection::vec(any::<u8>(), 0x700),
        small_tables in any::<bool>(),
        nrip_save in any::<bool>(),
        // The kernel asks for nothing beyond the base state (the fixed-layout encoder), so
        // that case is drawn often, besides random requests.
        requested in prop_oneof![Just(0u64), Just(crate::state::BASE_STATE.bits()), 0u64..(1 << 16)],
        registers in proptest::collection::vec(any::<u64>(), 16),
        garbage in any::<u64>(),
    ) {
        let mut bytes = [0u8; VMCB_SIZE];
        bytes[..0x700].copy_from_slice(&page);
        let mut vmcb = Vmcb::new(bytes);
        vmcb.write(VmcbField::EXITCODE, code);
        vmcb.write(VmcbField::EXITINFO1, info1);
        vmcb.write(VmcbField::EXITINFO2, info2);
        vmcb.write(VmcbField::EXITINTINFO, intinfo);
        if small_tables {
            // Descriptor-table limits that fit 16 bits, so the DESCRIPTOR_TABLES group decodes.
            vmcb.write(crate::svm::VmcbSegment::Gdtr.limit(), info1 & 0xffff);
            vmcb.write(crate::svm::VmcbSegment::Idtr.limit(), info2 & 0xffff);
        }
        let mut saved = saved_registers();
        for (register, value) in Gpr::ALL.into_iter().zip(registers) {
            saved.gpr.set(register, value);
        }
        let requested = Mtd::from_bits(requested).unwrap_or_default();
        let features = SvmFeatures { nrip_save };
        let expected = decode_exit(&vmcb, &saved, requested, features).map(|exit| {
            let mut words = [0u64; MAX_EXIT_WORDS];
            let count = exit.to_words(&mut words).expect("fits");
            words[..count].to_vec()
        });
        let mut out = [garbage; MAX_EXIT_WORDS];
        let direct = encode_exit(&vmcb, &saved, requested, features, &mut out)
            .map(|count| out[..count].to_vec());
        prop_assert_eq!(direct, expected);
    }
}
