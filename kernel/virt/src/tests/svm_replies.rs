//! SVM replies: VMCB updates (RAX in the VMCB, other GPRs saved by the kernel), EVENTINJ, the
//! V_IRQ interrupt window, clean bits, refusals that change nothing, and read-back.
use sluice_abi::vcpu::{
    ActivityState, DescriptorTable, Event, Exception, ExceptionVector, Gpr, Interruptibility, Mtd,
    Reply, Segment, SegmentAttributes, VcpuState,
};

use super::fixtures::*;
use crate::error::ReplyError;
use crate::svm::vmcb::{V_IGN_TPR, V_IRQ};
use crate::svm::{
    apply_reply, decode_exit, CleanBits, InterceptVector3, SvmFeatures, VmcbField, VmcbSegment,
};

#[test]
fn registers_split_between_the_vmcb_and_the_save_area() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    let mut state = VcpuState {
        mtd: Mtd::GPR_ACDB | Mtd::RIP | Mtd::RSP,
        rip: 0x10_0002,
        ..VcpuState::default()
    };
    state.gpr.set(Gpr::Rax, 0x0d);
    state.gpr.set(Gpr::Rbx, 0x756e_6547);
    state.gpr.set(Gpr::Rsp, 0x7000);
    apply_reply(
        &Reply {
            state,
            ..Reply::default()
        },
        &mut vmcb,
        &mut saved,
    )
    .unwrap();
    assert_eq!(vmcb.read(VmcbField::RAX), 0x0d);
    assert_eq!(vmcb.read(VmcbField::RIP), 0x10_0002);
    assert_eq!(vmcb.read(VmcbField::RSP), 0x7000);
    assert_eq!(saved.gpr.get(Gpr::Rbx), 0x756e_6547);
    assert_eq!(saved.gpr.get(Gpr::Rsi), 0x1111_0006);
    assert_eq!(vmcb.read(VmcbField::EVENTINJ), 0);
}

#[test]
fn eventinj_encodes_injected_events() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    let mut inject = |event| {
        apply_reply(
            &Reply {
                inject: Some(event),
                ..Reply::default()
            },
            &mut vmcb,
            &mut saved,
        )
        .unwrap();
        vmcb.read(VmcbField::EVENTINJ)
    };
    assert_eq!(inject(Event::ExternalInterrupt(0x20)), 0x8000_0020);
    assert_eq!(inject(Event::Nmi), 0x8000_0202);
    let page_fault = Exception::new(ExceptionVector::PAGE_FAULT, Some(2)).unwrap();
    assert_eq!(inject(Event::Exception(page_fault)), 2 << 32 | 0x8000_0b0e);
    let undefined = Exception::new(ExceptionVector::INVALID_OPCODE, None).unwrap();
    assert_eq!(inject(Event::Exception(undefined)), 0x8000_0306);
    apply_reply(&Reply::default(), &mut vmcb, &mut saved).unwrap();
    assert_eq!(
        vmcb.read(VmcbField::EVENTINJ),
        0,
        "cleared when nothing is injected"
    );
}

