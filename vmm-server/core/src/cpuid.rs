//! CPUID policy: a table of leaves, each passed through from the host with bits cleared and set,
//! fixed, or zeroed. Leaves not in the table read as zero. The default table hides VMX
//! (leaf 1 ECX bit 5) and SVM (leaf 0x8000_0001 ECX bit 2), sets the hypervisor-present bit
//! (leaf 1 ECX bit 31) and answers the hypervisor leaf 0x4000_0000 with "SluiceSluice".
use alloc::vec::Vec;

/// The four result registers of CPUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidValues {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The host's CPUID, executed by the VMM on its own CPU.
pub trait HostCpuid {
    /// CPUID with EAX = `leaf`, ECX = `subleaf`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidValues;
}

/// What the guest sees for one leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafRule {
    /// The host's values with `clear` bits cleared, then `set` bits set.
    PassThrough {
        /// Bits cleared from the host's values.
        clear: CpuidValues,
        /// Bits set afterwards.
        set: CpuidValues,
    },
    /// Fixed values.
    Fixed(CpuidValues),
    /// The host's values with EAX limited to `maximum` (leaves 0 and 0x8000_0000).
    MaximumLeaf {
        /// Highest leaf of the range offered.
        maximum: u32,
    },
}

const NONE: CpuidValues = CpuidValues {
    eax: 0,
    ebx: 0,
    ecx: 0,
    edx: 0,
};
const PASS: LeafRule = LeafRule::PassThrough {
    clear: NONE,
    set: NONE,
};

/// Hypervisor vendor leaf (Linux `arch/x86/include/asm/processor.h`, leaves 0x4000_0000 up).
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// "SluiceSluice" as EBX, ECX, EDX.
pub const HYPERVISOR_SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"Slui"),
    u32::from_le_bytes(*b"ceSl"),
    u32::from_le_bytes(*b"uice"),
];
/// CPUID.1:ECX.VMX (SDM Vol. 2A CPUID, Table 3-10).
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
/// CPUID.1:ECX.SMX.
pub const LEAF1_ECX_SMX: u32 = 1 << 6;
/// CPUID.1:ECX bit 31, reserved for hypervisor use: a hypervisor is present.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.8000_0001:ECX.SVM (AMD APM Vol. 3, Appendix E.4.2).
pub const EXTENDED_ECX_SVM: u32 = 1 << 2;

/// One table row: a leaf, an optional subleaf (`None` = every subleaf), and its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    /// EAX input.
    pub leaf: u32,
    /// ECX input, or `None` for all.
    pub subleaf: Option<u32>,
    /// What the guest sees.
    pub rule: LeafRule,
}

/// The table-driven policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidPolicy {
    entries: Vec<CpuidEntry>,
}

impl CpuidPolicy {
    /// A policy from explicit rows; the first row matching leaf and subleaf wins.
    pub fn new(entries: Vec<CpuidEntry>) -> CpuidPolicy {
        CpuidPolicy { entries }
    }

    /// The default policy (see the module documentation).
    pub fn standard() -> CpuidPolicy {
        let entry = |leaf, rule| CpuidEntry {
            leaf,
            subleaf: None,
            rule,
        };
        let ecx = |bits| CpuidValues { ecx: bits, ..NONE };
        CpuidPolicy::new(alloc::vec![
            entry(0, LeafRule::MaximumLeaf { maximum: 0xd }),
            entry(
                1,
                LeafRule::PassThrough {
                    clear: ecx(LEAF1_ECX_VMX | LEAF1_ECX_SMX),
                    set: ecx(LEAF1_ECX_HYPERVISOR),
                },
            ),
            entry(2, PASS),
            entry(4, PASS),
            entry(7, PASS),
            entry(0xd, PASS),
            entry(
                HYPERVISOR_LEAF,
                LeafRule::Fixed(CpuidValues {
                    eax: HYPERVISOR_LEAF,
                    ebx: HYPERVISOR_SIGNATURE[0],
                    ecx: HYPERVISOR_SIGNATURE[1],
                    edx: HYPERVISOR_SIGNATURE[2],
                }),
            ),
            entry(
                0x8000_0000,
                LeafRule::MaximumLeaf {
                    maximum: 0x8000_0008
                }
            ),
            entry(
                0x8000_0001,
                LeafRule::PassThrough {
                    clear: ecx(EXTENDED_ECX_SVM),
                    set: NONE
                }
            ),
            entry(0x8000_0002, PASS),
            entry(0x8000_0003, PASS),
            entry(0x8000_0004, PASS),
            entry(0x8000_0006, PASS),
            entry(0x8000_0008, PASS),
        ])
    }

    /// The values the guest sees for CPUID(`leaf`, `subleaf`).
    pub fn evaluate(
        &self,
        leaf: u32,
        subleaf: u32,
        host: &(impl HostCpuid + ?Sized),
    ) -> CpuidValues {
        let rule = self
            .entries
            .iter()
            .find(|entry| entry.leaf == leaf && entry.subleaf.is_none_or(|s| s == subleaf));
        match rule.map(|entry| entry.rule) {
            None => NONE,
            Some(LeafRule::Fixed(values)) => values,
            Some(LeafRule::MaximumLeaf { maximum }) => {
                let host_values = host.cpuid(leaf, subleaf);
                CpuidValues {
                    eax: host_values.eax.min(maximum),
                    ..host_values
                }
            }
            Some(LeafRule::PassThrough { clear, set }) => {
                let host_values = host.cpuid(leaf, subleaf);
                CpuidValues {
                    eax: host_values.eax & !clear.eax | set.eax,
                    ebx: host_values.ebx & !clear.ebx | set.ebx,
                    ecx: host_values.ecx & !clear.ecx | set.ecx,
                    edx: host_values.edx & !clear.edx | set.edx,
                }
            }
        }
    }
}
