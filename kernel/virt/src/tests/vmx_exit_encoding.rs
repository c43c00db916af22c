//! The kernel's VMX exit path against the route it shortcuts: `vmx::encode_exit` must give
//! exactly the words of `decode_exit` + `ExitMessage::to_words`, and fail with the same error
//! (failed VMREADs included, in the same order), on random VMCS contents; plus plain examples.
use proptest::prelude::*;
use sluice_abi::vcpu::{ExitMessage, ExitReason, Gpr, Mtd, FORMAT_VERSION, MAX_EXIT_WORDS};

use super::fixtures::*;
use crate::error::ExitError;
use crate::state::{SavedRegisters, BASE_STATE};
use crate::vmx::{decode_exit, encode_exit, VmcsField};

/// `decode_exit` followed by `ExitMessage::to_words`: the reference for `encode_exit`.
fn decode_then_to_words(
    vmcs: &FakeVmcs,
    saved: &SavedRegisters,
    requested: Mtd,
) -> Result<Vec<u64>, ExitError> {
    decode_exit(vmcs, saved, requested).map(|exit| {
        let mut words = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut words).expect("a decoded exit encodes");
        words[..count].to_vec()
    })
}

/// `encode_exit` into a buffer pre-filled with `garbage`, returning the words it reports.
fn encode_directly(
    vmcs: &FakeVmcs,
    saved: &SavedRegisters,
    requested: Mtd,
    garbage: u64,
) -> Result<Vec<u64>, ExitError> {
    let mut out = [garbage; MAX_EXIT_WORDS];
    encode_exit(vmcs, saved, requested, &mut out).map(|count| out[..count].to_vec())
}

#[test]
fn a_cpuid_exit_encodes_the_35_base_words() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::ExitReason, 10)
        .set(VmcsField::ExitInstructionLength, 2);
    let saved = saved_registers();
    for requested in [Mtd::empty(), BASE_STATE, Mtd::RIP | Mtd::EFER] {
        let words = encode_directly(&vmcs, &saved, requested, u64::MAX).expect("encodes");
        assert_eq!(words.len(), 35);
        assert_eq!(words[0] & 0xffff_ffff, u64::from(ExitReason::Cpuid.code()));
        assert_eq!(words[0] >> 32 & 0xffff, u64::from(FORMAT_VERSION));
        assert_eq!(words[0] >> 48, 2, "instruction length");
        assert_eq!(words[1], 10, "hardware exit code");
        assert_eq!(words[5], BASE_STATE.bits());
        assert_eq!(
            Ok(words.clone()),
            decode_then_to_words(&vmcs, &saved, requested)
        );
        let exit = ExitMessage::from_words(&words).expect("decodes");
        assert_eq!(exit.reason, ExitReason::Cpuid);
        assert_eq!(exit.instruction_length.map(|l| l.bytes()), Some(2));
        assert_eq!(exit.state.rip, 0x10_0000);
        assert_eq!(exit.state.gpr.get(Gpr::Rsp), 0x7ff0);
        assert_eq!(exit.state.gpr.get(Gpr::R15), 0x1111_000f);
        assert_eq!((exit.state.cr0, exit.state.cr4), (GUEST_CR0, GUEST_CR4));
        assert_eq!(exit.state.cr2, 0xdead_0000);
    }
    // A larger request takes the decode-then-encode route and still agrees.
    let wide = encode_directly(&vmcs, &saved, Mtd::ALL, 0).expect("encodes");
    assert_eq!(wide.len(), MAX_EXIT_WORDS);
    assert_eq!(Ok(wide), decode_then_to_words(&vmcs, &saved, Mtd::ALL));
}

#[test]
fn a_failed_vmread_names_the_first_field_decode_reads() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::ExitReason, 12)
        .set(VmcsField::ExitInstructionLength, 1);
    vmcs.fields.remove(&VmcsField::GuestSsBase);
    vmcs.fields.remove(&VmcsField::GuestRip);
    let saved = saved_registers();
    let expected = Err(ExitError::FieldUnreadable(VmcsField::GuestRip));
    assert_eq!(encode_directly(&vmcs, &saved, BASE_STATE, 0), expected);
    assert_eq!(decode_then_to_words(&vmcs, &saved, BASE_STATE), expected);
    vmcs.fields.remove(&VmcsField::ExitInstructionLength);
    assert_eq!(
        encode_directly(&vmcs, &saved, BASE_STATE, 0),
        Err(ExitError::FieldUnreadable(VmcsField::ExitInstructionLength))
    );
    // Length 16 is no x86 instruction.
    vmcs.set(VmcsField::ExitInstructionLength, 16);
    vmcs.set(VmcsField::GuestRip, 0x10_0000);
    assert_eq!(
        encode_directly(&vmcs, &saved, Mtd::empty(), 0),
        Err(ExitError::BadInstructionLength {
            exit_code: 12,
            length: 16
        })
    );
}

