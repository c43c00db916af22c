//! CPUID policy: a table of leaves, each passed through from the host with bits cleared and set,
//! fixed, limited to the host's enabled state components (leaf 0xD), or zeroed. Leaves not in
//! the table read as zero. The default table hides VMX (leaf 1 ECX bit 5) and SVM
//! (leaf 0x8000_0001 ECX bit 2), sets the hypervisor-present bit (leaf 1 ECX bit 31), offers in
//! leaf 0xD only the state components of the host's XCR0 and answers the hypervisor leaf
//! 0x4000_0000 with "SluiceSluice". Whatever the rule, the bits that report the executing CPU's
//! CR4 (OSXSAVE, OSPKE) are taken from the guest's CR4, as a CPU does for CPUID in a guest.
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

/// The host's CPUID, executed by the VMM on its own CPU, and the host's XCR0.
pub trait HostCpuid {
    /// CPUID with EAX = `leaf`, ECX = `subleaf`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidValues;

    /// The host's XCR0 (XGETBV with ECX = 0, SDM Vol. 1 section 13.3): the state components the
    /// kernel enabled, which are the only ones a guest's XSETBV may enable. 1 (x87 only, the
    /// value XCR0 has at reset) where CR4.OSXSAVE is clear (CPUID.1:ECX.OSXSAVE = 0), since
    /// XGETBV raises #UD then.
    fn xcr0(&self) -> u64;
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
    /// Leaf 0xD, processor extended state enumeration (SDM Vol. 2A CPUID leaf 0DH; Vol. 1
    /// section 13.2), limited to the state components enabled in the host's XCR0
    /// ([`HostCpuid::xcr0`]): the kernel refuses with #GP a guest XSETBV that enables any other,
    /// so the guest is told of no other.
    /// - Subleaf 0: EAX and EDX (the XCR0 bits the CPU supports, low and high half) ANDed with
    ///   the host's XCR0. EBX (the XSAVE area size for the components enabled in XCR0) and ECX
    ///   (the size for every supported component) are the host's: never smaller than what the
    ///   guest's components need. EBX is exact only while the guest's XCR0 equals the host's,
    ///   since the VMM does not see the guest's XCR0 (the kernel handles XSETBV).
    /// - Subleaf 1: EAX keeps XSAVEOPT, XSAVEC and XGETBV with ECX = 1 (bits 0 to 2) and loses
    ///   XSAVES/XRSTORS with IA32_XSS (bit 3), XFD with IA32_XFD (bit 4) and any later bit, since
    ///   guests get neither MSR; ECX and EDX (the IA32_XSS components) are zero, as guests get
    ///   no supervisor state; EBX is the host's.
    /// - Subleaf n of 2 to 63 describes state component n: the host's values if bit n of the
    ///   host's XCR0 is set, else zero, as the SDM defines an invalid subleaf (neither subleaf 0
    ///   nor subleaf 1 reports component n). Later subleaves read zero.
    ExtendedState,
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
/// CPUID.1:ECX.OSXSAVE: the OS has set CR4.OSXSAVE (SDM Vol. 2A CPUID, Table 3-10).
pub const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
/// CPUID.1:ECX bit 31, reserved for hypervisor use: a hypervisor is present.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.(EAX=7,ECX=0):ECX.OSPKE: the OS has set CR4.PKE (SDM Vol. 2A CPUID, Table 3-8).
pub const LEAF7_ECX_OSPKE: u32 = 1 << 4;
/// CR4.OSXSAVE, XSAVE and processor extended states enable (SDM Vol. 3A section 2.5).
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE, protection keys for user-mode pages enable (SDM Vol. 3A section 2.5).
pub const CR4_PKE: u64 = 1 << 22;
/// Processor extended state enumeration leaf (SDM Vol. 2A CPUID leaf 0DH).
pub const EXTENDED_STATE_LEAF: u32 = 0xd;
/// CPUID.(EAX=0DH,ECX=1):EAX bits a guest keeps: XSAVEOPT (bit 0), XSAVEC and XRSTOR of the
/// compacted form (bit 1), XGETBV with ECX = 1 (bit 2). Not XSAVES/XRSTORS with IA32_XSS
/// (bit 3) nor XFD with IA32_XFD (bit 4), nor bits defined later.
pub const EXTENDED_STATE_SUBLEAF1_EAX_OFFERED: u32 = 0b111;
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
            entry(EXTENDED_STATE_LEAF, LeafRule::ExtendedState),
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

