//! Virtualization support, decoded from raw CPUID leaves and VMX capability MSRs.
//!
//! The kernel gathers [`RawCpu`] with CPUID/RDMSR (reading the VMX MSRs only when CPUID says
//! VMX exists, since they #GP otherwise) and this module decides what the CPU can do.

/// IA32_VMX_BASIC (Intel SDM Vol. 3D, Appendix A.1).
pub const MSR_VMX_BASIC: u32 = 0x480;
/// IA32_VMX_PROCBASED_CTLS (SDM Vol. 3D, A.3.2).
pub const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
/// IA32_VMX_PROCBASED_CTLS2 (SDM Vol. 3D, A.3.3).
pub const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// IA32_VMX_EPT_VPID_CAP (SDM Vol. 3D, A.10).
pub const MSR_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// IA32_VMX_TRUE_PROCBASED_CTLS (SDM Vol. 3D, A.3.2; valid when BASIC bit 55 is set).
pub const MSR_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;

/// Raw values the kernel reads; zero where a leaf or MSR does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCpu {
    /// CPUID.0: EBX, EDX, ECX spell the vendor.
    pub vendor: [u8; 12],
    /// CPUID.1:ECX.
    pub leaf1_ecx: u32,
    /// CPUID.80000001h:ECX and EDX.
    pub ext1_ecx: u32,
    pub ext1_edx: u32,
    /// CPUID.8000000Ah: EAX (SVM revision), EBX (number of ASIDs), EDX (features).
    pub svm_eax: u32,
    pub svm_ebx: u32,
    pub svm_edx: u32,
    /// IA32_VMX_BASIC, IA32_VMX_PROCBASED_CTLS (or its TRUE variant), PROCBASED_CTLS2, EPT_VPID_CAP.
    pub vmx_basic: u64,
    pub vmx_procbased: u64,
    pub vmx_procbased2: u64,
    pub vmx_ept_vpid: u64,
}

/// What Intel VMX offers (allowed-1 settings of the secondary controls, SDM Vol. 3C 25.6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vmx {
    pub ept: bool,
    pub vpid: bool,
    pub unrestricted_guest: bool,
    /// EPT 2 MiB and 1 GiB pages (IA32_VMX_EPT_VPID_CAP bits 16 and 17).
    pub ept_2m: bool,
    pub ept_1g: bool,
}

/// What AMD SVM offers (AMD APM Vol. 3, CPUID Fn8000_000A).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Svm {
    pub nested_paging: bool,
    pub nrip_save: bool,
    pub decode_assists: bool,
    pub asids: u32,
    /// 1 GiB pages (CPUID Fn8000_0001_EDX bit 26, Page1GB), in the nested tables too (APM
    /// Vol. 2 section 15.25.3: nested paging uses the host's page-table formats).
    pub pages_1g: bool,
}

/// The CPU's virtualization support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Virtualization {
    Vmx(Vmx),
    Svm(Svm),
    None,
}

/// The decoded CPU description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub vendor: [u8; 12],
    pub virtualization: Virtualization,
}

/// CPUID.1:ECX bit 5: VMX (SDM Vol. 2A, CPUID, Table 3-10).
const CPUID_VMX: u32 = 1 << 5;
/// CPUID.80000001h:ECX bit 2: SVM (APM Vol. 3, Appendix E.4.2).
const CPUID_SVM: u32 = 1 << 2;
/// CPUID.80000001h:EDX bit 26: 1 GiB pages (APM Vol. 3, Appendix E.4.2; SDM Vol. 2A, CPUID).
const CPUID_PAGE_1GB: u32 = 1 << 26;
/// Primary processor-based control 31: activate secondary controls (SDM Vol. 3C, Table 25-6).
const PROCBASED_SECONDARY: u64 = 1 << 31;
/// Secondary controls (SDM Vol. 3C, Table 25-7): enable EPT, enable VPID, unrestricted guest.
const SECONDARY_EPT: u64 = 1 << 1;
const SECONDARY_VPID: u64 = 1 << 5;
const SECONDARY_UNRESTRICTED: u64 = 1 << 7;

impl CpuFeatures {
    /// Whether the VMX capability MSRs should be read (CPUID says VMX exists).
    pub fn vmx_present(raw_leaf1_ecx: u32) -> bool {
        raw_leaf1_ecx & CPUID_VMX != 0
    }

    /// Decodes the raw values.
    pub fn decode(raw: &RawCpu) -> Self {
        let virtualization = if Self::vmx_present(raw.leaf1_ecx) {
            // Allowed-1 settings live in the upper 32 bits of each control MSR (SDM A.3).
            let secondary = raw.vmx_procbased & (PROCBASED_SECONDARY << 32) != 0;
            let allowed2 = if secondary {
                raw.vmx_procbased2 >> 32
            } else {
                0
            };
            let ept = allowed2 & SECONDARY_EPT != 0;
            Virtualization::Vmx(Vmx {
                ept,
                vpid: allowed2 & SECONDARY_VPID != 0,
                unrestricted_guest: ept && allowed2 & SECONDARY_UNRESTRICTED != 0,
                ept_2m: ept && raw.vmx_ept_vpid & (1 << 16) != 0,
                ept_1g: ept && raw.vmx_ept_vpid & (1 << 17) != 0,
            })
        } else if raw.ext1_ecx & CPUID_SVM != 0 {
            Virtualization::Svm(Svm {
                nested_paging: raw.svm_edx & (1 << 0) != 0,
                nrip_save: raw.svm_edx & (1 << 3) != 0,
                decode_assists: raw.svm_edx & (1 << 7) != 0,
                asids: raw.svm_ebx,
                pages_1g: raw.ext1_edx & CPUID_PAGE_1GB != 0,
            })
        } else {
            Virtualization::None
        };
        CpuFeatures {
            vendor: raw.vendor,
            virtualization,
        }
    }

