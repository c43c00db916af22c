//! XSAVE state components and the rules for XCR0 (Intel SDM Vol. 1 chapter 13, "Managing State
//! Using the XSAVE Feature Set"; Vol. 2C XSETBV): which components the host enables in its
//! per-vCPU save areas, and which XCR0 values a guest's XSETBV may set.

use sluice_abi::vcpu::{Event, Exception, ExceptionVector};

use crate::state::injection_word;

/// x87 state (bit 0): always set in XCR0.
pub const X87: u64 = 1 << 0;
/// SSE state: XMM registers and MXCSR (bit 1).
pub const SSE: u64 = 1 << 1;
/// AVX state: upper halves of the YMM registers (bit 2).
pub const AVX: u64 = 1 << 2;
/// MPX state: BNDREGS (bit 3) and BNDCSR (bit 4), set together.
pub const MPX: u64 = (1 << 3) | (1 << 4);
/// AVX-512 state: opmask (bit 5), ZMM_Hi256 (bit 6), Hi16_ZMM (bit 7), set together.
pub const AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);
/// PKRU state (bit 9).
pub const PKRU: u64 = 1 << 9;
/// AMX state: XTILECFG (bit 17) and XTILEDATA (bit 18), set together.
pub const AMX: u64 = (1 << 17) | (1 << 18);
/// The components the kernel knows how to treat as a guest's user state.
pub const KNOWN: u64 = X87 | SSE | AVX | MPX | AVX512 | PKRU | AMX;
/// The legacy region (512 bytes) and the XSAVE header (64 bytes) every area starts with.
pub const AREA_BASE: u32 = 576;

/// The event a refused XSETBV raises, #GP(0), as an injection word (`state::injection_word`:
/// SVM's EVENTINJ as is, VMX's entry interruption information in bits 0..32 and the error code
/// in bits 32..64). Real mode delivers no error code, and VMX entry refuses one there (SDM Vol.
/// 3C section 27.2.1.3).
pub fn refused_xsetbv_event(protected_mode: bool) -> u64 {
    let error_code = protected_mode.then_some(0);
    // #GP takes an error code or none, so the exception always exists.
    Exception::new(ExceptionVector::GENERAL_PROTECTION, error_code)
        .map_or(0, |exception| injection_word(Event::Exception(exception)))
}

/// Why a guest's XSETBV is refused with #GP (SDM Vol. 2C XSETBV "Protected Mode Exceptions").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Xcr0Error {
    /// ECX named an extended control register other than XCR0.
    NotXcr0(u32),
    /// Bit 0 (x87) clear.
    X87Clear(u64),
    /// AVX without SSE.
    AvxWithoutSse(u64),
    /// Only some of the AVX-512 bits, or AVX-512 without AVX.
    Avx512Incomplete(u64),
    /// Only one of the two MPX bits.
    MpxIncomplete(u64),
    /// Only one of the two AMX bits.
    AmxIncomplete(u64),
    /// Bits the host did not enable in its own XCR0 (the guest's save area holds only those).
    NotEnabledByHost {
        /// The value asked for.
        value: u64,
        /// The host's XCR0.
        host: u64,
    },
}

impl core::fmt::Display for Xcr0Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Xcr0Error::NotXcr0(index) => write!(f, "XSETBV of XCR{index}: only XCR0 exists"),
            Xcr0Error::X87Clear(value) => write!(f, "XCR0 {value:#x} clears bit 0 (x87)"),
            Xcr0Error::AvxWithoutSse(value) => write!(f, "XCR0 {value:#x} sets AVX without SSE"),
            Xcr0Error::Avx512Incomplete(value) => write!(
                f,
                "XCR0 {value:#x} sets AVX-512 bits 5..7 partly or without AVX"
            ),
            Xcr0Error::MpxIncomplete(value) => {
                write!(f, "XCR0 {value:#x} sets only one of the MPX bits 3, 4")
            }
            Xcr0Error::AmxIncomplete(value) => {
                write!(f, "XCR0 {value:#x} sets only one of the AMX bits 17, 18")
            }
            Xcr0Error::NotEnabledByHost { value, host } => write!(
                f,
                "XCR0 {value:#x} sets bits {:#x} the host's XCR0 {host:#x} does not enable",
                value & !host
            ),
        }
    }
}

/// Whether `value` is an XCR0 the architecture accepts, ignoring what the CPU supports.
fn check_shape(value: u64) -> Result<(), Xcr0Error> {
    if value & X87 == 0 {
        return Err(Xcr0Error::X87Clear(value));
    }
    if value & AVX != 0 && value & SSE == 0 {
        return Err(Xcr0Error::AvxWithoutSse(value));
    }
    let avx512 = value & AVX512;
    if avx512 != 0 && (avx512 != AVX512 || value & AVX == 0) {
        return Err(Xcr0Error::Avx512Incomplete(value));
    }
    let mpx = value & MPX;
    if mpx != 0 && mpx != MPX {
        return Err(Xcr0Error::MpxIncomplete(value));
    }
    let amx = value & AMX;
    if amx != 0 && amx != AMX {
        return Err(Xcr0Error::AmxIncomplete(value));
    }
    Ok(())
}

