//! The kernel's VMX reply path against the route it shortcuts: `vmx::apply_reply_words` must
//! give the result, VMWRITEs (in order), saved registers and refusals of `Reply::from_words` +
//! `apply_entry`, and write nothing when it refuses, on random (often malformed) replies and
//! random VMCS contents; plus plain examples.
use proptest::prelude::*;
use sluice_abi::vcpu::{
    ActivityState, DescriptorTable, Event, Gpr, Interruptibility, Mtd, Reply, Segment,
    SegmentAttributes, VcpuState, FORMAT_VERSION, MAX_REPLY_WORDS,
};

use super::fixtures::*;
use crate::error::ReplyError;
use crate::state::SavedRegisters;
use crate::vmx::controls::ControlRegisterPolicy;
use crate::vmx::{apply_entry, apply_reply_words, VmcsField};

/// The outcome of applying a reply: the result, the VMWRITEs in order, the saved registers.
type Applied = (
    Result<(), ReplyError>,
    Vec<(VmcsField, u64)>,
    SavedRegisters,
);

/// `Reply::from_words` followed by `apply_entry`: the reference for `apply_reply_words`.
fn decode_then_apply(
    words: &[u64],
    vmcs: &FakeVmcs,
    saved: &SavedRegisters,
    policy: &ControlRegisterPolicy,
) -> Applied {
    let mut writes = Vec::new();
    let mut saved = *saved;
    let result = Reply::from_words(words)
        .map_err(ReplyError::Malformed)
        .and_then(|reply| {
            apply_entry(&reply, vmcs, &mut saved, policy, |field, value| {
                writes.push((field, value))
            })
        });
    (result, writes, saved)
}

/// A scratch reply full of junk a previous reply could have left (none of it may leak).
fn junk_scratch() -> Reply {
    let mut scratch = Reply::default();
    scratch.state.mtd = Mtd::ALL;
    scratch.state.rip = 0xdead;
    scratch.state.rflags = 0;
    scratch.state.cr0 = 0;
    scratch.state.efer = 0x500;
    scratch.state.tsc_offset = 0xdead_beef;
    for register in Gpr::ALL {
        scratch
            .state
            .gpr
            .set(register, 0xdead_0000 + register as u64);
    }
    scratch.inject = Some(Event::Nmi);
    scratch.request_interrupt_window = true;
    scratch
}

/// `apply_reply_words` with a junk scratch reply.
fn apply_directly(
    words: &[u64],
    vmcs: &FakeVmcs,
    saved: &SavedRegisters,
    policy: &ControlRegisterPolicy,
) -> Applied {
    let mut writes = Vec::new();
    let mut saved = *saved;
    let mut scratch = junk_scratch();
    let result = apply_reply_words(
        words,
        vmcs,
        &mut saved,
        policy,
        &mut scratch,
        |field, value| writes.push((field, value)),
    );
    (result, writes, saved)
}

fn reply_words(reply: &Reply) -> Vec<u64> {
    let mut words = [0u64; MAX_REPLY_WORDS];
    let count = reply.to_words(&mut words).expect("a valid reply encodes");
    words[..count].to_vec()
}

#[test]
fn a_cpuid_reply_writes_only_rip_and_sets_the_saved_registers() {
    let vmcs = long_mode_vmcs();
    let mut state = VcpuState {
        mtd: Mtd::GPR_ACDB | Mtd::RIP,
        rip: 0x10_0002,
        ..VcpuState::default()
    };
    let values = [0x0d, 0x6c65_746e, 0x4965_6e69, 0x756e_6547];
    for (register, value) in [Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx]
        .into_iter()
        .zip(values)
    {
        state.gpr.set(register, value);
    }
    let words = reply_words(&Reply {
        state,
        inject: None,
        request_interrupt_window: false,
    });
    let saved = saved_registers();
    let (result, writes, after) = apply_directly(&words, &vmcs, &saved, &policy());
    assert_eq!(result, Ok(()));
    assert_eq!(writes, vec![(VmcsField::GuestRip, 0x10_0002)]);
    for (register, value) in [Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx]
        .into_iter()
        .zip(values)
    {
        assert_eq!(after.gpr.get(register), value);
    }
    assert_eq!(after.gpr.get(Gpr::Rsi), 0x1111_0006, "others untouched");
    assert_eq!(after.cr2, 0xdead_0000);
    assert_eq!(
        (result, writes, after),
        decode_then_apply(&words, &vmcs, &saved, &policy())
    );
}

