//! The AMD SVM backend's pure half: the VMCB layout and intercept bits ([`vmcb`]), exit
//! decoding ([`exit`]), reply application ([`entry`]) and the initial control area ([`setup`]).
//!
//! The kernel runs VMRUN on the VMCB page and saves the guest GPRs other than RAX and RSP
//! (which the VMCB holds); everything else happens here on the page as a byte buffer.
pub mod entry;
pub mod exit;
pub mod setup;
pub mod vmcb;

pub use entry::{apply_reply, apply_reply_words};
pub use exit::{decode_exit, decode_exit_into, encode_exit};
pub use vmcb::{
    CleanBits, InterceptVector3, InterceptVector4, Vmcb, VmcbField, VmcbSegment, VMCB_SIZE,
};

/// SVM features that change exit decoding (CPUID Fn8000_000A_EDX, APM Vol. 3 Appendix E.4.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvmFeatures {
    /// NRIP save (EDX bit 3): nRIP holds the next instruction's address on instruction
    /// intercepts. QEMU TCG does not have it.
    pub nrip_save: bool,
}

impl SvmFeatures {
    /// From CPUID Fn8000_000A_EDX.
    pub const fn from_cpuid_edx(edx: u32) -> Self {
        SvmFeatures {
            nrip_save: edx & (1 << 3) != 0,
        }
    }
}

/// SVM exit codes (EXITCODE, APM Vol. 2 Appendix C, Table C-1).
pub mod exit_code {
    /// First exception intercept: 0x40 + vector.
    pub const EXCEPTION_BASE: u64 = 0x40;
    /// Last exception intercept (vector 31).
    pub const EXCEPTION_LAST: u64 = 0x5f;
    /// Physical INTR.
    pub const INTR: u64 = 0x60;
    /// Physical NMI.
    pub const NMI: u64 = 0x61;
    /// Virtual interrupt (VINTR intercept).
    pub const VINTR: u64 = 0x64;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7c;
    /// Shutdown.
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8d;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// Invalid guest state: VMRUN's consistency checks failed (-1).
    pub const INVALID: u64 = u64::MAX;
}