/// Checks a guest's XSETBV of extended control register `index` to `value` against the host's
/// XCR0 `host`: what the CPU itself would refuse, and anything beyond the host's components.
pub fn check_guest_xcr0(index: u32, value: u64, host: u64) -> Result<(), Xcr0Error> {
    if index != 0 {
        return Err(Xcr0Error::NotXcr0(index));
    }
    check_shape(value)?;
    if value & !host != 0 {
        return Err(Xcr0Error::NotEnabledByHost { value, host });
    }
    Ok(())
}

/// The host's XCR0: the components of `supported` (CPUID.(EAX=0DH,ECX=0):EDX:EAX) the kernel
/// knows whose state ends within `area_limit` bytes of the save area (`component_end(bit)`:
/// offset + size from CPUID.(EAX=0DH,ECX=bit):EBX/EAX, `None` when not reported), kept only in
/// combinations XSETBV accepts. x87 and SSE live in the legacy region and are always in.
pub fn host_xcr0(
    supported: u64,
    component_end: impl Fn(u32) -> Option<u32>,
    area_limit: u32,
) -> u64 {
    let mut value = X87 | (supported & SSE);
    for bit in 2..64u32 {
        let mask = 1u64 << bit;
        if supported & KNOWN & mask == 0 {
            continue;
        }
        if component_end(bit).is_some_and(|end| end <= area_limit) {
            value |= mask;
        }
    }
    // Keep whole groups only, and their prerequisites.
    if value & SSE == 0 {
        value &= !AVX;
    }
    for group in [AVX512, MPX, AMX] {
        if value & group != group {
            value &= !group;
        }
    }
    if value & AVX == 0 {
        value &= !AVX512;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skylake-SP-like: x87, SSE, AVX, MPX, AVX-512, PKRU; AMX with its 8 KiB tile data.
    fn end(bit: u32) -> Option<u32> {
        Some(match bit {
            2 => 576 + 256,
            3 => 960 + 64,
            4 => 1024 + 64,
            5 => 1088 + 64,
            6 => 1152 + 512,
            7 => 1664 + 1024,
            9 => 2688 + 8,
            17 => 2752 + 64,
            18 => 2816 + 8192,
            _ => return None,
        })
    }

    #[test]
    fn a_refused_xsetbv_raises_general_protection_with_an_error_code_only_in_protected_mode() {
        // Vector 13, type 3 (hardware exception), valid (bit 31); error code valid (bit 11),
        // error code 0 in bits 32..64.
        assert_eq!(refused_xsetbv_event(true), 13 | 3 << 8 | 1 << 11 | 1 << 31);
        assert_eq!(refused_xsetbv_event(false), 13 | 3 << 8 | 1 << 31);
    }

    #[test]
    fn the_host_keeps_what_fits_in_whole_groups() {
        let supported = X87 | SSE | AVX | MPX | AVX512 | PKRU | AMX;
        assert_eq!(
            host_xcr0(supported, end, 4096),
            X87 | SSE | AVX | MPX | AVX512 | PKRU,
            "AMX tile data does not fit a 4 KiB area, and XTILECFG alone is no valid XCR0"
        );
        assert_eq!(host_xcr0(supported, end, 1 << 20), supported);
        // A CPU without AVX: no AVX-512 either, whatever it claims.
        assert_eq!(host_xcr0(X87 | SSE | AVX512, end, 4096), X87 | SSE,);
        // Unknown components are left out.
        assert_eq!(host_xcr0(X87 | SSE | (1 << 11), end, 1 << 20), X87 | SSE);
        let host = host_xcr0(supported, end, 4096);
        assert_eq!(check_guest_xcr0(0, host, host), Ok(()));
    }

    #[test]
    fn guest_values_follow_the_architecture_and_the_host() {
        let host = X87 | SSE | AVX | AVX512;
        assert_eq!(check_guest_xcr0(0, X87, host), Ok(()));
        assert_eq!(check_guest_xcr0(0, X87 | SSE | AVX, host), Ok(()));
        assert_eq!(check_guest_xcr0(1, X87, host), Err(Xcr0Error::NotXcr0(1)));
        assert_eq!(
            check_guest_xcr0(0, SSE, host),
            Err(Xcr0Error::X87Clear(SSE))
        );
        assert_eq!(
            check_guest_xcr0(0, X87 | AVX, host),
            Err(Xcr0Error::AvxWithoutSse(X87 | AVX))
        );
        assert_eq!(
            check_guest_xcr0(0, X87 | SSE | AVX | (1 << 5), host),
            Err(Xcr0Error::Avx512Incomplete(X87 | SSE | AVX | (1 << 5)))
        );
        assert_eq!(
            check_guest_xcr0(0, X87 | SSE | AVX512, host),
            Err(Xcr0Error::Avx512Incomplete(X87 | SSE | AVX512))
        );
        assert_eq!(
            check_guest_xcr0(0, X87 | (1 << 3), host | MPX),
            Err(Xcr0Error::MpxIncomplete(X87 | (1 << 3)))
        );
        assert_eq!(
            check_guest_xcr0(0, X87 | (1 << 18), host | AMX),
            Err(Xcr0Error::AmxIncomplete(X87 | (1 << 18)))
        );
        let value = X87 | SSE | PKRU;
        assert_eq!(
            check_guest_xcr0(0, value, host),
            Err(Xcr0Error::NotEnabledByHost { value, host })
        );
        assert!(Xcr0Error::NotEnabledByHost { value, host }
            .to_string()
            .contains("0x200"));
    }
}