/// Guest-state fields the property overrides with random values (RSP .. SS for the base
/// state, a few more for larger requests).
const GUEST_FIELDS: [VmcsField; 22] = {
    use VmcsField::*;
    [
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
        GuestDsAccessRights,
        GuestGdtrLimit,
        TscOffset,
    ]
};

/// Exit-information and interrupt-state fields, each always set from its own strategy.
const EXIT_FIELDS: [VmcsField; 11] = {
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
        GuestInterruptibility,
        GuestActivityState,
        GuestIdtrLimit,
    ]
};

/// Exit-reason field values: mostly the basic reasons decode handles, also with the VM-entry
/// failure bit, other small reasons, and anything.
fn exit_reason() -> impl Strategy<Value = u64> {
    let handled = vec![0u64, 1, 2, 7, 10, 12, 30, 31, 32, 33, 48, 52];
    prop_oneof![
        6 => prop::sample::select(handled.clone()),
        // VM-entry failure (bit 31) on a handled basic reason.
        1 => prop::sample::select(handled).prop_map(|reason| reason | 1 << 31),
        1 => 0u64..70,
        1 => any::<u64>(),
    ]
}

/// Interruption or IDT-vectoring information: valid or not, any of the 8 types, with or
/// without the error-code bit; or anything.
fn event_information() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        6 => (prop_oneof![0u64..32, 0u64..256], 0u64..8, any::<bool>(), any::<bool>()).prop_map(
            |(vector, kind, error_code, valid)| {
                vector | kind << 8 | u64::from(error_code) << 11 | u64::from(valid) << 31
            }
        ),
        1 => Just(0x8000_0202u64),
        1 => any::<u64>(),
    ]
}

/// A guest-state field value: anything, or small, or 32-bit (the fields are truncated to their
/// width when read).
fn guest_value() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0u64..0x1_0000, 0u64..=u64::from(u32::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    /// `encode_exit` (the kernel's exit path) must produce exactly the words of `decode_exit`
    /// + `ExitMessage::to_words`, and fail with the same error, on any VMCS contents.
    #[test]
    fn direct_exit_encoding_matches_decode_then_to_words(
        reason in exit_reason(),
        qualification in prop_oneof![
            0u64..0x100,
            any::<u64>(),
            (0u64..0x80, any::<u16>()).prop_map(|(low, port)| low | u64::from(port) << 16),
        ],
        length in prop_oneof![1 => Just(0u64), 6 => 1u64..=15, 1 => 16u64..=255, 1 => any::<u64>()],
        gpa in prop_oneof![0u64..(1 << 52), Just((1u64 << 52) - 1), Just(1u64 << 52), any::<u64>()],
        interruption in event_information(),
        interruption_error in any::<u64>(),
        vectoring in event_information(),
        vectoring_error in any::<u64>(),
        interruptibility in prop_oneof![0u64..32, any::<u64>()],
        activity in prop_oneof![8 => 0u64..=3, 1 => 4u64..8, 1 => any::<u64>()],
        idtr_limit in prop_oneof![Just(0xfffu64), 0u64..0x2_0000],
        overrides in proptest::collection::vec(
            prop::option::weighted(0.4, guest_value()),
            GUEST_FIELDS.len(),
        ),
        // Failed VMREADs: none, or up to three fields (two or more pin down the read order).
        removed in prop_oneof![
            3 => Just(vec![]),
            2 => proptest::collection::vec(0..EXIT_FIELDS.len() + GUEST_FIELDS.len(), 1..=3),
        ],
        registers in proptest::collection::vec(any::<u64>(), 16),
        cr2 in any::<u64>(),
        requested in prop_oneof![
            2 => Just(0u64),
            2 => Just(BASE_STATE.bits()),
            1 => (0u64..(1 << 16)).prop_map(|bits| bits & BASE_STATE.bits()),
            2 => 0u64..(1 << 16),
        ],
        garbage in any::<u64>(),
    ) {
        let mut vmcs = long_mode_vmcs();
        let exit_values = [
            reason,
            qualification,
            length,
            gpa,
            interruption,
            interruption_error,
            vectoring,
            vectoring_error,
            interruptibility,
            activity,
            idtr_limit,
        ];
        for (field, value) in EXIT_FIELDS.into_iter().zip(exit_values) {
            vmcs.set(field, value);
        }
        for (field, value) in GUEST_FIELDS.into_iter().zip(overrides) {
            if let Some(value) = value {
                vmcs.set(field, value);
            }
        }
        for index in removed {
            if let Some(field) = EXIT_FIELDS.iter().chain(&GUEST_FIELDS).nth(index) {
                vmcs.fields.remove(field);
            }
        }
        let mut saved = SavedRegisters::default();
        for (register, value) in Gpr::ALL.into_iter().zip(registers) {
            saved.gpr.set(register, value);
        }
        saved.cr2 = cr2;
        let requested = Mtd::from_bits(requested).unwrap_or_default();

        let expected = decode_then_to_words(&vmcs, &saved, requested);
        let direct = encode_directly(&vmcs, &saved, requested, garbage);
        prop_assert_eq!(direct, expected);
    }
}
