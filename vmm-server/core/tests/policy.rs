//! CPUID and MSR policies: the standard CPUID table, leaf 0xD limited to the host's XCR0, the
//! bits that follow the guest's CR4, and the MSR allow list.
mod common;

use common::{
    FakeHost, ALL_COMPONENTS_SIZE, HOST_XCR0, SAPPHIRE_RAPIDS_XCR0, SUBLEAF1_EAX,
    SUPERVISOR_COMPONENTS,
};
use proptest::prelude::*;
use vmm_core::cpuid::{
    CpuidEntry, LeafRule, CR4_OSXSAVE, CR4_PKE, EXTENDED_ECX_SVM, LEAF1_ECX_HYPERVISOR,
    LEAF1_ECX_OSXSAVE, LEAF1_ECX_VMX, LEAF7_ECX_OSPKE,
};
use vmm_core::msr::{MsrEntry, MsrError, MsrPolicy, IA32_APIC_BASE, IA32_MTRR_DEF_TYPE, IA32_PAT};
use vmm_core::{CpuidPolicy, CpuidValues, HostCpuid};

#[test]
fn standard_cpuid_hides_virtualization_and_names_the_hypervisor() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost::default();
    let leaf1 = policy.evaluate(1, 0, 0, &host);
    assert_eq!(leaf1.ecx & LEAF1_ECX_VMX, 0);
    assert_ne!(leaf1.ecx & LEAF1_ECX_HYPERVISOR, 0);
    assert_eq!(leaf1.edx, 0xffff_ffff, "other bits pass through");
    assert_eq!(
        policy.evaluate(0x8000_0001, 0, 0, &host).ecx & EXTENDED_ECX_SVM,
        0
    );
    let hypervisor = policy.evaluate(0x4000_0000, 0, 0, &host);
    let mut signature = Vec::new();
    for register in [hypervisor.ebx, hypervisor.ecx, hypervisor.edx] {
        signature.extend_from_slice(&register.to_le_bytes());
    }
    assert_eq!(signature, b"SluiceSluice");
    assert_eq!(hypervisor.eax, 0x4000_0000);
    assert_eq!(
        policy.evaluate(0, 0, 0, &host).eax,
        0xd,
        "max basic leaf clamped"
    );
    assert_eq!(
        policy.evaluate(0, 0, 0, &host).ebx,
        0x756e_6547,
        "vendor passes through"
    );
    assert_eq!(policy.evaluate(0x8000_0000, 0, 0, &host).eax, 0x8000_0008);
    assert_eq!(
        policy.evaluate(0xb, 0, 0, &host),
        CpuidValues::default(),
        "unlisted leaves are zero"
    );
    assert_eq!(
        policy.evaluate(0x4000_0001, 0, 0, &host),
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
    let host = FakeHost::default();
    assert_eq!(policy.evaluate(7, 1, 0, &host).eax, 11);
    assert_eq!(policy.evaluate(7, 0, 0, &host).eax, 22);
}

const ZERO: CpuidValues = CpuidValues {
    eax: 0,
    ebx: 0,
    ecx: 0,
    edx: 0,
};

#[test]
fn extended_state_subleaf0_offers_only_the_host_xcr0_components() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost::default();
    let host_values = host.cpuid(0xd, 0);
    assert_eq!(
        host_values.eax, SAPPHIRE_RAPIDS_XCR0 as u32,
        "the host CPU reports PKRU and AMX"
    );
    let guest = policy.evaluate(0xd, 0, 0, &host);
    assert_eq!(
        guest.eax, 0xe7,
        "x87, SSE, AVX, AVX-512 only: no PKRU, no AMX"
    );
    assert_eq!(guest.edx, 0);
    assert_eq!(
        guest.ebx, 0xa80,
        "size for the enabled components from the host"
    );
    assert_eq!(guest.ecx, ALL_COMPONENTS_SIZE, "size for all from the host");
}