    /// The largest page the nested tables may use: 1 GiB, 2 MiB or 4 KiB (`30`, `21`, `12`:
    /// log2 of the size). EPT reports 2 MiB and 1 GiB pages in IA32_VMX_EPT_VPID_CAP bits 16
    /// and 17; nested paging has 2 MiB pages always (long-mode paging) and 1 GiB pages where
    /// the CPU has them.
    pub fn largest_nested_page_shift(&self) -> u8 {
        match self.virtualization {
            Virtualization::Vmx(v) if v.ept_1g && v.ept_2m => 30,
            Virtualization::Vmx(v) if v.ept_2m => 21,
            Virtualization::Vmx(_) | Virtualization::None => 12,
            Virtualization::Svm(s) if s.pages_1g => 30,
            Virtualization::Svm(_) => 21,
        }
    }

    /// The vendor string, or `unknown` if it is not printable ASCII.
    pub fn vendor_str(&self) -> &str {
        match core::str::from_utf8(&self.vendor) {
            Ok(s) if s.bytes().all(|b| b.is_ascii_graphic()) => s,
            _ => "unknown",
        }
    }
}

impl core::fmt::Display for CpuFeatures {
    /// The summary-line form, e.g. `GenuineIntel vmx ept vpid ug` or `AuthenticAMD svm npt asids 16`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.vendor_str())?;
        match self.virtualization {
            Virtualization::Vmx(v) => {
                write!(f, " vmx")?;
                for (on, name) in [
                    (v.ept, "ept"),
                    (v.vpid, "vpid"),
                    (v.unrestricted_guest, "ug"),
                ] {
                    if on {
                        write!(f, " {name}")?;
                    }
                }
                Ok(())
            }
            Virtualization::Svm(s) => {
                write!(f, " svm")?;
                for (on, name) in [
                    (s.nested_paging, "npt"),
                    (s.nrip_save, "nrip"),
                    (s.decode_assists, "decode"),
                ] {
                    if on {
                        write!(f, " {name}")?;
                    }
                }
                write!(f, " asids {}", s.asids)
            }
            Virtualization::None => write!(f, " novirt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor(s: &str) -> [u8; 12] {
        s.as_bytes().try_into().unwrap()
    }

    #[test]
    fn decodes_a_skylake_like_vmx_cpu() {
        let raw = RawCpu {
            vendor: vendor("GenuineIntel"),
            leaf1_ecx: CPUID_VMX,
            vmx_procbased: (PROCBASED_SECONDARY << 32) | 0x0401_e172,
            vmx_procbased2: (SECONDARY_EPT | SECONDARY_VPID | SECONDARY_UNRESTRICTED) << 32,
            vmx_ept_vpid: (1 << 16) | (1 << 17),
            ..Default::default()
        };
        let f = CpuFeatures::decode(&raw);
        let Virtualization::Vmx(v) = f.virtualization else {
            panic!("expected vmx")
        };
        assert!(v.ept && v.vpid && v.unrestricted_guest && v.ept_2m && v.ept_1g);
        assert_eq!(f.to_string(), "GenuineIntel vmx ept vpid ug");
        assert_eq!(f.largest_nested_page_shift(), 30);
        let only_2m = RawCpu {
            vmx_ept_vpid: 1 << 16,
            ..raw
        };
        assert_eq!(
            CpuFeatures::decode(&only_2m).largest_nested_page_shift(),
            21
        );
        let none = RawCpu {
            vmx_ept_vpid: 1 << 17,
            ..raw
        };
        assert_eq!(
            CpuFeatures::decode(&none).largest_nested_page_shift(),
            12,
            "1 GiB without 2 MiB is no configuration to trust: 4 KiB pages only"
        );
    }

    #[test]
    fn secondary_controls_count_only_when_activatable() {
        let raw = RawCpu {
            vendor: vendor("GenuineIntel"),
            leaf1_ecx: CPUID_VMX,
            vmx_procbased: 0,
            vmx_procbased2: u64::MAX,
            ..Default::default()
        };
        assert_eq!(CpuFeatures::decode(&raw).to_string(), "GenuineIntel vmx");
    }

    #[test]
    fn decodes_qemu_tcg_svm() {
        let raw = RawCpu {
            vendor: vendor("AuthenticAMD"),
            ext1_ecx: CPUID_SVM,
            svm_eax: 1,
            svm_ebx: 16,
            svm_edx: 1,
            ..Default::default()
        };
        let f = CpuFeatures::decode(&raw);
        assert_eq!(f.to_string(), "AuthenticAMD svm npt asids 16");
        assert_eq!(
            f.largest_nested_page_shift(),
            21,
            "qemu64 has no 1 GiB pages"
        );
        let with_1g = RawCpu {
            ext1_edx: CPUID_PAGE_1GB,
            ..raw
        };
        assert_eq!(
            CpuFeatures::decode(&with_1g).largest_nested_page_shift(),
            30
        );
        assert!(matches!(
            f.virtualization,
            Virtualization::Svm(Svm {
                nested_paging: true,
                nrip_save: false,
                ..
            })
        ));
    }

    #[test]
    fn no_virtualization_and_garbage_vendor() {
        let f = CpuFeatures::decode(&RawCpu {
            vendor: [0xff; 12],
            ..Default::default()
        });
        assert_eq!(f.to_string(), "unknown novirt");
    }
}
