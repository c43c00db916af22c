//! CPUID and MSR policies.
mod common;

use common::FakeHost;
use vmm_core::cpuid::{
    CpuidEntry, LeafRule, EXTENDED_ECX_SVM, LEAF1_ECX_HYPERVISOR, LEAF1_ECX_VMX,
};
use vmm_core::msr::{MsrEntry, MsrError, MsrPolicy, IA32_APIC_BASE, IA32_MTRR_DEF_TYPE, IA32_PAT};
use vmm_core::{CpuidPolicy, CpuidValues};

#[test]
fn standard_cpuid_hides_virtualization_and_names_the_hypervisor() {
    let policy = CpuidPolicy::standard();
    let leaf1 = policy.evaluate(1, 0, &FakeHost);
    assert_eq!(leaf1.ecx & LEAF1_ECX_VMX, 0);
    assert_ne!(leaf1.ecx & LEAF1_ECX_HYPERVISOR, 0);
    assert_eq!(leaf1.edx, 0xffff_ffff, "other bits pass through");
    assert_eq!(
        policy.evaluate(0x8000_0001, 0, &FakeHost).ecx & EXTENDED_ECX_SVM,
        0
    );
    let hypervisor = policy.evaluate(0x4000_0000, 0, &FakeHost);
    let mut signature = Vec::new();
    for register in [hypervisor.ebx, hypervisor.ecx, hypervisor.edx] {
        signature.extend_from_slice(&register.to_le_bytes());
    }
    assert_eq!(signature, b"SluiceSluice");
    assert_eq!(hypervisor.eax, 0x4000_0000);
    assert_eq!(
        policy.evaluate(0, 0, &FakeHost).eax,
        0xd,
        "max basic leaf clamped"
    );
    assert_eq!(
        policy.evaluate(0, 0, &FakeHost).ebx,
        0x756e_6547,
        "vendor passes through"
    );
    assert_eq!(policy.evaluate(0x8000_0000, 0, &FakeHost).eax, 0x8000_0008);
    assert_eq!(
        policy.evaluate(0xb, 0, &FakeHost),
        CpuidValues::default(),
        "unlisted leaves are zero"
    );
    assert_eq!(
        policy.evaluate(0x4000_0001, 0, &FakeHost),
        CpuidValues::default()
    );
}

#[test]
fn cpuid_subleaf_rows_and_first_match() {
    let fixed = |eax| {
        LeafRule::Fixed(CpuidValues {
            eax,
            ..CpuidValues::default()
        })
    };
    let policy = CpuidPolicy::new(vec![
        CpuidEntry {
            leaf: 7,
            subleaf: Some(1),
            rule: fixed(11),
        },
        CpuidEntry {
            leaf: 7,
            subleaf: None,
            rule: fixed(22),
        },
        CpuidEntry {
            leaf: 7,
            subleaf: None,
            rule: fixed(33),
        },
    ]);
    assert_eq!(policy.evaluate(7, 1, &FakeHost).eax, 11);
    assert_eq!(policy.evaluate(7, 0, &FakeHost).eax, 22);
}

#[test]
fn msr_allow_list_with_writable_masks() {
    let mut policy = MsrPolicy::standard();
    assert_eq!(policy.read(IA32_APIC_BASE), Ok(0xfee0_0900));
    assert_eq!(policy.read(0x1234), Err(MsrError::Unknown(0x1234)));
    assert_eq!(policy.write(0x1234, 0), Err(MsrError::Unknown(0x1234)));
    assert_eq!(
        policy.write(IA32_APIC_BASE, 0),
        Err(MsrError::ReadOnlyBits {
            index: IA32_APIC_BASE,
            bits: 0xfee0_0900
        })
    );
    assert_eq!(
        policy.write(IA32_APIC_BASE, 0xfee0_0900),
        Ok(()),
        "writing the same value is fine"
    );
    policy.write(IA32_PAT, 0x0606_0606_0606_0606).unwrap();
    assert_eq!(policy.read(IA32_PAT), Ok(0x0606_0606_0606_0606));
    assert!(policy.write(IA32_MTRR_DEF_TYPE, 1 << 12).is_err());
    assert_eq!(
        policy.read(IA32_MTRR_DEF_TYPE),
        Ok(0),
        "refused writes change nothing"
    );
    policy.write(IA32_MTRR_DEF_TYPE, 0xc06).unwrap();
    let custom = MsrPolicy::new(vec![MsrEntry {
        index: 0x4000_0100,
        value: 7,
        writable: 0xff,
    }]);
    assert_eq!(custom.read(0x4000_0100), Ok(7));
    assert_eq!(
        format!("{}", MsrError::Unknown(0x10)),
        "MSR 0x10 is not emulated"
    );
}
