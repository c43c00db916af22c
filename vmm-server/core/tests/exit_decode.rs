//! `decode_exit_into` against `ExitMessage::from_words`: over exits built from random states and
//! reasons (and corrupted copies of them), decoding into an exit that still holds an earlier,
//! different exit must fail the same way or give an exit that `Vmm::handle_exit` answers the
//! same way (the same reply words, injection, window request, stop report or wait).
mod common;

use common::{long_mode, protected_mode, real_mode, FakeHost};
use proptest::prelude::*;
use sluice_abi::vcpu::{
    ActivityState, Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr, GuestPhys,
    InstructionLength, Interruptibility, IoDirection, IoExit, IoSize, MemoryAccess, Mtd, Segment,
    SegmentAttributes, MAX_EXIT_WORDS, MAX_REPLY_WORDS,
};
use vmm_core::{
    decode_exit_into, empty_exit, ExitAction, SliceMemory, Vmm, VmmConfig, REQUIRED_STATE,
};

fn any_reason() -> impl Strategy<Value = ExitReason> {
    prop_oneof![
        Just(ExitReason::Cpuid),
        Just(ExitReason::Hlt),
        Just(ExitReason::Preempted),
        Just(ExitReason::InterruptWindow),
        Just(ExitReason::TripleFault),
        (0u32..0x20).prop_map(|msr| ExitReason::MsrRead { msr }),
        (any::<u64>()).prop_map(|value| ExitReason::MsrWrite { msr: 0x10, value }),
        (0x3f8u16..0x400, any::<bool>()).prop_map(|(port, input)| ExitReason::Io(IoExit {
            port,
            size: IoSize::Byte,
            direction: if input {
                IoDirection::In
            } else {
                IoDirection::Out
            },
            string: false,
            rep: false,
        })),
        (0u64..0x10).prop_map(|offset| ExitReason::MemoryFault {
            gpa: GuestPhys(0xfe00_0000 + offset * 4),
            access: MemoryAccess::Write,
        }),
        Just(ExitReason::Exception(
            Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0)).unwrap()
        )),
    ]
}

/// An exit whose state is one of the mode fixtures with random registers, interrupt state and
/// extra (or missing) groups.
fn any_exit() -> impl Strategy<Value = ExitMessage> {
    (
        any_reason(),
        0u8..3,
        proptest::array::uniform16(0u64..0x1_0000),
        0u8..16,
        any::<u64>(),
        (any::<bool>(), 0u32..4, any::<bool>()),
        0u64..(1 << 16),
        any::<bool>(),
    )
        .prop_map(
            |(reason, mode, registers, length, extra, interrupts, groups, drop_required)| {
                let mut state = match mode {
                    0 => long_mode(0x1000),
                    1 => protected_mode(0x1000),
                    _ => real_mode(0, 0x1000),
                };
                for (register, value) in Gpr::ALL.into_iter().zip(registers) {
                    state.gpr.set(register, value);
                }
                let (interrupts_enabled, shadow, pending) = interrupts;
                state.rflags = if interrupts_enabled { 0x202 } else { 0x2 };
                state.interruptibility = Interruptibility::new(shadow).unwrap();
                state.pending_event = pending.then_some(Event::ExternalInterrupt(0x30));
                state.tsc_offset = extra;
                state.ds = Segment {
                    selector: 0x10,
                    attributes: SegmentAttributes::new(0x93).unwrap(),
                    limit: 0xffff,
                    base: extra & 0xffff_f000,
                };
                state.mtd = if drop_required {
                    Mtd::from_bits(groups).unwrap()
                } else {
                    REQUIRED_STATE | Mtd::from_bits(groups).unwrap()
                };
                ExitMessage {
                    reason,
                    instruction_length: InstructionLength::new(length),
                    hardware_exit_code: extra >> 3,
                    state,
                }
            },
        )
}

