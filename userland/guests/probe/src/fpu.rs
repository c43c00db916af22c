//! The register values the `fpu` check and the `fpu-stress` mode load and expect back: XMM0..15,
//! MXCSR and the x87 control word ([`SseState`], a memory image the guest's assembly stores and
//! loads), the upper halves of YMM0..15 ([`YmmUpper`]), all derived from a seed so two guests
//! never hold the same values; and the XCR0 bits (SDM Vol. 1 section 13.3) and XSETBV rules the
//! check expects the kernel to enforce.
use crate::check::{equal, Mismatch};

/// MXCSR after reset: every exception masked, round to nearest (SDM Vol. 1 section 10.2.3.1).
pub const MXCSR_INITIAL: u32 = 0x1f80;
/// The x87 control word after FNINIT (SDM Vol. 1 section 8.1.5).
pub const FCW_INITIAL: u16 = 0x037f;

/// XCR0 bit 0: x87 state, must always be set (SDM Vol. 1 section 13.3).
pub const XCR0_X87: u64 = 1 << 0;
/// XCR0 bit 1: SSE state (XMM registers, MXCSR).
pub const XCR0_SSE: u64 = 1 << 1;
/// XCR0 bit 2: AVX state (upper halves of YMM0..15); needs SSE.
pub const XCR0_AVX: u64 = 1 << 2;

/// XMM0..15, MXCSR and FCW as one memory image: what the guest's assembly loads (`movdqu`,
/// `ldmxcsr`, `fldcw`) and stores (`movdqu`, `stmxcsr`, `fnstcw`) at the offsets below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct SseState {
    /// XMM0..15, each as (bits 63:0, bits 127:64).
    pub xmm: [[u64; 2]; 16],
    /// MXCSR.
    pub mxcsr: u32,
    /// The x87 control word.
    pub fcw: u16,
    /// Padding, not a register.
    pub reserved: u16,
}

/// Byte offset of XMM*n* in [`SseState`]: 16 × *n*.
pub const XMM_OFFSET: usize = core::mem::offset_of!(SseState, xmm);
/// Byte offset of MXCSR in [`SseState`].
pub const MXCSR_OFFSET: usize = core::mem::offset_of!(SseState, mxcsr);
/// Byte offset of FCW in [`SseState`].
pub const FCW_OFFSET: usize = core::mem::offset_of!(SseState, fcw);

const _: () = assert!(XMM_OFFSET == 0 && MXCSR_OFFSET == 256 && FCW_OFFSET == 260);
const _: () = assert!(core::mem::size_of::<SseState>() == 272);

/// Upper halves (bits 255:128) of YMM0..15, as a memory image for `vinsertf128` and
/// `vextractf128`; each as (bits 191:128, bits 255:192).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct YmmUpper(pub [[u64; 2]; 16]);

const _: () = assert!(core::mem::size_of::<YmmUpper>() == 256);

/// The seed the `fpu` check uses (the stress mode takes one from its command line).
pub const CHECK_SEED: u64 = 0x5eed_f0f0_1234_5678;

