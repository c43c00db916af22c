//! Property tests over untrusted input: random instruction bytes through the MMIO emulator and
//! the length decoder, random exit-message words through the decoder and the dispatcher, and
//! the exit/reply codec's canonical round trip. None may panic.
mod common;

use common::{long_mode, protected_mode, real_mode, FakeHost, Recorder};
use proptest::prelude::*;
use sluice_abi::vcpu::{
    ExitMessage, Gpr, GuestPhys, MemoryAccess, Mtd, Reply, EXIT_HEADER_WORDS, MAX_EXIT_WORDS,
    MAX_REPLY_WORDS,
};
use vmm_core::mmio::emulate_mmio;
use vmm_core::port_io::decoded_length;
use vmm_core::{Bus, BusKind, ExitAction, SliceMemory, Vmm, VmmConfig};

fn any_access() -> impl Strategy<Value = MemoryAccess> {
    prop_oneof![
        Just(MemoryAccess::Read),
        Just(MemoryAccess::Write),
        Just(MemoryAccess::Execute)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_instruction_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..16),
        registers in proptest::array::uniform16(any::<u64>()),
        mode in 0u8..3,
        access in any_access(),
        gpa in any::<u64>(),
    ) {
        let mut state = match mode {
            0 => long_mode(0x1000),
            1 => protected_mode(0x1000),
            _ => real_mode(0x1000, 0xfff0),
        };
        for (register, value) in Gpr::ALL.into_iter().zip(registers) {
            state.gpr.set(register, value);
        }
        let before = state;
        let mut bus = Bus::new(BusKind::Mmio);
        bus.register(0, 1 << 40, Box::new(Recorder::default())).unwrap();
        let gpa = GuestPhys(gpa & ((1 << 52) - 1));
        match emulate_mmio(&bytes, &mut state, gpa, access, &mut bus) {
            Ok(emulated) => {
                prop_assert!(emulated.length >= 1 && emulated.length <= bytes.len());
                prop_assert!(emulated.changed.contains(Mtd::RIP));
            }
            Err(_) => prop_assert_eq!(state, before),
        }
        let ram = common::ram_with(0x3000, 0x1000, &bytes);
        let memory = SliceMemory::new(GuestPhys(0), &ram);
        let mut flat = long_mode(0x1000);
        flat.cr0 &= !(1 << 31);
        let _ = decoded_length(&memory, &flat, &[iced_x86::Mnemonic::Out]);
    }

    #[test]
    fn random_exit_words_never_panic_the_decoder_or_the_dispatcher(
        words in proptest::collection::vec(any::<u64>(), 0..MAX_EXIT_WORDS + 4),
        kind in 1u64..14,
        small in proptest::collection::vec(0u64..0x300, MAX_EXIT_WORDS),
        plausible in any::<bool>(),
        code in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut words = words;
        if plausible {
            // A header that passes, a full descriptor and small payload/state values.
            words = small;
            words.truncate(EXIT_HEADER_WORDS + Mtd::ALL.words());
            words[0] = kind | 1 << 32 | (words[0] % 16) << 48;
            words[3] = 0;
            words[4] = 0;
            words[5] = Mtd::ALL.bits();
        }
        let Ok(exit) = ExitMessage::from_words(&words) else { return Ok(()) };
        let mut out = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut out).unwrap();
        prop_assert_eq!(&out[..count], &words[..]);
        let ram = common::ram_with(0x3000, 0x100, &code);
        let memory = SliceMemory::new(GuestPhys(0), &ram);
        let mut vmm = Vmm::new(VmmConfig::standard("fuzz"), FakeHost::default()).unwrap();
        vmm.tick(1);
        if let ExitAction::Resume(reply) = vmm.handle_exit(&exit, &memory) {
            let mut reply_words = [0u64; MAX_REPLY_WORDS];
            let count = reply.to_words(&mut reply_words).unwrap();
            // Fields outside the reply's descriptor are not transferred: compare the words.
            let decoded = Reply::from_words(&reply_words[..count]).unwrap();
            let mut again = [0u64; MAX_REPLY_WORDS];
            prop_assert_eq!(decoded.to_words(&mut again), Ok(count));
            prop_assert_eq!(&again[..count], &reply_words[..count]);
        }
        let _ = vmm.take_console_lines();
    }

    #[test]
    fn random_reply_words_never_panic_and_round_trip(
        words in proptest::collection::vec(any::<u64>(), 0..MAX_REPLY_WORDS + 4),
        mtd in 0u64..(1 << 16),
    ) {
        let mut words = words;
        if words.len() >= 3 && mtd % 3 == 0 {
            words[0] = 1 << 32 | (words[0] & 1);
            words[1] &= 0xfff;
            words[2] = mtd;
        }
        if let Ok(reply) = Reply::from_words(&words) {
            let mut out = [0u64; MAX_REPLY_WORDS];
            let count = reply.to_words(&mut out).unwrap();
            prop_assert_eq!(&out[..count], &words[..]);
        }
    }
}

#[test]
fn long_mode_fixture_carries_what_the_dispatcher_requires() {
    assert!(long_mode(0).mtd.contains(vmm_core::REQUIRED_STATE));
}
