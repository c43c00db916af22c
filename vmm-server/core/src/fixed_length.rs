//! Lengths of the exiting instructions the VMM can know without a full decode: when the bytes at
//! CS:RIP start with the one prefix-free encoding of an expected instruction whose length does
//! not depend on the code size (CPUID `0F A2`, RDMSR `0F 32`, WRMSR `0F 30`, HLT `F4`, IN/OUT
//! with an 8-bit port `E4`..`E7` and with DX `EC`..`EF`; SDM Vol. 2 opcode tables ),
//! the length is the encoding's. Anything else (a prefix, another opcode, too few bytes) is left
//! to the full decoder, so the answer is always the decoder's (the tests compare them).
use iced_x86::Mnemonic;

/// One prefix-free encoding: its leading bytes (opcode, then for two-byte opcodes the second
/// byte) and its whole length.
struct Encoding {
    mnemonic: Mnemonic,
    opcode: &'static [u8],
    length: usize,
}

/// The encodings the exit handlers expect (SDM Vol. 2A/2B: CPUID, RDMSR, WRMSR, HLT, IN, OUT).
/// None takes ModRM, a displacement or an operand-size-dependent immediate, so the length is the
/// same in 16-, 32- and 64-bit code.
const ENCODINGS: [Encoding; 12] = [
    Encoding {
        mnemonic: Mnemonic::Cpuid,
        opcode: &[0x0f, 0xa2],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::Rdmsr,
        opcode: &[0x0f, 0x32],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::Wrmsr,
        opcode: &[0x0f, 0x30],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::Hlt,
        opcode: &[0xf4],
        length: 1,
    },
    // IN AL/eAX, imm8 (E4, E5) and OUT imm8, AL/eAX (E6, E7): opcode + port byte.
    Encoding {
        mnemonic: Mnemonic::In,
        opcode: &[0xe4],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::In,
        opcode: &[0xe5],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::Out,
        opcode: &[0xe6],
        length: 2,
    },
    Encoding {
        mnemonic: Mnemonic::Out,
        opcode: &[0xe7],
        length: 2,
    },
    // IN AL/eAX, DX (EC, ED) and OUT DX, AL/eAX (EE, EF): the opcode alone.
    Encoding {
        mnemonic: Mnemonic::In,
        opcode: &[0xec],
        length: 1,
    },
    Encoding {
        mnemonic: Mnemonic::In,
        opcode: &[0xed],
        length: 1,
    },
    Encoding {
        mnemonic: Mnemonic::Out,
        opcode: &[0xee],
        length: 1,
    },
    Encoding {
        mnemonic: Mnemonic::Out,
        opcode: &[0xef],
        length: 1,
    },
];

/// The length of the instruction that `bytes` (fetched at CS:RIP) start with, if it is the
/// prefix-free encoding of one of `expected` listed in [`ENCODINGS`] and `bytes` hold all of
/// it; `None` means "decode it".
pub fn fixed_length(bytes: &[u8], expected: &[Mnemonic]) -> Option<usize> {
    ENCODINGS
        .iter()
        .find(|encoding| bytes.starts_with(encoding.opcode))
        .filter(|encoding| bytes.len() >= encoding.length && expected.contains(&encoding.mnemonic))
        .map(|encoding| encoding.length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::decode;
    use crate::registers::CpuMode;
    use proptest::prelude::*;

    const MODES: [CpuMode; 3] = [CpuMode::Bits16, CpuMode::Bits32, CpuMode::Bits64];

    #[test]
    fn every_encoding_is_what_the_decoder_says_in_every_mode() {
        for encoding in &ENCODINGS {
            let mut bytes = [0x90u8; 15];
            bytes[..encoding.opcode.len()].copy_from_slice(encoding.opcode);
            for mode in MODES {
                let instruction = decode(&bytes, mode, 0x1000).unwrap();
                assert_eq!(instruction.mnemonic(), encoding.mnemonic, "{mode:?}");
                assert_eq!(instruction.len(), encoding.length, "{mode:?}");
            }
            assert_eq!(
                fixed_length(&bytes, &[encoding.mnemonic]),
                Some(encoding.length)
            );
        }
    }

    #[test]
    fn prefixes_other_instructions_and_short_fetches_are_left_to_the_decoder() {
        let cpuid = [Mnemonic::Cpuid];
        // CPUID with an operand-size, REP or REX prefix is longer than two bytes.
        assert_eq!(fixed_length(&[0x66, 0x0f, 0xa2], &cpuid), None);
        assert_eq!(fixed_length(&[0xf3, 0x0f, 0xa2], &cpuid), None);
        assert_eq!(fixed_length(&[0x48, 0x0f, 0xa2], &cpuid), None);
        // RDMSR bytes where CPUID is expected: the decoder's check reports it.
        assert_eq!(fixed_length(&[0x0f, 0x32], &cpuid), None);
        // IN AL, imm8 whose port byte was not fetched.
        assert_eq!(fixed_length(&[0xe4], &[Mnemonic::In]), None);
        assert_eq!(fixed_length(&[0xe4, 0x60], &[Mnemonic::In]), Some(2));
        assert_eq!(fixed_length(&[0xe4, 0x60], &[Mnemonic::Out]), None);
        assert_eq!(fixed_length(&[], &cpuid), None);
        assert_eq!(fixed_length(&[0x0f], &cpuid), None);
    }

    fn mnemonics() -> impl Strategy<Value = Vec<Mnemonic>> {
        let all = [
            Mnemonic::Cpuid,
            Mnemonic::Rdmsr,
            Mnemonic::Wrmsr,
            Mnemonic::Hlt,
            Mnemonic::In,
            Mnemonic::Out,
        ];
        proptest::sample::subsequence(all.to_vec(), 0..=all.len())
    }

    /// Bytes that often start with a listed opcode (or a prefix before one).
    fn instruction_bytes() -> impl Strategy<Value = Vec<u8>> {
        let lead = prop_oneof![
            Just(vec![0x0f, 0xa2]),
            Just(vec![0x0f, 0x32]),
            Just(vec![0x0f, 0x30]),
            Just(vec![0xf4]),
            (0xe4u8..=0xe7).prop_map(|opcode| vec![opcode]),
            (0xecu8..=0xef).prop_map(|opcode| vec![opcode]),
            Just(vec![0x66]),
            Just(vec![0x48]),
            Just(vec![]),
        ];
        (lead, proptest::collection::vec(any::<u8>(), 0..15)).prop_map(|(mut bytes, tail)| {
            bytes.extend(tail);
            bytes.truncate(15);
            bytes
        })
    }

    proptest! {
        #[test]
        fn a_fixed_length_is_always_the_decoded_length(
            bytes in instruction_bytes(),
            expected in mnemonics(),
            mode in proptest::sample::select(MODES.to_vec()),
        ) {
            if let Some(length) = fixed_length(&bytes, &expected) {
                let instruction = decode(&bytes, mode, 0x1000);
                prop_assert!(instruction.is_ok(), "{bytes:x?} {mode:?}");
                let instruction = instruction.unwrap();
                prop_assert!(expected.contains(&instruction.mnemonic()));
                prop_assert_eq!(instruction.len(), length);
            }
        }
    }
}
