//! Control-register access exits the kernel handles itself: MOV to CR0 / CR4, CLTS, LMSW.
use heapless::Vec;

use super::fixtures::*;
use crate::vmx::control_register::{
    handle_control_register_access, ControlRegisterAccess, ControlRegisterOutcome,
};
use crate::vmx::entry::VmcsWrite;
use crate::vmx::VmcsField;
use sluice_abi::vcpu::Gpr;

fn handled(vmcs: &FakeVmcs, saved: &crate::state::SavedRegisters) -> Vec<VmcsWrite, 12> {
    match handle_control_register_access(vmcs, saved, &policy()).unwrap() {
        ControlRegisterOutcome::Handled(writes) => writes,
        ControlRegisterOutcome::Forward => panic!("expected the kernel to handle it"),
    }
}

fn value_of(writes: &[VmcsWrite], field: VmcsField) -> Option<u64> {
    writes
        .iter()
        .rev()
        .find(|write| write.field == field)
        .map(|write| write.value)
}

#[test]
fn qualification_decodes() {
    assert_eq!(
        ControlRegisterAccess::decode(0x300),
        ControlRegisterAccess::MoveTo {
            register: 0,
            source: Gpr::Rbx
        }
    );
    assert_eq!(
        ControlRegisterAccess::decode(0x414),
        ControlRegisterAccess::MoveFrom {
            register: 4,
            destination: Gpr::Rsp
        }
    );
    assert_eq!(
        ControlRegisterAccess::decode(0x20),
        ControlRegisterAccess::Clts
    );
    assert_eq!(
        ControlRegisterAccess::decode(0x0011_0030),
        ControlRegisterAccess::Lmsw { source: 0x11 }
    );
}

#[test]
fn setting_cr0_ne_updates_shadow_and_advances_rip() {
    let mut vmcs = long_mode_vmcs();
    let mut saved = saved_registers();
    saved.gpr.set(Gpr::Rax, GUEST_CR0 | 0x20);
    vmcs.set(VmcsField::ExitQualification, 0x000) // mov cr0, rax
        .set(VmcsField::ExitInstructionLength, 3)
        .set(VmcsField::GuestInterruptibility, 1);
    let writes = handled(&vmcs, &saved);
    assert_eq!(
        value_of(&writes, VmcsField::Cr0ReadShadow),
        Some(GUEST_CR0 | 0x20)
    );
    assert_eq!(
        value_of(&writes, VmcsField::GuestCr0),
        Some(GUEST_CR0 | 0x20)
    );
    assert_eq!(value_of(&writes, VmcsField::GuestRip), Some(0x10_0003));
    assert_eq!(
        value_of(&writes, VmcsField::GuestInterruptibility),
        Some(0),
        "STI shadow ends"
    );
    assert_eq!(
        value_of(&writes, VmcsField::GuestEfer),
        None,
        "PG unchanged"
    );
}

#[test]
fn enabling_paging_with_lme_enters_long_mode() {
    let mut vmcs = long_mode_vmcs();
    let mut saved = saved_registers();
    vmcs.set(VmcsField::Cr0ReadShadow, 0x11)
        .set(VmcsField::GuestCr0, 0x31)
        .set(VmcsField::GuestEfer, 0x100)
        .set(VmcsField::EntryControls, 0x11fb)
        .set(VmcsField::GuestCsAccessRights, 0xc09b)
        .set(VmcsField::GuestRip, 0xffff_fffe)
        .set(VmcsField::ExitQualification, 0x100) // mov cr0, rcx
        .set(VmcsField::ExitInstructionLength, 3);
    saved.gpr.set(Gpr::Rcx, 0x8000_0011);
    let writes = handled(&vmcs, &saved);
    assert_eq!(value_of(&writes, VmcsField::GuestEfer), Some(0x500));
    assert_eq!(
        value_of(&writes, VmcsField::EntryControls),
        Some(0x11fb | 1 << 9)
    );
    assert_eq!(
        value_of(&writes, VmcsField::GuestRip),
        Some(1),
        "32-bit code wraps at 4 GiB"
    );
}

#[test]
fn writes_the_cpu_refuses_inject_general_protection() {
    let mut vmcs = long_mode_vmcs();
    let mut saved = saved_registers();
    saved.gpr.set(Gpr::Rdx, 1 << 40); // reserved CR4 bit
    vmcs.set(VmcsField::ExitQualification, 0x204); // mov cr4, rdx
    let writes = handled(&vmcs, &saved);
    assert_eq!(
        value_of(&writes, VmcsField::EntryInterruptionInfo),
        Some(0x8000_0b0d)
    );
    assert_eq!(
        value_of(&writes, VmcsField::GuestRip),
        None,
        "faulting instruction not skipped"
    );
    saved.gpr.set(Gpr::Rdx, 0x8000_0000); // PG without PE
    vmcs.set(VmcsField::ExitQualification, 0x200);
    assert_eq!(
        value_of(&handled(&vmcs, &saved), VmcsField::EntryInterruptionInfo),
        Some(0x8000_0b0d)
    );
}

#[test]
fn clts_lmsw_and_other_accesses() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::Cr0ReadShadow, GUEST_CR0 | 8)
        .set(VmcsField::GuestCr0, policy().guest_cr0(GUEST_CR0 | 8))
        .set(VmcsField::ExitInstructionLength, 2)
        .set(VmcsField::ExitQualification, 0x20);
    let saved = saved_registers();
    assert_eq!(
        value_of(&handled(&vmcs, &saved), VmcsField::Cr0ReadShadow),
        Some(GUEST_CR0)
    );
    // LMSW 0 cannot clear PE.
    vmcs.set(VmcsField::ExitQualification, 0x30);
    assert_eq!(
        value_of(&handled(&vmcs, &saved), VmcsField::Cr0ReadShadow),
        Some(GUEST_CR0 & !0xf | 1)
    );
    for qualification in [0x003, 0x008, 0x014] {
        vmcs.set(VmcsField::ExitQualification, qualification);
        assert_eq!(
            handle_control_register_access(&vmcs, &saved, &policy()),
            Ok(ControlRegisterOutcome::Forward),
            "{qualification:#x}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    #[test]
    fn random_accesses_never_panic(
        qualification in proptest::prelude::any::<u64>(),
        value in proptest::prelude::any::<u64>(),
        length in 0u64..20,
        rip in proptest::prelude::any::<u64>(),
    ) {
        let mut vmcs = long_mode_vmcs();
        vmcs.set(VmcsField::ExitQualification, qualification)
            .set(VmcsField::ExitInstructionLength, length)
            .set(VmcsField::GuestRip, rip)
            .set(VmcsField::GuestRsp, value);
        let mut saved = saved_registers();
        for register in Gpr::ALL {
            saved.gpr.set(register, value);
        }
        match handle_control_register_access(&vmcs, &saved, &policy()) {
            Ok(ControlRegisterOutcome::Handled(writes)) => {
                proptest::prop_assert!(writes.iter().all(|write| !write.field.is_read_only()));
            }
            Ok(ControlRegisterOutcome::Forward) => {}
            Err(error) => proptest::prop_assert!(!error.to_string().is_empty()),
        }
    }
}
