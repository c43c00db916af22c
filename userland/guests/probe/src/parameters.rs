//! The parameter block: one 4 KiB page at [`crate::layout::PARAMETERS_ADDRESS`], present in the
//! image with its defaults, which the VMM may overwrite after loading and before starting the
//! vCPU. It carries the guest's command line (the manifest's `cmdline`, copied verbatim); the
//! probe reads its mode from it.
//!
//! | offset | size | field | value |
//! |---|---|---|---|
//! | 0x00 | 4 | magic | [`MAGIC`] ("SLPB", little-endian) |
//! | 0x04 | 4 | version | [`VERSION`] |
//! | 0x08 | 4 | command-line length | bytes used at 0x10, at most [`COMMAND_LINE_CAPACITY`] |
//! | 0x0c | 4 | reserved | 0 |
//! | 0x10 | up to 4080 | command line | ASCII words separated by blanks; a NUL ends it early |
//!
//! Words starting with `probe.` are the probe's options; every other word is ignored (so a
//! Linux-style `console=ttyS0` does no harm). Options:
//!
//! | word | meaning |
//! |---|---|
//! | `probe.mode=checks` | run every check, print the summary, exit through the debug port (the default) |
//! | `probe.mode=triple-fault` | run every check, then print `probe: triple fault on purpose` and triple-fault |
//! | `probe.mode=bench` | run every check, then time 10,000 CPUID exits and print a `bench:` line |
//! | `probe.mode=wild` | run every check, then touch unbacked guest-physical memory and execute garbage |
//! | `probe.mode=fpu-stress` | run every check, then keep seeded values in XMM0..15, MXCSR and FCW through 200,000 CPUID exits, checking them every 1,000 |
//! | `probe.seed=WORD` | the seed of `fpu-stress`'s values (FNV-1a of WORD; default: the empty word) |
use core::fmt;

/// Size of the block (one page).
pub const BLOCK_BYTES: usize = 4096;
/// The block's magic number: "SLPB" as little-endian bytes.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SLPB");
/// The layout version this probe reads.
pub const VERSION: u32 = 1;
/// Offset of the command-line length field.
pub const COMMAND_LINE_LENGTH_OFFSET: usize = 0x08;
/// Offset of the command line.
pub const COMMAND_LINE_OFFSET: usize = 0x10;
/// Most command-line bytes the block holds.
pub const COMMAND_LINE_CAPACITY: usize = BLOCK_BYTES - COMMAND_LINE_OFFSET;

const OPTION_PREFIX: &[u8] = b"probe.";
const MODE_OPTION: &[u8] = b"probe.mode=";
const SEED_OPTION: &[u8] = b"probe.seed=";

/// What the probe does after its checks pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Print `probe: all checks passed` and exit with status 0.
    Checks,
    /// Print `probe: triple fault on purpose`, then load an empty IDT and raise an exception.
    TripleFault,
    /// After the checks, misbehave: read and write guest-physical memory nothing backs, then
    /// jump into a page of garbage bytes. The VMM must stop the guest; the host keeps running.
    Wild,
    /// After the checks, time CPUID exits (guest -> kernel -> VMM -> guest) with RDTSC and
    /// print `bench: vm-exit-cpuid-round-trip iterations=N total=T per=P unit=instructions`.
    Bench,
    /// After the checks, load XMM0..15, MXCSR and FCW with values derived from `probe.seed=`
    /// and check they keep them through many CPUID exits and timer ticks, then print
    /// `probe: fpu-stress passed (...)` or fail check `fpu-stress`.
    FpuStress,
}

/// Every mode, in the order error messages list them.
const MODES: [Mode; 5] = [
    Mode::Checks,
    Mode::TripleFault,
    Mode::Bench,
    Mode::Wild,
    Mode::FpuStress,
];

impl Mode {
    /// The value of `probe.mode=` that selects this mode.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Checks => "checks",
            Mode::TripleFault => "triple-fault",
            Mode::Bench => "bench",
            Mode::Wild => "wild",
            Mode::FpuStress => "fpu-stress",
        }
    }

    fn from_name(name: &[u8]) -> Option<Mode> {
        MODES
            .into_iter()
            .find(|mode| mode.name().as_bytes() == name)
    }
}