#[test]
fn interrupt_window_uses_v_irq_and_the_vintr_intercept() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    vmcb.write(
        VmcbField::INTERCEPT_VECTOR_3,
        u64::from(InterceptVector3::HLT.bits()),
    );
    vmcb.write(VmcbField::VIRTUAL_INTERRUPT, 0x5); // V_TPR 5
    vmcb.set_clean_bits(CleanBits::all());
    apply_reply(
        &Reply {
            request_interrupt_window: true,
            ..Reply::default()
        },
        &mut vmcb,
        &mut saved,
    )
    .unwrap();
    let virtual_interrupt = vmcb.read(VmcbField::VIRTUAL_INTERRUPT);
    assert_eq!(virtual_interrupt, 0x5 | V_IRQ | 0xf << 16 | V_IGN_TPR);
    let intercepts =
        InterceptVector3::from_bits_retain(vmcb.read(VmcbField::INTERCEPT_VECTOR_3) as u32);
    assert_eq!(intercepts, InterceptVector3::HLT | InterceptVector3::VINTR);
    assert!(!vmcb.clean_bits().contains(CleanBits::TPR));
    assert!(!vmcb.clean_bits().contains(CleanBits::INTERCEPTS));
    vmcb.set_clean_bits(CleanBits::all());
    apply_reply(&Reply::default(), &mut vmcb, &mut saved).unwrap();
    assert_eq!(vmcb.read(VmcbField::VIRTUAL_INTERRUPT) & V_IRQ, 0);
    assert_eq!(
        vmcb.read(VmcbField::INTERCEPT_VECTOR_3),
        u64::from(InterceptVector3::HLT.bits())
    );
    // A reply that changes nothing keeps the clean bits.
    vmcb.set_clean_bits(CleanBits::all());
    apply_reply(&Reply::default(), &mut vmcb, &mut saved).unwrap();
    assert_eq!(vmcb.clean_bits(), CleanBits::all());
}

#[test]
fn refused_replies_change_nothing() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    let before = (vmcb.clone().into_inner(), saved);
    let nmi_blocked = VcpuState {
        mtd: Mtd::INTERRUPT_STATE | Mtd::RIP,
        interruptibility: Interruptibility::new(Interruptibility::BLOCKING_BY_NMI).unwrap(),
        ..VcpuState::default()
    };
    let halted = VcpuState {
        mtd: Mtd::INTERRUPT_STATE | Mtd::GPR_ACDB,
        activity: ActivityState::Hlt,
        ..VcpuState::default()
    };
    let no_interrupts = VcpuState {
        mtd: Mtd::RFLAGS | Mtd::GPR_ACDB,
        rflags: 0x2,
        ..VcpuState::default()
    };
    let cases = [
        (
            Reply {
                state: nmi_blocked,
                ..Reply::default()
            },
            ReplyError::UnsupportedInterruptibility(8),
        ),
        (
            Reply {
                state: halted,
                ..Reply::default()
            },
            ReplyError::UnsupportedActivityState(ActivityState::Hlt),
        ),
        (
            Reply {
                state: no_interrupts,
                inject: Some(Event::ExternalInterrupt(0x20)),
                request_interrupt_window: true,
            },
            ReplyError::InterruptBlocked {
                interrupts_enabled: false,
                interruptibility: 0,
            },
        ),
        (
            Reply {
                state: VcpuState {
                    mtd: Mtd::RFLAGS,
                    rflags: 0,
                    ..VcpuState::default()
                },
                ..Reply::default()
            },
            ReplyError::ReservedRflags(0),
        ),
        (
            Reply {
                state: VcpuState {
                    mtd: Mtd::PENDING_EVENT,
                    ..VcpuState::default()
                },
                ..Reply::default()
            },
            ReplyError::PendingEventNotWritable,
        ),
    ];
    for (reply, expected) in cases {
        assert_eq!(apply_reply(&reply, &mut vmcb, &mut saved), Err(expected));
        assert!(!expected.to_string().is_empty());
        assert_eq!((vmcb.clone().into_inner(), saved), before);
    }
    // The shadow in the VMCB blocks an external interrupt too.
    vmcb.write(VmcbField::INTERRUPT_SHADOW, 1);
    assert!(matches!(
        apply_reply(
            &Reply {
                inject: Some(Event::ExternalInterrupt(0x20)),
                ..Reply::default()
            },
            &mut vmcb,
            &mut saved
        ),
        Err(ReplyError::InterruptBlocked {
            interrupts_enabled: true,
            interruptibility: 1
        })
    ));
}

