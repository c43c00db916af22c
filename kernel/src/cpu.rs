//! CPU identification and control registers: gathers the raw CPUID/MSR values that
//! `kernel_core::cpu_features` decodes, and sets up caching.

use core::arch::x86_64::__cpuid_count;
use kernel_core::cpu_features::{self, CpuFeatures, RawCpu};

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (reading an absent MSR raises #GP).
unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { x86::msr::rdmsr(msr) }
}

/// Gathers the raw identification values, reading VMX MSRs only when CPUID reports VMX.
pub fn raw() -> RawCpu {
    let leaf0 = __cpuid_count(0, 0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
    let leaf1 = __cpuid_count(1, 0);
    let max_extended = __cpuid_count(0x8000_0000, 0).eax;
    let (ext1, ext1_edx) = if max_extended >= 0x8000_0001 {
        let leaf = __cpuid_count(0x8000_0001, 0);
        (leaf.ecx, leaf.edx)
    } else {
        (0, 0)
    };
    let svm = if max_extended >= 0x8000_000a {
        __cpuid_count(0x8000_000a, 0)
    } else {
        __cpuid_count(0, 0)
    };
    let has_svm = ext1 & (1 << 2) != 0;
    let mut raw = RawCpu {
        vendor,
        leaf1_ecx: leaf1.ecx,
        ext1_ecx: ext1,
        ext1_edx,
        svm_eax: if has_svm { svm.eax } else { 0 },
        svm_ebx: if has_svm { svm.ebx } else { 0 },
        svm_edx: if has_svm { svm.edx } else { 0 },
        ..RawCpu::default()
    };
    if CpuFeatures::vmx_present(leaf1.ecx) {
        // SAFETY: CPUID.1:ECX.VMX is set, so the VMX capability MSRs exist (SDM Vol. 3D, A.1).
        unsafe {
            raw.vmx_basic = rdmsr(cpu_features::MSR_VMX_BASIC);
            // BASIC bit 55: the TRUE_* MSRs report the real allowed settings (SDM A.1).
            raw.vmx_procbased = if raw.vmx_basic & (1 << 55) != 0 {
                rdmsr(cpu_features::MSR_VMX_TRUE_PROCBASED_CTLS)
            } else {
                rdmsr(cpu_features::MSR_VMX_PROCBASED_CTLS)
            };
            if raw.vmx_procbased & (1 << 63) != 0 {
                raw.vmx_procbased2 = rdmsr(cpu_features::MSR_VMX_PROCBASED_CTLS2);
                raw.vmx_ept_vpid = rdmsr(cpu_features::MSR_VMX_EPT_VPID_CAP);
            }
        }
    }
    raw
}

/// Makes sure caching is on: firmware may leave CR0.CD and CR0.NW set (seen on Bochs).
pub fn enable_caches() {
    // SAFETY: clearing CD/NW only re-enables normal write-back caching; WBINVD first so no
    // stale lines survive the mode change (SDM Vol. 3A, 12.5.3).
    unsafe {
        let cr0 = x86::controlregs::cr0();
        let cleared = cr0
            - (x86::controlregs::Cr0::CR0_CACHE_DISABLE
                | x86::controlregs::Cr0::CR0_NOT_WRITE_THROUGH);
        if cleared != cr0 {
            core::arch::asm!("wbinvd", options(nostack));
            x86::controlregs::cr0_write(cleared);
        }
    }
}

/// The faulting linear address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}