#[test]
fn an_interrupt_with_if_clear_is_refused_with_no_write() {
    let blocked = Err(ReplyError::InterruptBlocked {
        interrupts_enabled: false,
        interruptibility: 0,
    });
    let saved = saved_registers();
    let timer = Reply {
        inject: Some(Event::ExternalInterrupt(0x20)),
        ..Reply::default()
    };
    // IF clear in the VMCS (the reply carries no RFLAGS).
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::GuestRflags, 0x2);
    let words = reply_words(&timer);
    assert_eq!(
        apply_directly(&words, &vmcs, &saved, &policy()),
        (blocked, vec![], saved)
    );
    // IF clear in the reply's RFLAGS, IF set in the VMCS.
    let mut state = VcpuState {
        mtd: Mtd::GPR_ACDB | Mtd::RIP | Mtd::RFLAGS,
        rip: 0x10_0002,
        rflags: 0x2,
        ..VcpuState::default()
    };
    state.gpr.set(Gpr::Rax, 7);
    let with_rflags = reply_words(&Reply { state, ..timer });
    let vmcs = long_mode_vmcs();
    assert_eq!(
        apply_directly(&with_rflags, &vmcs, &saved, &policy()),
        (blocked, vec![], saved)
    );
    // The control: with IF set the same injection goes through.
    let (result, writes, _) = apply_directly(&words, &vmcs, &saved, &policy());
    assert_eq!(result, Ok(()));
    assert_eq!(
        writes,
        vec![(VmcsField::EntryInterruptionInfo, 0x8000_0020)]
    );
}

#[test]
fn malformed_reply_words_are_refused_with_no_write() {
    let vmcs = long_mode_vmcs();
    let saved = saved_registers();
    let mut words = reply_words(&Reply {
        state: VcpuState {
            mtd: Mtd::RIP | Mtd::TSC_OFFSET,
            ..VcpuState::default()
        },
        ..Reply::default()
    });
    words.pop();
    let (result, writes, after) = apply_directly(&words, &vmcs, &saved, &policy());
    assert!(
        matches!(result, Err(ReplyError::Malformed(_))),
        "{result:?}"
    );
    assert_eq!((writes, after), (vec![], saved));
    assert_eq!(
        apply_directly(&words, &vmcs, &saved, &policy()),
        decode_then_apply(&words, &vmcs, &saved, &policy())
    );
}

/// An event word: none, external interrupts (valid vectors and low ones), the NMI, exceptions
/// with and without error codes, or anything.
fn event_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => (32u64..256).prop_map(|vector| vector | 1 << 8),
        1 => (0u64..256).prop_map(|vector| vector | 1 << 8),
        1 => Just(2u64 | 2 << 8),
        2 => (0u64..32, any::<bool>(), prop_oneof![Just(0u64), 0u64..0x1_0000]).prop_map(
            |(vector, has, code)| {
                vector | 3 << 8 | u64::from(has) << 11 | if has { code << 32 } else { 0 }
            }
        ),
        2 => (prop::sample::select(vec![8u64, 10, 11, 12, 13, 14, 17]), any::<bool>()).prop_map(
            |(vector, has)| vector | 3 << 8 | u64::from(has) << 11
        ),
        1 => any::<u64>(),
    ]
}

/// RFLAGS: mostly valid (bit 1 set, reserved bits clear), IF either way; or anything.
fn rflags_word() -> impl Strategy<Value = u64> {
    const RESERVED: u64 = 1 << 3 | 1 << 5 | 1 << 15;
    prop_oneof![
        4 => (0u64..0x40_0000, any::<bool>()).prop_map(|(value, interrupts)| {
            value & !RESERVED & !(1 << 9) | 2 | u64::from(interrupts) << 9
        }),
        1 => (0u64..0x40_0000).prop_map(|value| value | 2),
        1 => any::<u64>(),
    ]
}

