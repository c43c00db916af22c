//! Check 3 (`cpuid`): the VMM's CPUID policy as vmm-server/core/src/cpuid.rs defines it: the
//! hypervisor leaf says "SluiceSluice", CPUID.1:ECX has the hypervisor bit and not VMX, and
//! CPUID.8000_0001:ECX has no SVM.
use core::arch::x86_64::{__cpuid_count, CpuidResult};

use guest_probe::check::{at_least, equal, Mismatch};
use guest_probe::layout::cpuid::{
    EXTENDED_ECX_SVM, HYPERVISOR_LEAF, HYPERVISOR_SIGNATURE, LEAF1_ECX_HYPERVISOR, LEAF1_ECX_VMX,
};

/// The extended-function range's maximum leaf.
const EXTENDED_MAXIMUM_LEAF: u32 = 0x8000_0000;
/// The extended-feature leaf.
const EXTENDED_FEATURES_LEAF: u32 = 0x8000_0001;

fn cpuid(leaf: u32) -> CpuidResult {
    // CPUID exists on every x86-64 CPU and has no side effects (it exits to the VMM).
    __cpuid_count(leaf, 0)
}

/// Runs the check.
pub fn run() -> Result<(), Mismatch> {
    let basic = cpuid(0);
    at_least("CPUID.0:EAX maximum basic leaf", 1, u64::from(basic.eax))?;

    let hypervisor = cpuid(HYPERVISOR_LEAF);
    at_least(
        "CPUID.40000000:EAX maximum hypervisor leaf",
        u64::from(HYPERVISOR_LEAF),
        u64::from(hypervisor.eax),
    )?;
    let [ebx, ecx, edx] = HYPERVISOR_SIGNATURE;
    equal(
        "CPUID.40000000:EBX (\"Slui\")",
        u64::from(ebx),
        u64::from(hypervisor.ebx),
    )?;
    equal(
        "CPUID.40000000:ECX (\"ceSl\")",
        u64::from(ecx),
        u64::from(hypervisor.ecx),
    )?;
    equal(
        "CPUID.40000000:EDX (\"uice\")",
        u64::from(edx),
        u64::from(hypervisor.edx),
    )?;

    let features = cpuid(1);
    equal(
        "CPUID.1:ECX[31] hypervisor present",
        u64::from(LEAF1_ECX_HYPERVISOR),
        u64::from(features.ecx & LEAF1_ECX_HYPERVISOR),
    )?;
    equal(
        "CPUID.1:ECX[5] VMX hidden",
        0,
        u64::from(features.ecx & LEAF1_ECX_VMX),
    )?;

    let extended = cpuid(EXTENDED_MAXIMUM_LEAF);
    at_least(
        "CPUID.80000000:EAX maximum extended leaf",
        u64::from(EXTENDED_FEATURES_LEAF),
        u64::from(extended.eax),
    )?;
    let extended_features = cpuid(EXTENDED_FEATURES_LEAF);
    equal(
        "CPUID.80000001:ECX[2] SVM hidden",
        0,
        u64::from(extended_features.ecx & EXTENDED_ECX_SVM),
    )
}
