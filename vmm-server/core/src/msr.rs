//! MSR policy: an allow-list of emulated MSRs with their values and writable bits. A read or
//! write of an MSR not on the list, a write to a read-only MSR, or a write setting bits outside
//! the writable mask is refused, and the dispatcher injects #GP(0) as the CPU would (SDM Vol. 2B
//! RDMSR/WRMSR: "#GP(0) if ECX specifies a reserved or unimplemented MSR address").
use alloc::vec::Vec;
use core::fmt;

/// One emulated MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrEntry {
    /// MSR index.
    pub index: u32,
    /// Current value.
    pub value: u64,
    /// Bits the guest may change (0 = read-only).
    pub writable: u64,
}

/// Why an MSR access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// Not on the allow-list.
    Unknown(u32),
    /// The value changes a bit that is not writable.
    ReadOnlyBits {
        /// MSR index.
        index: u32,
        /// Offending bits.
        bits: u64,
    },
}

impl fmt::Display for MsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsrError::Unknown(index) => write!(f, "MSR {index:#x} is not emulated"),
            MsrError::ReadOnlyBits { index, bits } => {
                write!(
                    f,
                    "write to MSR {index:#x} changes read-only bits {bits:#x}"
                )
            }
        }
    }
}

/// IA32_PLATFORM_ID (SDM Vol. 4 Table 2-2).
pub const IA32_PLATFORM_ID: u32 = 0x17;
/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_BIOS_SIGN_ID (microcode revision).
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
/// IA32_MTRRCAP.
pub const IA32_MTRRCAP: u32 = 0xfe;
/// IA32_MISC_ENABLE.
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
/// IA32_PAT.
pub const IA32_PAT: u32 = 0x277;
/// IA32_MTRR_DEF_TYPE.
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;

/// The allow-list and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrPolicy {
    entries: Vec<MsrEntry>,
}

impl MsrPolicy {
    /// A policy over explicit entries.
    pub fn new(entries: Vec<MsrEntry>) -> MsrPolicy {
        MsrPolicy { entries }
    }

    /// The default allow-list: APIC base at 0xfee0_0000, enabled, BSP (SDM Vol. 3A section
    /// 11.4.4); MISC_ENABLE with fast strings; no MTRRs; the power-on PAT (SDM Vol. 3A section
    /// 13.12.4), writable; MTRR default type writable; platform ID and microcode revision 0
    /// (the revision accepts writes, as the update-signature protocol writes 0 first).
    pub fn standard() -> MsrPolicy {
        let entry = |index, value, writable| MsrEntry {
            index,
            value,
            writable,
        };
        MsrPolicy::new(alloc::vec![
            entry(IA32_PLATFORM_ID, 0, 0),
            entry(IA32_APIC_BASE, 0xfee0_0900, 0),
            entry(IA32_BIOS_SIGN_ID, 0, u64::MAX),
            entry(IA32_MTRRCAP, 0, 0),
            entry(IA32_MISC_ENABLE, 1, 0),
            entry(IA32_PAT, 0x0007_0406_0007_0406, u64::MAX),
            entry(IA32_MTRR_DEF_TYPE, 0, 0xcff),
        ])
    }

    /// The guest-visible value of `index`.
    pub fn read(&self, index: u32) -> Result<u64, MsrError> {
        self.entries
            .iter()
            .find(|entry| entry.index == index)
            .map(|entry| entry.value)
            .ok_or(MsrError::Unknown(index))
    }

    /// Writes `value`; nothing changes when refused.
    pub fn write(&mut self, index: u32, value: u64) -> Result<(), MsrError> {
        let entry = self
            .entries
            .iter_mut()
            .find(|entry| entry.index == index)
            .ok_or(MsrError::Unknown(index))?;
        let changed = (entry.value ^ value) & !entry.writable;
        if changed != 0 {
            return Err(MsrError::ReadOnlyBits {
                index,
                bits: changed,
            });
        }
        entry.value = value;
        Ok(())
    }
}