/// CR0 with PE either way.
fn cr0_word() -> impl Strategy<Value = u64> {
    (any::<u32>(), any::<bool>()).prop_map(|(value, pe)| u64::from(value) & !1 | u64::from(pe))
}

/// A state word for any position: anything, RFLAGS- or CR0-like, segment-like,
/// interrupt-state-like, small.
fn state_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        rflags_word(),
        cr0_word(),
        (any::<u16>(), 0u64..0x2000, any::<u32>()).prop_map(|(selector, attributes, limit)| {
            u64::from(selector) | attributes << 16 | u64::from(limit) << 32
        }),
        (0u64..16, 0u64..5).prop_map(|(bits, activity)| bits | activity << 32),
        0u64..0x1_0000,
    ]
}

/// The groups `apply_reply_words` applies without building a `Reply` (GPRs, RSP, RIP, RFLAGS,
/// control registers, EFER, TSC offset).
const DIRECT_GROUP_BITS: u64 = 0b1000_0000_1111_1111;

/// State-group bits: mostly the direct groups, also any writable group, any group and garbage.
fn mtd_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..(1 << 16)).prop_map(|bits| bits & DIRECT_GROUP_BITS),
        2 => (0u64..(1 << 16)).prop_map(|bits| bits & !Mtd::PENDING_EVENT.bits()),
        1 => 0u64..(1 << 16),
        1 => any::<u64>(),
    ]
}

/// Reply words assembled from raw parts: random versions, flags and event words, the body
/// often one word short or long; most do not decode.
fn raw_reply_words() -> impl Strategy<Value = Vec<u64>> {
    (
        prop_oneof![8 => Just(FORMAT_VERSION), 1 => any::<u16>()],
        prop_oneof![
            3 => Just(0u64),
            2 => Just(1u64),
            1 => any::<u64>().prop_map(|flags| flags & !(0xffff << 32)),
        ],
        event_word(),
        mtd_bits(),
        proptest::collection::vec(state_word(), MAX_REPLY_WORDS + 1),
        prop_oneof![6 => Just(0i64), 1 => -1i64..=1],
    )
        .prop_map(|(version, flags, event, mtd, body, length_delta)| {
            let mut words = vec![u64::from(version) << 32 | flags, event, mtd];
            let groups = Mtd::from_bits(mtd).unwrap_or_default().words();
            let length = usize::try_from(groups as i64 + length_delta).unwrap_or(0);
            words.extend(body.iter().take(length));
            words
        })
}