/// The decoded block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameters<'a> {
    /// The selected mode.
    pub mode: Mode,
    /// The value of `probe.seed=` (empty when absent).
    pub seed: &'a [u8],
    /// The command line as the VMM wrote it (up to its length or first NUL).
    pub command_line: &'a [u8],
}

/// Why a parameter block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterError<'a> {
    /// Fewer bytes than the block's header.
    Truncated {
        /// Bytes available.
        length: usize,
    },
    /// The magic number is not [`MAGIC`].
    BadMagic(u32),
    /// A layout version this probe does not read.
    UnsupportedVersion(u32),
    /// The reserved field is not zero.
    ReservedNotZero(u32),
    /// The command-line length exceeds the block (or the bytes given).
    CommandLineTooLong(u32),
    /// A `probe.` word that is not a known option.
    UnknownOption(&'a [u8]),
    /// `probe.mode=` with a value that is not a mode.
    UnknownMode(&'a [u8]),
    /// `probe.mode=` appears more than once.
    DuplicateMode,
    /// `probe.seed=` appears more than once.
    DuplicateSeed,
}

impl fmt::Display for ParameterError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterError::Truncated { length } => write!(
                f,
                "parameter block has {length} bytes, fewer than its {COMMAND_LINE_OFFSET}-byte header"
            ),
            ParameterError::BadMagic(magic) => {
                write!(f, "parameter block magic is {magic:#010x}, expected {MAGIC:#010x}")
            }
            ParameterError::UnsupportedVersion(version) => write!(
                f,
                "parameter block version {version} is not supported (expected {VERSION})"
            ),
            ParameterError::ReservedNotZero(value) => {
                write!(f, "parameter block reserved field is {value:#x}, expected 0")
            }
            ParameterError::CommandLineTooLong(length) => write!(
                f,
                "command-line length {length} exceeds the block's {COMMAND_LINE_CAPACITY} bytes"
            ),
            ParameterError::UnknownOption(word) => write!(
                f,
                "unknown option \"{}\" (known: probe.mode=checks, probe.mode=triple-fault, probe.mode=bench, probe.mode=wild, probe.mode=fpu-stress, probe.seed=WORD)",
                Escaped(word)
            ),
            ParameterError::UnknownMode(value) => write!(
                f,
                "unknown probe.mode \"{}\" (known: checks, triple-fault, bench, wild, fpu-stress)",
                Escaped(value)
            ),
            ParameterError::DuplicateMode => f.write_str("probe.mode= is given more than once"),
            ParameterError::DuplicateSeed => f.write_str("probe.seed= is given more than once"),
        }
    }
}

/// Shows bytes as text: printable ASCII as is, everything else (and `"` and `\`) as `\xNN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            match byte {
                b'"' | b'\\' => write!(f, "\\x{byte:02x}")?,
                0x20..=0x7e => fmt::Write::write_char(f, char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        Ok(())
    }
}

fn field(block: &[u8], offset: usize) -> Option<u32> {
    let bytes = block.get(offset..offset.checked_add(4)?)?;
    let array: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_le_bytes(array))
}

/// Decodes a parameter block (normally [`BLOCK_BYTES`] long; only its used part is read).
pub fn decode(block: &[u8]) -> Result<Parameters<'_>, ParameterError<'_>> {
    let truncated = ParameterError::Truncated {
        length: block.len(),
    };
    let header = |offset| field(block, offset).ok_or(truncated);
    let magic = header(0x00)?;
    if magic != MAGIC {
        return Err(ParameterError::BadMagic(magic));
    }
    let version = header(0x04)?;
    if version != VERSION {
        return Err(ParameterError::UnsupportedVersion(version));
    }
    let length = header(COMMAND_LINE_LENGTH_OFFSET)?;
    let reserved = header(0x0c)?;
    if reserved != 0 {
        return Err(ParameterError::ReservedNotZero(reserved));
    }
    let too_long = ParameterError::CommandLineTooLong(length);
    let length_bytes = usize::try_from(length).map_err(|_| too_long)?;
    if length_bytes > COMMAND_LINE_CAPACITY {
        return Err(too_long);
    }
    let end = COMMAND_LINE_OFFSET
        .checked_add(length_bytes)
        .ok_or(too_long)?;
    let raw = block.get(COMMAND_LINE_OFFSET..end).ok_or(too_long)?;
    let command_line = match raw.iter().position(|&byte| byte == 0) {
        Some(nul) => raw.get(..nul).unwrap_or(raw),
        None => raw,
    };
    let (mode, seed) = options(command_line)?;
    Ok(Parameters {
        mode,
        seed,
        command_line,
    })
}