#[test]
fn extended_state_limits_the_high_half_by_the_high_half_of_xcr0() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost {
        supported_xcr0: SAPPHIRE_RAPIDS_XCR0 | (1 << 40) | (1 << 42),
        xcr0: HOST_XCR0 | (1 << 40),
        ..FakeHost::default()
    };
    let guest = policy.evaluate(0xd, 0, 0, &host);
    assert_eq!((guest.eax, guest.edx), (0xe7, 1 << 8));
    assert_ne!(host.cpuid(0xd, 40), ZERO);
    assert_eq!(policy.evaluate(0xd, 40, 0, &host), host.cpuid(0xd, 40));
    assert_ne!(host.cpuid(0xd, 42), ZERO);
    assert_eq!(policy.evaluate(0xd, 42, 0, &host), ZERO);
}

#[test]
fn extended_state_components_outside_the_host_xcr0_read_zero() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost::default();
    for component in [2, 5, 6, 7] {
        let host_values = host.cpuid(0xd, component);
        assert_ne!(host_values, ZERO);
        assert_eq!(
            policy.evaluate(0xd, component, 0, &host),
            host_values,
            "component {component} is in XCR0 and passes through"
        );
    }
    assert_eq!(
        policy.evaluate(0xd, 2, 0, &host),
        CpuidValues {
            eax: 256,
            ebx: 576,
            ecx: 0,
            edx: 0
        },
        "AVX: 256 bytes at 576"
    );
    // PKRU and AMX (supported, not enabled), supervisor states (IA32_XSS), components no CPU
    // has, and subleaves past bit 63.
    for component in [
        9,
        17,
        18,
        8,
        11,
        12,
        15,
        16,
        3,
        4,
        10,
        19,
        62,
        63,
        64,
        65,
        u32::MAX,
    ] {
        assert_eq!(
            policy.evaluate(0xd, component, 0, &host),
            ZERO,
            "component {component}"
        );
    }
    assert_ne!(host.cpuid(0xd, 17), ZERO, "the host reports AMX TILECFG");
    assert_ne!(host.cpuid(0xd, 18), ZERO, "the host reports AMX TILEDATA");
    assert_ne!(host.cpuid(0xd, 8), ZERO, "the host reports PT in IA32_XSS");
}

#[test]
fn extended_state_subleaf1_offers_no_supervisor_state_xsaves_or_xfd() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost::default();
    let host_values = host.cpuid(0xd, 1);
    assert_eq!(
        (host_values.eax, host_values.ecx),
        (SUBLEAF1_EAX, SUPERVISOR_COMPONENTS)
    );
    let guest = policy.evaluate(0xd, 1, 0, &host);
    assert_eq!(
        guest.eax, 0b111,
        "XSAVEOPT, XSAVEC, XGETBV ECX=1; no XSAVES, no XFD"
    );
    assert_eq!(guest.ebx, host_values.ebx);
    assert_eq!((guest.ecx, guest.edx), (0, 0), "no IA32_XSS components");
}

#[test]
fn extended_state_of_a_host_without_osxsave_is_x87_only() {
    let policy = CpuidPolicy::standard();
    let host = FakeHost {
        xcr0: 1,
        cr4: 0,
        ..FakeHost::default()
    };
    assert_eq!(policy.evaluate(0xd, 0, 0, &host).eax, 1);
    assert_eq!(policy.evaluate(0xd, 0, 0, &host).edx, 0);
    assert_eq!(policy.evaluate(0xd, 2, 0, &host), ZERO);
}