#[test]
fn efer_svme_segments_and_cpl() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    vmcb.set_clean_bits(CleanBits::all());
    let mut state = VcpuState {
        mtd: Mtd::EFER | Mtd::SEGMENT_CS_SS | Mtd::SEGMENT_DS_ES,
        efer: 0x500,
        ..VcpuState::default()
    };
    state.cs = Segment {
        selector: 0x33,
        attributes: SegmentAttributes::new(0xafb).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    state.ss = Segment {
        selector: 0x2b,
        attributes: SegmentAttributes::new(0xcf3).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    state.ds = Segment {
        attributes: SegmentAttributes::new(0x1093).unwrap(),
        ..Segment::default()
    };
    apply_reply(
        &Reply {
            state,
            ..Reply::default()
        },
        &mut vmcb,
        &mut saved,
    )
    .unwrap();
    assert_eq!(
        vmcb.read(VmcbField::EFER),
        0x500 | 1 << 12,
        "SVME kept for VMRUN"
    );
    assert_eq!(vmcb.read(VmcbField::CPL), 3, "CPL = SS.DPL");
    assert_eq!(vmcb.read(VmcbSegment::Cs.attributes()), 0xafb);
    assert_eq!(
        vmcb.read(VmcbSegment::Ds.attributes()),
        0x13,
        "unusable becomes not present"
    );
    let clean = vmcb.clean_bits();
    assert!(!clean.contains(CleanBits::SEGMENTS) && !clean.contains(CleanBits::CONTROL_REGISTERS));
    assert!(clean.contains(CleanBits::DESCRIPTOR_TABLES) && clean.contains(CleanBits::CR2));
}

/// Every writable group: applying then decoding gives the reply's state back (except that SVM
/// reports an unusable segment as not present).
#[test]
fn a_reply_with_every_group_reads_back() {
    let mut vmcb = long_mode_vmcb();
    let mut saved = saved_registers();
    let mut state = VcpuState {
        mtd: Mtd::ALL.difference(Mtd::PENDING_EVENT),
        ..VcpuState::default()
    };
    for (index, register) in Gpr::ALL.into_iter().enumerate() {
        state.gpr.set(register, 0x3333_0000 + index as u64);
    }
    state.rip = 0x40_1000;
    state.rflags = 0x246;
    state.cr0 = 0x8005_0033;
    state.cr2 = 0x1234_5000;
    state.cr3 = 0x2000;
    state.cr4 = 0x6f0;
    state.efer = 0xd01;
    let data = Segment {
        selector: 0x10,
        attributes: SegmentAttributes::new(0xc93).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    state.cs = Segment {
        selector: 8,
        attributes: SegmentAttributes::new(0xa9b).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    state.ss = data;
    state.ds = data;
    state.es = data;
    state.fs = Segment {
        base: 0x7f00_0000_0000,
        ..data
    };
    state.gs = Segment {
        base: 0xffff_8880_0000_0000,
        ..data
    };
    state.tr = Segment {
        selector: 0x40,
        attributes: SegmentAttributes::new(0x8b).unwrap(),
        limit: 0x67,
        base: 0xffff_fe00_0000_3000,
    };
    state.ldtr = Segment::default();
    state.gdtr = DescriptorTable {
        base: 0xffff_fe00_0000_1000,
        limit: 0x7f,
    };
    state.idtr = DescriptorTable {
        base: 0xffff_fe00_0000_0000,
        limit: 0xfff,
    };
    state.interruptibility = Interruptibility::new(Interruptibility::BLOCKING_BY_STI).unwrap();
    state.tsc_offset = 42;
    let reply = Reply {
        state,
        inject: None,
        request_interrupt_window: true,
    };
    apply_reply(&reply, &mut vmcb, &mut saved).unwrap();
    vmcb.write(VmcbField::EXITCODE, 0x64);
    let exit = decode_exit(&vmcb, &saved, Mtd::ALL, SvmFeatures::default()).unwrap();
    let mut expected = state;
    expected.mtd = Mtd::ALL;
    assert_eq!(exit.state, expected);
}

mod direct_words {
    use proptest::prelude::*;
    use sluice_abi::vcpu::{Gpr, Mtd, Reply, FORMAT_VERSION, MAX_REPLY_WORDS};

    use super::super::fixtures::*;
    use crate::error::ReplyError;
    use crate::svm::{apply_reply, apply_reply_words, Vmcb, VmcbField, VMCB_SIZE};

    fn event_word() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            (0u64..256).prop_map(|vector| vector | 1 << 8),
            Just(2 | 2 << 8),
            (0u64..32, any::<bool>(), 0u64..4).prop_map(|(vector, has, code)| vector
                | 3 << 8
                | u64::from(has) << 11
                | (if has { code } else { 0 }) << 32),
            any::<u64>(),
        ]
    }

    fn state_word() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            // RFLAGS-like values (bit 1 set, IF either way), small limits and attributes.
            (0u64..0x40_0000).prop_map(|value| value | 2),
            (any::<u16>(), 0u64..0x2000, any::<u32>()).prop_map(|(selector, attributes, limit)| {
                u64::from(selector) | attributes << 16 | u64::from(limit) << 32
            }),
            0u64..0x1_0000,
            0u64..4,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// `apply_reply_words` must give exactly what `Reply::from_words` + `apply_reply` give:
        /// the same VMCB bytes, the same saved registers, the same refusals (and then no change).
        #[test]
        fn direct_reply_application_matches_decode_then_apply(
            flags in prop_oneof![Just(0u64), Just(1u64), any::<u64>()],
            version_ok in prop_oneof![4 => Just(true), 1 => Just(false)],
            event in event_word(),
            mtd in prop_oneof![
                3 => (0u64..(1 << 16)).prop_map(|bits| bits & !(1 << 14) & 0b1000_0000_1111_1111),
                1 => (0u64..(1 << 16)).prop_map(|bits| bits & !(1 << 14)),
                1 => any::<u64>(),
            ],
            body in proptest::collection::vec(state_word(), MAX_REPLY_WORDS + 1),
            length_delta in prop_oneof![6 => Just(0i64), 1 => -1i64..=1],
            page in proptest::collection::vec(any::<u8>(), 0x700),
            registers in proptest::collection::vec(any::<u64>(), 16),
        ) {
            let version = if version_ok { u64::from(FORMAT_VERSION) } else { 7 };
            let mut words = vec![version << 32 | (flags & 1) | (flags & !1 & 0xffff_0000_ffff_fffe & if flags > 1 { u64::MAX } else { 0 }), event, mtd];
            let groups = Mtd::from_bits(mtd & 0xffff).unwrap_or_default().words();
            let length = (groups as i64 + length_delta).max(0) as usize;
            words.extend(body.iter().take(length.min(body.len())));
            let mut bytes = [0u8; VMCB_SIZE];
            bytes[..0x700].copy_from_slice(&page);
            let vmcb = Vmcb::new(bytes);
            let mut saved = saved_registers();
            for (register, value) in Gpr::ALL.into_iter().zip(registers) {
                saved.gpr.set(register, value);
            }

            let (mut slow_vmcb, mut slow_saved) = (vmcb.clone(), saved);
            let slow = Reply::from_words(&words)
                .map_err(ReplyError::Malformed)
                .and_then(|reply| apply_reply(&reply, &mut slow_vmcb, &mut slow_saved));
            let (mut fast_vmcb, mut fast_saved) = (vmcb.clone(), saved);
            let mut scratch = Reply::default();
            scratch.state.rip = 0xdead;
            let fast = apply_reply_words(&words, &mut fast_vmcb, &mut fast_saved, &mut scratch);
            prop_assert_eq!(fast, slow);
            prop_assert_eq!(fast_saved, slow_saved);
            prop_assert_eq!(&fast_vmcb.clone().into_inner()[..], &slow_vmcb.clone().into_inner()[..]);
            if fast.is_err() {
                prop_assert_eq!(fast_saved, saved);
                prop_assert_eq!(&fast_vmcb.into_inner()[..], &vmcb.into_inner()[..]);
            }
            let _ = VmcbField::RAX;
        }
    }
}