/// SplitMix64's finalizer: a bijection on 64 bits that scatters nearby inputs.
const fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit seed from text (FNV-1a), e.g. a guest's `probe.seed=` word.
pub fn seed_from(text: &[u8]) -> u64 {
    text.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// 32 pattern quadwords for `seed` with a domain `salt`: distinct for distinct (seed, salt,
/// index), since `mix` is a bijection and the inputs differ.
fn quadwords(seed: u64, salt: u64) -> [[u64; 2]; 16] {
    let base = mix(seed) ^ salt;
    let mut registers = [[0u64; 2]; 16];
    let mut index = 0u64;
    for register in registers.iter_mut() {
        for half in register.iter_mut() {
            *half = mix(base.wrapping_add(index));
            index += 1;
        }
    }
    registers
}

impl SseState {
    /// The initial state: XMM registers zero, MXCSR and FCW as after reset.
    pub const INITIAL: SseState = SseState {
        xmm: [[0; 2]; 16],
        mxcsr: MXCSR_INITIAL,
        fcw: FCW_INITIAL,
        reserved: 0,
    };

    /// Distinct XMM values for `seed`, an MXCSR with a rounding mode other than "nearest" (and
    /// flush-to-zero for half the seeds) and an FCW with a rounding and precision control
    /// other than the defaults. Only bits every SSE CPU implements are set (MXCSR bits 15:7
    /// and FCW bits 11:8 and 5:0, bit 6 as FNSTCW reports it), so LDMXCSR never faults.
    pub fn patterned(seed: u64) -> SseState {
        let flavour = mix(seed ^ 0xfc);
        // MXCSR.RC (bits 14:13): 1 down, 2 up, 3 toward zero; FZ (bit 15).
        let rounding = 1 + (flavour % 3) as u32;
        let flush_to_zero = (flavour >> 8 & 1) as u32;
        // FCW.PC (bits 9:8): 0 single or 2 double precision (default 3); RC (bits 11:10).
        let precision = ((flavour >> 16 & 1) * 2) as u16;
        let fcw_rounding = (flavour >> 24 & 3) as u16;
        SseState {
            xmm: quadwords(seed, 0x584d_4d00),
            mxcsr: MXCSR_INITIAL | rounding << 13 | flush_to_zero << 15,
            fcw: 0x007f | precision << 8 | fcw_rounding << 10,
            reserved: 0,
        }
    }

    /// `Ok` when `observed` holds exactly these registers; otherwise the first one that
    /// differs, named (`xmm5 bits 127:64`, `mxcsr`, `fcw`).
    pub fn compare(&self, observed: &SseState) -> Result<(), Mismatch> {
        compare_halves(&XMM_NAMES, &self.xmm, &observed.xmm)?;
        equal("mxcsr", u64::from(self.mxcsr), u64::from(observed.mxcsr))?;
        equal("fcw", u64::from(self.fcw), u64::from(observed.fcw))
    }
}

impl YmmUpper {
    /// Distinct upper halves for `seed` (independent of [`SseState::patterned`]'s XMM values).
    pub fn patterned(seed: u64) -> YmmUpper {
        YmmUpper(quadwords(seed, 0x594d_4d00))
    }

    /// `Ok` when `observed` holds exactly these values; otherwise the first that differs.
    pub fn compare(&self, observed: &YmmUpper) -> Result<(), Mismatch> {
        compare_halves(&YMM_NAMES, &self.0, &observed.0)
    }
}

fn compare_halves(
    names: &[[&'static str; 2]; 16],
    expected: &[[u64; 2]; 16],
    observed: &[[u64; 2]; 16],
) -> Result<(), Mismatch> {
    for ((names, expected), observed) in names.iter().zip(expected).zip(observed) {
        for ((name, &expected), &observed) in names.iter().zip(expected).zip(observed) {
            equal(name, expected, observed)?;
        }
    }
    Ok(())
}

/// One XSETBV the kernel must refuse with #GP(0) (SDM Vol. 2C, XSETBV, "Protected Mode
/// Exceptions").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedXsetbv {
    /// ECX: which XCR.
    pub register: u32,
    /// EDX:EAX.
    pub value: u64,
    /// Why it is invalid, for the report.
    pub why: &'static str,
}

/// The invalid XSETBVs the check tries while the guest's XCR0 is `x87 | SSE`, given the XCR0
/// the guest started with (`initial`, the host's): x87 cleared, XCR1 (ECX = 1), a component
/// beyond `initial` (the lowest bit it lacks), and AVX without SSE when `initial` has AVX.
pub fn refused_xsetbvs(initial: u64) -> impl Iterator<Item = RefusedXsetbv> {
    let beyond = 1u64 << (!initial).trailing_zeros().min(63);
    let avx_without_sse = RefusedXsetbv {
        register: 0,
        value: XCR0_X87 | XCR0_AVX,
        why: "XSETBV(0, 0x5): AVX without SSE",
    };
    [
        Some(RefusedXsetbv {
            register: 0,
            value: XCR0_SSE,
            why: "XSETBV(0, 0x2): x87 bit clear",
        }),
        Some(RefusedXsetbv {
            register: 1,
            value: XCR0_X87 | XCR0_SSE,
            why: "XSETBV(1, 0x3): XCR1",
        }),
        Some(RefusedXsetbv {
            register: 0,
            value: initial | beyond,
            why: "XSETBV(0, initial | lowest bit it lacks): beyond the host's XCR0",
        }),
        (initial & XCR0_AVX != 0).then_some(avx_without_sse),
    ]
    .into_iter()
    .flatten()
}

macro_rules! halves {
    ($prefix:literal, $low:literal, $high:literal; $($n:literal)*) => {
        [$([concat!($prefix, $n, " bits ", $low), concat!($prefix, $n, " bits ", $high)]),*]
    };
}

/// Names of the XMM halves in mismatch reports.
const XMM_NAMES: [[&str; 2]; 16] =
    halves!("xmm", "63:0", "127:64"; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
/// Names of the YMM upper halves in mismatch reports.
const YMM_NAMES: [[&str; 2]; 16] =
    halves!("ymm", "191:128", "255:192"; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Relation;
    use proptest::prelude::*;

    fn all_quadwords(state: &SseState) -> Vec<u64> {
        state.xmm.iter().flatten().copied().collect()
    }

    #[test]
    fn patterns_are_distinct_non_zero_and_differ_between_seeds() {
        let left = SseState::patterned(seed_from(b"left"));
        let right = SseState::patterned(seed_from(b"right"));
        let check = SseState::patterned(CHECK_SEED);
        for state in [&left, &right, &check] {
            let mut words = all_quadwords(state);
            assert!(words.iter().all(|&word| word != 0));
            words.sort_unstable();
            words.dedup();
            assert_eq!(words.len(), 32, "every half differs");
        }
        for (a, b) in all_quadwords(&left).iter().zip(all_quadwords(&right)) {
            assert_ne!(*a, b);
        }
        let ymm = YmmUpper::patterned(CHECK_SEED);
        for half in ymm.0.iter().flatten() {
            assert!(
                !all_quadwords(&check).contains(half),
                "YMM uppers differ from XMM"
            );
        }
    }

    #[test]
    fn control_words_are_valid_and_not_the_defaults() {
        for seed in (0..256).map(mix).chain([CHECK_SEED, seed_from(b"left")]) {
            let state = SseState::patterned(seed);
            assert_ne!(
                state.mxcsr & 0x6000,
                0,
                "a rounding mode other than nearest"
            );
            assert_eq!(
                state.mxcsr & !0xff80,
                0,
                "only bits 15:7 (no DAZ, no flags)"
            );
            assert_eq!(state.mxcsr & 0x1f80, 0x1f80, "exceptions stay masked");
            assert_ne!(
                state.fcw & 0x0300,
                0x0300,
                "a precision other than extended"
            );
            assert_eq!(state.fcw & !0x0f7f, 0, "only PC, RC and the masks");
            assert_eq!(
                state.fcw & 0x7f,
                0x7f,
                "exceptions stay masked, bit 6 as stored"
            );
        }
    }

    #[test]
    fn seeds_come_from_the_text() {
        assert_eq!(seed_from(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(seed_from(b"a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a test vector");
        assert_ne!(seed_from(b"left"), seed_from(b"right"));
    }

    #[test]
    fn mismatches_name_the_register() {
        let expected = SseState::patterned(1);
        assert_eq!(expected.compare(&expected), Ok(()));
        let mut observed = expected;
        observed.xmm[5][1] = 0;
        let error = expected.compare(&observed).unwrap_err();
        assert_eq!(error.what, "xmm5 bits 127:64");
        assert_eq!(error.relation, Relation::Equal);
        assert_eq!((error.expected, error.actual), (expected.xmm[5][1], 0));

        let error = expected.compare(&SseState::INITIAL).unwrap_err();
        assert_eq!(error.what, "xmm0 bits 63:0", "the first difference");

        let mut observed = expected;
        observed.mxcsr = MXCSR_INITIAL;
        assert_eq!(expected.compare(&observed).unwrap_err().what, "mxcsr");
        let mut observed = expected;
        observed.fcw = FCW_INITIAL;
        let error = expected.compare(&observed).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("fcw: expected {:#x}, got 0x37f", expected.fcw)
        );

        let ymm = YmmUpper::patterned(1);
        let mut observed = ymm;
        observed.0[15][0] ^= 1;
        assert_eq!(
            ymm.compare(&observed).unwrap_err().what,
            "ymm15 bits 191:128"
        );
        assert_eq!(ymm.compare(&ymm), Ok(()));
    }

    #[test]
    fn refused_xsetbvs_are_invalid_for_the_host() {
        let refused: Vec<_> = refused_xsetbvs(0xe7).collect();
        assert_eq!(refused.len(), 4);
        assert_eq!((refused[0].register, refused[0].value), (0, 0x2));
        assert_eq!((refused[1].register, refused[1].value), (1, 0x3));
        assert_eq!(refused[2].value, 0xef, "bit 3 is the lowest the host lacks");
        assert_eq!(refused[3].value, 0x5);
        let without_avx: Vec<_> = refused_xsetbvs(0x3).collect();
        assert_eq!(without_avx.len(), 3);
        assert_eq!(without_avx[2].value, 0x7, "AVX beyond a host without it");
        assert_eq!(refused_xsetbvs(u64::MAX).nth(2).unwrap().value, u64::MAX);
        for initial in [0x3u64, 0x7, 0xe7, 0x2e7, 0x60207] {
            for refused in refused_xsetbvs(initial) {
                let beyond = refused.value & !initial != 0;
                let no_x87 = refused.value & XCR0_X87 == 0;
                let avx_alone = refused.value & XCR0_AVX != 0 && refused.value & XCR0_SSE == 0;
                assert!(
                    refused.register != 0 || beyond || no_x87 || avx_alone,
                    "{refused:?}"
                );
            }
        }
    }

    #[test]
    fn names_follow_the_registers() {
        assert_eq!(XMM_NAMES[0], ["xmm0 bits 63:0", "xmm0 bits 127:64"]);
        assert_eq!(XMM_NAMES[15], ["xmm15 bits 63:0", "xmm15 bits 127:64"]);
        assert_eq!(YMM_NAMES[10][1], "ymm10 bits 255:192");
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_reported_where_it_is(
            seed in any::<u64>(),
            register in 0usize..16,
            half in 0usize..2,
            bit in 0u32..64,
        ) {
            let expected = SseState::patterned(seed);
            let mut observed = expected;
            observed.xmm[register][half] ^= 1 << bit;
            let error = expected.compare(&observed).unwrap_err();
            prop_assert_eq!(error.what, XMM_NAMES[register][half]);
            prop_assert_eq!(error.actual ^ error.expected, 1 << bit);

            let ymm = YmmUpper::patterned(seed);
            let mut observed = ymm;
            observed.0[register][half] ^= 1 << bit;
            prop_assert_eq!(ymm.compare(&observed).unwrap_err().what, YMM_NAMES[register][half]);
        }

        #[test]
        fn different_seeds_never_share_a_register(a in any::<u64>(), b in any::<u64>()) {
            prop_assume!(a != b);
            let (a, b) = (SseState::patterned(a), SseState::patterned(b));
            for (x, y) in a.xmm.iter().zip(&b.xmm) {
                prop_assert_ne!(x, y);
            }
        }
    }
}