/// The mode a command line selects ([`Mode::Checks`] when it names none).
pub fn mode_of(command_line: &[u8]) -> Result<Mode, ParameterError<'_>> {
    options(command_line).map(|(mode, _)| mode)
}

/// The mode and the seed a command line gives (defaults: [`Mode::Checks`], the empty seed).
fn options(command_line: &[u8]) -> Result<(Mode, &[u8]), ParameterError<'_>> {
    let mut mode = None;
    let mut seed = None;
    let words = command_line
        .split(|byte| byte.is_ascii_whitespace())
        .filter(|word| !word.is_empty());
    for word in words {
        if let Some(value) = word.strip_prefix(MODE_OPTION) {
            let selected = Mode::from_name(value).ok_or(ParameterError::UnknownMode(value))?;
            if mode.replace(selected).is_some() {
                return Err(ParameterError::DuplicateMode);
            }
        } else if let Some(value) = word.strip_prefix(SEED_OPTION) {
            if seed.replace(value).is_some() {
                return Err(ParameterError::DuplicateSeed);
            }
        } else if word.starts_with(OPTION_PREFIX) {
            return Err(ParameterError::UnknownOption(word));
        }
    }
    Ok((mode.unwrap_or(Mode::Checks), seed.unwrap_or(b"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(command_line: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; BLOCK_BYTES];
        bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&VERSION.to_le_bytes());
        bytes[8..12].copy_from_slice(&(command_line.len() as u32).to_le_bytes());
        bytes[16..16 + command_line.len()].copy_from_slice(command_line);
        bytes
    }

    #[test]
    fn magic_spells_slpb() {
        assert_eq!(MAGIC.to_le_bytes(), *b"SLPB");
    }

    #[test]
    fn empty_command_line_selects_the_checks() {
        let bytes = block(b"");
        let parameters = decode(&bytes).unwrap();
        assert_eq!(parameters.mode, Mode::Checks);
        assert_eq!(parameters.command_line, b"");
    }

    #[test]
    fn mode_option_is_found_among_other_words() {
        let bytes = block(b"console=ttyS0  probe.mode=triple-fault\tquiet\n");
        let parameters = decode(&bytes).unwrap();
        assert_eq!(parameters.mode, Mode::TripleFault);
        assert_eq!(
            parameters.command_line,
            b"console=ttyS0  probe.mode=triple-fault\tquiet\n"
        );
        assert_eq!(mode_of(b"probe.mode=checks"), Ok(Mode::Checks));
        assert_eq!(
            mode_of(b"probe.modes=checks"),
            Err(ParameterError::UnknownOption(b"probe.modes=checks"))
        );
    }

    #[test]
    fn seed_and_fpu_stress_mode_are_read() {
        let bytes = block(b"probe.seed=left console=ttyS0 probe.mode=fpu-stress");
        let parameters = decode(&bytes).unwrap();
        assert_eq!(parameters.mode, Mode::FpuStress);
        assert_eq!(parameters.seed, b"left");
        assert_eq!(decode(&block(b"probe.mode=bench")).unwrap().seed, b"");
        assert_eq!(decode(&block(b"probe.seed=")).unwrap().seed, b"");
        assert_eq!(
            decode(&block(b"probe.seed=a probe.seed=a")),
            Err(ParameterError::DuplicateSeed)
        );
        assert_eq!(
            mode_of(b"probe.seeds=a"),
            Err(ParameterError::UnknownOption(b"probe.seeds=a"))
        );
        for mode in MODES {
            assert_eq!(Mode::from_name(mode.name().as_bytes()), Some(mode));
        }
    }

    #[test]
    fn nul_ends_the_command_line() {
        let bytes = block(b"quiet\0probe.mode=bogus");
        let parameters = decode(&bytes).unwrap();
        assert_eq!(parameters.command_line, b"quiet");
        assert_eq!(parameters.mode, Mode::Checks);
    }

    #[test]
    fn bad_options_are_refused() {
        assert_eq!(
            mode_of(b"probe.mode=triple"),
            Err(ParameterError::UnknownMode(b"triple"))
        );
        assert_eq!(
            mode_of(b"probe.mode="),
            Err(ParameterError::UnknownMode(b""))
        );
        assert_eq!(
            mode_of(b"probe.verbose"),
            Err(ParameterError::UnknownOption(b"probe.verbose"))
        );
        assert_eq!(
            mode_of(b"probe.mode=checks probe.mode=checks"),
            Err(ParameterError::DuplicateMode)
        );
        assert_eq!(
            mode_of(b"PROBE.MODE=checks"),
            Ok(Mode::Checks),
            "options are case-sensitive; others are ignored"
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = block(b"probe.mode=checks");
        assert_eq!(
            decode(&good[..15]),
            Err(ParameterError::Truncated { length: 15 })
        );
        assert_eq!(decode(&[]), Err(ParameterError::Truncated { length: 0 }));

        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            decode(&bad_magic),
            Err(ParameterError::BadMagic(u32::from_le_bytes(*b"XLPB")))
        );

        let mut bad_version = good.clone();
        bad_version[4] = 2;
        assert_eq!(
            decode(&bad_version),
            Err(ParameterError::UnsupportedVersion(2))
        );

        let mut reserved = good.clone();
        reserved[12] = 1;
        assert_eq!(decode(&reserved), Err(ParameterError::ReservedNotZero(1)));

        let mut too_long = good.clone();
        too_long[8..12].copy_from_slice(&(COMMAND_LINE_CAPACITY as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&too_long),
            Err(ParameterError::CommandLineTooLong(
                COMMAND_LINE_CAPACITY as u32 + 1
            ))
        );
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&huge),
            Err(ParameterError::CommandLineTooLong(u32::MAX))
        );

        // A length inside the capacity but past the bytes given.
        assert_eq!(
            decode(&good[..20]),
            Err(ParameterError::CommandLineTooLong(17))
        );
    }

    #[test]
    fn full_capacity_command_line_is_accepted() {
        let line = vec![b'x'; COMMAND_LINE_CAPACITY];
        let bytes = block(&line);
        assert_eq!(
            decode(&bytes).unwrap().command_line.len(),
            COMMAND_LINE_CAPACITY
        );
    }

    #[test]
    fn errors_display_their_cause() {
        let text = ParameterError::UnknownMode(b"tr\"ip\x01").to_string();
        assert_eq!(
            text,
            "unknown probe.mode \"tr\\x22ip\\x01\" (known: checks, triple-fault, bench, wild, fpu-stress)"
        );
        assert!(ParameterError::BadMagic(1)
            .to_string()
            .contains("0x00000001"));
        assert!(ParameterError::DuplicateMode
            .to_string()
            .contains("more than once"));
        assert_eq!(
            ParameterError::DuplicateSeed.to_string(),
            "probe.seed= is given more than once"
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn accepted_blocks_are_consistent(
            words in proptest::collection::vec("[a-z.=-]{0,12}", 0..8),
            mode in prop_oneof![
                Just(None),
                Just(Some(Mode::Checks)),
                Just(Some(Mode::TripleFault)),
                Just(Some(Mode::FpuStress)),
            ],
        ) {
            let mut line = words.join(" ");
            if let Some(mode) = mode {
                line.push_str(" probe.mode=");
                line.push_str(mode.name());
            }
            let bytes = block(line.as_bytes());
            match decode(&bytes) {
                Ok(parameters) => {
                    prop_assert_eq!(parameters.command_line, line.as_bytes());
                    let has_probe_word = words.iter().any(|word| word.starts_with("probe."));
                    prop_assert!(!has_probe_word);
                    prop_assert_eq!(parameters.mode, mode.unwrap_or(Mode::Checks));
                }
                Err(error) => {
                    let refused = matches!(
                        error,
                        ParameterError::UnknownOption(_)
                            | ParameterError::UnknownMode(_)
                            | ParameterError::DuplicateMode
                            | ParameterError::DuplicateSeed
                    );
                    prop_assert!(refused, "{}", error);
                    prop_assert!(words.iter().any(|word| word.starts_with("probe.")));
                }
            }
        }
    }
}