/// Words of a reply that decodes (`Reply::to_words` of random valid parts), so the checks
/// against the VMCS and the writes are reached; the RFLAGS word may still be reserved.
fn well_formed_reply_words() -> impl Strategy<Value = Vec<u64>> {
    let segment = (any::<u16>(), 0u16..0x2000, any::<u32>(), any::<u64>());
    (
        mtd_bits().prop_map(|bits| {
            Mtd::from_bits(bits & !Mtd::PENDING_EVENT.bits() & Mtd::ALL.bits()).unwrap_or_default()
        }),
        event_word().prop_map(|word| Event::from_word(word).ok().flatten()),
        any::<bool>(),
        proptest::collection::vec(any::<u64>(), 16 + 6),
        (rflags_word(), cr0_word()),
        proptest::collection::vec(segment, 8),
        (any::<u16>(), any::<u16>(), 0u32..16, 0u8..4),
    )
        .prop_map(
            |(
                mtd,
                inject,
                window,
                values,
                (rflags, cr0),
                segments,
                (gdt, idt, blocking, activity),
            )| {
                let mut state = VcpuState {
                    mtd,
                    rflags,
                    cr0,
                    ..VcpuState::default()
                };
                for (register, &value) in Gpr::ALL.iter().zip(&values) {
                    state.gpr.set(*register, value);
                }
                let [rip, cr2, cr3, cr4, efer, tsc_offset] = values
                    .get(16..)
                    .and_then(|rest| rest.try_into().ok())
                    .unwrap_or([0; 6]);
                (state.rip, state.cr2, state.cr3, state.cr4) = (rip, cr2, cr3, cr4);
                (state.efer, state.tsc_offset) = (efer, tsc_offset);
                let slots = [
                    &mut state.cs,
                    &mut state.ss,
                    &mut state.ds,
                    &mut state.es,
                    &mut state.fs,
                    &mut state.gs,
                    &mut state.tr,
                    &mut state.ldtr,
                ];
                for (slot, (selector, attributes, limit, base)) in slots.into_iter().zip(segments) {
                    *slot = Segment {
                        selector,
                        attributes: SegmentAttributes::new(attributes).unwrap_or_default(),
                        limit,
                        base,
                    };
                }
                state.gdtr = DescriptorTable {
                    base: cr3,
                    limit: gdt,
                };
                state.idtr = DescriptorTable {
                    base: cr4,
                    limit: idt,
                };
                state.interruptibility =
                    Interruptibility::new(blocking & 0b1011).unwrap_or_default();
                state.activity = [
                    ActivityState::Active,
                    ActivityState::Hlt,
                    ActivityState::Shutdown,
                    ActivityState::WaitForSipi,
                ][usize::from(activity % 4)];
                reply_words(&Reply {
                    state,
                    inject,
                    request_interrupt_window: window,
                })
            },
        )
}

/// The reply's VMCS inputs the property randomizes (and may remove one or two of).
const REPLY_FIELDS: [VmcsField; 6] = [
    VmcsField::PrimaryProcessorControls,
    VmcsField::EntryControls,
    VmcsField::GuestInterruptibility,
    VmcsField::GuestActivityState,
    VmcsField::GuestRflags,
    VmcsField::GuestCr0,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6000))]

    /// `apply_reply_words` (the kernel's reply path) must give exactly what
    /// `Reply::from_words` + `apply_entry` give: the same result, the same VMWRITEs in the
    /// same order, the same saved registers; and when refused, no write and `saved` unchanged.
    #[test]
    fn direct_reply_application_matches_decode_then_apply(
        words in prop_oneof![2 => raw_reply_words(), 3 => well_formed_reply_words()],
        primary in (any::<u32>(), any::<bool>()).prop_map(|(value, window)| {
            u64::from(value) & !(1 << 2) | u64::from(window) << 2
        }),
        entry_controls in any::<u32>(),
        interruptibility in 0u64..16,
        activity in 0u64..5,
        rflags in rflags_word(),
        cr0 in cr0_word(),
        removed in prop_oneof![
            4 => Just(vec![]),
            1 => proptest::collection::vec(0..REPLY_FIELDS.len(), 1..=2),
        ],
        unrestricted_guest in any::<bool>(),
        registers in proptest::collection::vec(any::<u64>(), 16),
        cr2 in any::<u64>(),
    ) {
        let mut vmcs = long_mode_vmcs();
        let values = [primary, u64::from(entry_controls), interruptibility, activity, rflags, cr0];
        for (field, value) in REPLY_FIELDS.into_iter().zip(values) {
            vmcs.set(field, value);
        }
        for field in removed.iter().filter_map(|&index| REPLY_FIELDS.get(index)) {
            vmcs.fields.remove(field);
        }
        let policy = ControlRegisterPolicy::new(CR0_FIXED, CR4_FIXED, unrestricted_guest);
        let mut saved = SavedRegisters::default();
        for (register, value) in Gpr::ALL.into_iter().zip(registers) {
            saved.gpr.set(register, value);
        }
        saved.cr2 = cr2;

        let expected = decode_then_apply(&words, &vmcs, &saved, &policy);
        let direct = apply_directly(&words, &vmcs, &saved, &policy);
        if direct.0.is_err() {
            prop_assert!(direct.1.is_empty(), "a refused reply wrote {:?}", direct.1);
            prop_assert_eq!(direct.2, saved);
        }
        prop_assert_eq!(direct, expected);
    }
}