/// A different exit with every group present and odd values, to be overwritten.
fn stale_exit() -> ExitMessage {
    let mut exit = empty_exit();
    exit.reason = ExitReason::Shutdown;
    exit.hardware_exit_code = 0x7f;
    exit.state = long_mode(0xdead_0000);
    exit.state.mtd = Mtd::ALL;
    for register in Gpr::ALL {
        exit.state.gpr.set(register, 0xbad0_0000 + register as u64);
    }
    exit.state.cr2 = 0xbad;
    exit.state.tsc_offset = 0xbad;
    exit.state.interruptibility = Interruptibility::new(Interruptibility::BLOCKING_BY_STI).unwrap();
    exit.state.activity = ActivityState::Hlt;
    exit.state.pending_event = Some(Event::ExternalInterrupt(0x99));
    exit
}

/// What a VMM does with `exit`: its action as words (replies carry only the groups their
/// descriptor names) and the console lines it produced.
fn answer(
    exit: &ExitMessage,
    code: &[u8],
    ticks: u64,
) -> (Vec<u64>, Option<ExitAction>, Vec<String>) {
    let ram = common::ram_with(0x3000, 0x1000, code);
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut vmm = Vmm::new(VmmConfig::standard("decode"), FakeHost::default()).unwrap();
    vmm.tick(ticks);
    let action = vmm.handle_exit(exit, &memory);
    let lines = vmm.take_console_lines();
    match action {
        ExitAction::Resume(reply) => {
            let mut words = [0u64; MAX_REPLY_WORDS];
            let count = reply.to_words(&mut words).unwrap();
            (words[..count].to_vec(), None, lines)
        }
        other => (Vec::new(), Some(other), lines),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn decoding_into_a_used_exit_is_handled_like_a_fresh_decode(
        exit in any_exit(),
        corrupt in proptest::option::of((0usize..MAX_EXIT_WORDS, 0u32..64)),
        shorten in 0usize..3,
        code in prop_oneof![
            Just(vec![0x0f, 0xa2]),
            Just(vec![0x66, 0x0f, 0xa2]),
            Just(vec![0xf4]),
            Just(vec![0xee]),
            Just(vec![0xe6, 0xf8]),
            Just(vec![0x0f, 0x32]),
            Just(vec![0x0f, 0x30]),
            Just(vec![0x89, 0x08]),
            proptest::collection::vec(any::<u8>(), 0..15),
        ],
        ticks in 0u64..2,
    ) {
        let mut words = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut words).unwrap();
        if let Some((index, bit)) = corrupt {
            words[index % count] ^= 1 << bit;
        }
        let words = &words[..count - shorten.min(1) * (shorten % 2)];
        let fresh = ExitMessage::from_words(words);
        let mut reused = stale_exit();
        let decoded = decode_exit_into(words, &mut reused);
        match fresh {
            Err(error) => prop_assert_eq!(decoded, Err(error)),
            Ok(fresh) => {
                prop_assert_eq!(decoded, Ok(()));
                prop_assert_eq!(answer(&reused, &code, ticks), answer(&fresh, &code, ticks));
                if !fresh.state.mtd.contains(REQUIRED_STATE) {
                    prop_assert_eq!(reused, fresh);
                }
            }
        }
    }
}

#[test]
fn a_used_exit_that_lacks_required_state_is_decoded_afresh() {
    let mut exit = stale_exit();
    exit.reason = ExitReason::Cpuid;
    exit.state.mtd = Mtd::GPR_ACDB;
    let mut words = [0u64; MAX_EXIT_WORDS];
    let count = exit.to_words(&mut words).unwrap();
    let mut reused = stale_exit();
    decode_exit_into(&words[..count], &mut reused).unwrap();
    // Without the fresh decode the stop report would show the stale RIP 0xdead_0000.
    assert_eq!(reused.state.rip, 0);
    assert_eq!(reused, ExitMessage::from_words(&words[..count]).unwrap());
}