    /// The values the guest sees for CPUID(`leaf`, `subleaf`) executed with `guest_cr4` in
    /// CR4: the first matching row's rule applied to the host's values, then the bits that
    /// report CR4 set from `guest_cr4` ([`CR4_REFLECTIONS`]). Zero if no row matches.
    pub fn evaluate(
        &self,
        leaf: u32,
        subleaf: u32,
        guest_cr4: u64,
        host: &(impl HostCpuid + ?Sized),
    ) -> CpuidValues {
        let rule = self
            .entries
            .iter()
            .find(|entry| entry.leaf == leaf && entry.subleaf.is_none_or(|s| s == subleaf));
        match rule {
            None => NONE,
            Some(entry) => {
                let values = entry.rule.apply(leaf, subleaf, host);
                reflect_guest_cr4(leaf, subleaf, values, guest_cr4)
            }
        }
    }
}

impl LeafRule {
    /// This rule's values for CPUID(`leaf`, `subleaf`).
    fn apply(self, leaf: u32, subleaf: u32, host: &(impl HostCpuid + ?Sized)) -> CpuidValues {
        match self {
            LeafRule::Fixed(values) => values,
            LeafRule::MaximumLeaf { maximum } => {
                let host_values = host.cpuid(leaf, subleaf);
                CpuidValues {
                    eax: host_values.eax.min(maximum),
                    ..host_values
                }
            }
            LeafRule::PassThrough { clear, set } => {
                let host_values = host.cpuid(leaf, subleaf);
                CpuidValues {
                    eax: host_values.eax & !clear.eax | set.eax,
                    ebx: host_values.ebx & !clear.ebx | set.ebx,
                    ecx: host_values.ecx & !clear.ecx | set.ecx,
                    edx: host_values.edx & !clear.edx | set.edx,
                }
            }
            LeafRule::ExtendedState => extended_state(leaf, subleaf, host),
        }
    }
}

/// [`LeafRule::ExtendedState`] for CPUID(`leaf`, `subleaf`).
fn extended_state(leaf: u32, subleaf: u32, host: &(impl HostCpuid + ?Sized)) -> CpuidValues {
    let xcr0 = host.xcr0();
    match subleaf {
        0 => {
            let host_values = host.cpuid(leaf, subleaf);
            CpuidValues {
                eax: host_values.eax & xcr0 as u32,
                edx: host_values.edx & (xcr0 >> 32) as u32,
                ..host_values
            }
        }
        1 => {
            let host_values = host.cpuid(leaf, subleaf);
            CpuidValues {
                eax: host_values.eax & EXTENDED_STATE_SUBLEAF1_EAX_OFFERED,
                ebx: host_values.ebx,
                ecx: 0,
                edx: 0,
            }
        }
        component if component < u64::BITS && xcr0 & (1u64 << component) != 0 => {
            host.cpuid(leaf, subleaf)
        }
        _ => NONE,
    }
}

/// A CPUID bit (in ECX) that reports whether a CR4 bit is set on the executing CPU rather than
/// what the CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cr4Reflection {
    /// EAX input.
    pub leaf: u32,
    /// ECX input, or `None` for all.
    pub subleaf: Option<u32>,
    /// The bit in ECX.
    pub ecx: u32,
    /// The CR4 bit it reports.
    pub cr4: u64,
}

/// The CPUID bits that report CR4. The VMM executes the guest's CPUID on the host, where they
/// would report the host's CR4, so they are set from the guest's CR4 after every rule, as a CPU
/// does for CPUID executed in a guest.
pub const CR4_REFLECTIONS: [Cr4Reflection; 2] = [
    Cr4Reflection {
        leaf: 1,
        subleaf: None,
        ecx: LEAF1_ECX_OSXSAVE,
        cr4: CR4_OSXSAVE,
    },
    Cr4Reflection {
        leaf: 7,
        subleaf: Some(0),
        ecx: LEAF7_ECX_OSPKE,
        cr4: CR4_PKE,
    },
];

/// `values` with the [`CR4_REFLECTIONS`] bits of CPUID(`leaf`, `subleaf`) taken from
/// `guest_cr4`.
fn reflect_guest_cr4(leaf: u32, subleaf: u32, values: CpuidValues, guest_cr4: u64) -> CpuidValues {
    CR4_REFLECTIONS
        .iter()
        .filter(|bit| bit.leaf == leaf && bit.subleaf.is_none_or(|s| s == subleaf))
        .fold(values, |values, bit| {
            let ecx = if guest_cr4 & bit.cr4 != 0 {
                values.ecx | bit.ecx
            } else {
                values.ecx & !bit.ecx
            };
            CpuidValues { ecx, ..values }
        })
}