#[test]
fn osxsave_and_ospke_follow_the_guest_cr4_not_the_host() {
    let policy = CpuidPolicy::standard();
    let host_set = FakeHost::default();
    let host_clear = FakeHost {
        cr4: 0,
        ..FakeHost::default()
    };
    assert_ne!(host_set.cpuid(1, 0).ecx & LEAF1_ECX_OSXSAVE, 0);
    assert_eq!(host_clear.cpuid(1, 0).ecx & LEAF1_ECX_OSXSAVE, 0);
    let guest_cr4 = 0x20;
    for host in [host_set, host_clear] {
        let off = policy.evaluate(1, 0, guest_cr4, &host).ecx;
        let on = policy.evaluate(1, 0, guest_cr4 | CR4_OSXSAVE, &host).ecx;
        assert_eq!(off & LEAF1_ECX_OSXSAVE, 0, "guest CR4.OSXSAVE clear");
        assert_ne!(on & LEAF1_ECX_OSXSAVE, 0, "guest CR4.OSXSAVE set");
        assert_eq!(off | LEAF1_ECX_OSXSAVE, on, "no other bit moves");
        assert_eq!(on & LEAF1_ECX_VMX, 0);
        assert_ne!(on & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(
            policy.evaluate(1, 0, CR4_PKE, &host).ecx & LEAF1_ECX_OSXSAVE,
            0,
            "CR4.PKE is not CR4.OSXSAVE"
        );

        let off = policy.evaluate(7, 0, guest_cr4, &host).ecx;
        let on = policy.evaluate(7, 0, guest_cr4 | CR4_PKE, &host).ecx;
        assert_eq!(off & LEAF7_ECX_OSPKE, 0, "guest CR4.PKE clear");
        assert_eq!(off | LEAF7_ECX_OSPKE, on, "guest CR4.PKE set");
        assert_eq!(
            policy.evaluate(7, 1, 0, &host).ecx,
            host.cpuid(7, 1).ecx,
            "OSPKE is in subleaf 0 only"
        );
    }
}

#[test]
fn guest_cr4_bits_apply_over_every_rule_but_not_to_unlisted_leaves() {
    let host = FakeHost::default();
    let policy = CpuidPolicy::new(vec![CpuidEntry {
        leaf: 1,
        subleaf: None,
        rule: LeafRule::Fixed(CpuidValues {
            ecx: LEAF1_ECX_OSXSAVE | 1,
            ..CpuidValues::default()
        }),
    }]);
    assert_eq!(policy.evaluate(1, 0, 0, &host).ecx, 1);
    assert_eq!(
        policy.evaluate(1, 0, CR4_OSXSAVE, &host).ecx,
        1 | LEAF1_ECX_OSXSAVE
    );
    assert_eq!(
        policy.evaluate(7, 0, CR4_PKE, &host),
        ZERO,
        "an unlisted leaf reads zero whatever CR4 holds"
    );
}

proptest! {
    /// Whatever the CPU supports and the kernel enabled, the guest is offered no component
    /// outside the host's XCR0, in subleaf 0 or as a subleaf of its own, and no IA32_XSS
    /// component.
    #[test]
    fn extended_state_never_offers_more_than_the_host_xcr0(
        supported in any::<u64>(),
        enabled in any::<u64>(),
        subleaf in prop_oneof![0u32..70, any::<u32>()],
        guest_cr4 in any::<u64>(),
    ) {
        let host = FakeHost {
            supported_xcr0: supported | 1,
            xcr0: (enabled & supported) | 1,
            ..FakeHost::default()
        };
        let guest = CpuidPolicy::standard().evaluate(0xd, subleaf, guest_cr4, &host);
        match subleaf {
            0 => {
                let offered = u64::from(guest.edx) << 32 | u64::from(guest.eax);
                prop_assert_eq!(offered, host.xcr0);
            }
            1 => prop_assert_eq!((guest.eax & !0b111, guest.ecx, guest.edx), (0, 0, 0)),
            component if component >= 64 || host.xcr0 & (1u64 << component) == 0 => {
                prop_assert_eq!(guest, ZERO);
            }
            component => prop_assert_eq!(guest, host.cpuid(0xd, component)),
        }
    }
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
