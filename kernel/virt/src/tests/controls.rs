//! Control adjustment against recorded capability MSR values: a Skylake server, Bochs's
//! corei7_skylake_x model, an EPT-without-unrestricted-guest CPU and a CPU without TRUE MSRs.
use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::vmx::control_bits::*;
use crate::vmx::controls::{
    msr, AllowedSettings, ControlError, ControlField, DesiredControls, VmxCapabilities,
};
use crate::vmx::VmcsField;

fn read_from(values: &BTreeMap<u32, u64>) -> (VmxCapabilities, Vec<u32>) {
    let read = RefCell::new(Vec::new());
    let capabilities = VmxCapabilities::read(|index| {
        read.borrow_mut().push(index);
        *values
            .get(&index)
            .unwrap_or_else(|| panic!("RDMSR {index:#x} would #GP"))
    });
    (capabilities, read.into_inner())
}

/// A Skylake-SP host (values as reported by Linux's vmxcap; TRUE controls present).
fn skylake() -> BTreeMap<u32, u64> {
    BTreeMap::from([
        (msr::BASIC, 0x00da_0400_0000_0004),
        (msr::PINBASED_CTLS, 0x0000_00ff_0000_0016),
        (msr::PROCBASED_CTLS, 0xfff9_fffe_0401_e172),
        (msr::EXIT_CTLS, 0x01ff_ffff_0003_6dff),
        (msr::ENTRY_CTLS, 0x0003_ffff_0000_11ff),
        (msr::MISC, 0x7004_c1e7),
        (msr::CR0_FIXED0, 0x8000_0021),
        (msr::CR0_FIXED1, 0xffff_ffff),
        (msr::CR4_FIXED0, 0x2000),
        (msr::CR4_FIXED1, 0x0037_27ff),
        (msr::PROCBASED_CTLS2, 0x0117_7fff_0000_0000),
        (msr::EPT_VPID_CAP, 0x0f01_0633_4141),
        (msr::TRUE_PINBASED_CTLS, 0x0000_00ff_0000_0016),
        (msr::TRUE_PROCBASED_CTLS, 0xfff9_fffe_0400_6172),
        (msr::TRUE_EXIT_CTLS, 0x01ff_ffff_0003_6dfb),
        (msr::TRUE_ENTRY_CTLS, 0x0003_ffff_0000_11fb),
    ])
}

/// Bochs 2.7 corei7_skylake_x: EPT, VPID, unrestricted guest, but no XSAVES, no INVPCID and
/// no PAT switching in this model's allowed-1 settings.
fn bochs() -> BTreeMap<u32, u64> {
    let mut values = skylake();
    values.insert(msr::BASIC, 0x00d8_1000_0000_0001);
    values.insert(msr::TRUE_PINBASED_CTLS, 0x0000_007f_0000_0016);
    values.insert(msr::PROCBASED_CTLS2, 0x0000_0eff_0000_0000);
    values.insert(msr::TRUE_EXIT_CTLS, 0x0033_ffff_0003_6dfb);
    values.insert(msr::TRUE_ENTRY_CTLS, 0x0000_bfff_0000_11fb);
    values
}

#[test]
fn skylake_gets_every_control_sluice_wants() {
    let (capabilities, read) = read_from(&skylake());
    assert!(read.contains(&msr::TRUE_PROCBASED_CTLS) && !read.contains(&msr::PROCBASED_CTLS));
    assert!(read.contains(&msr::PROCBASED_CTLS2) && read.contains(&msr::EPT_VPID_CAP));
    assert_eq!(capabilities.vmcs_revision(), 4);
    assert_eq!(capabilities.vmcs_region_size(), 0x400);
    assert_eq!(capabilities.preemption_timer_rate(), 7);
    assert!(capabilities.ept_four_level_walk() && capabilities.ept_write_back());
    assert!(capabilities.ept_2m_pages() && capabilities.ept_1g_pages());
    assert!(capabilities.invept_single_context() && capabilities.invvpid_all_context());
    let controls = capabilities.adjust(&DesiredControls::sluice()).unwrap();
    let pin = controls.pin_based;
    assert!(
        pin.contains(PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING)
    );
    assert!(pin.contains(PinBasedControls::ACTIVATE_PREEMPTION_TIMER));
    assert_eq!(pin.bits() & 0x16, 0x16, "default1 bits kept");
    let primary = controls.primary;
    assert!(primary.contains(
        PrimaryProcessorControls::HLT_EXITING
            | PrimaryProcessorControls::ACTIVATE_SECONDARY_CONTROLS
    ));
    assert!(
        !primary.contains(PrimaryProcessorControls::CR3_LOAD_EXITING),
        "TRUE MSR lets CR3 exits go"
    );
    assert!(controls.secondary.contains(
        SecondaryProcessorControls::ENABLE_EPT
            | SecondaryProcessorControls::UNRESTRICTED_GUEST
            | SecondaryProcessorControls::ENABLE_VPID
            | SecondaryProcessorControls::ENABLE_XSAVES_XRSTORS
    ));
    assert!(controls.exit.contains(ExitControls::LOAD_IA32_PAT));
    assert!(
        !controls
            .exit
            .contains(ExitControls::SAVE_PREEMPTION_TIMER_VALUE),
        "the backstop timer restarts from the written value at every entry"
    );
    assert!(controls
        .entry
        .contains(EntryControls::LOAD_IA32_EFER | EntryControls::LOAD_IA32_PAT));
    let writes = controls.vmcs_writes();
    assert_eq!(
        writes[1],
        (
            VmcsField::PrimaryProcessorControls,
            u64::from(primary.bits())
        )
    );
    let policy = capabilities.control_register_policy(true);
    assert_eq!(
        policy.guest_cr0(0),
        0x20,
        "PE and PG free under unrestricted guest, NE fixed"
    );
    assert_eq!(
        capabilities.control_register_policy(false).guest_cr0(0),
        0x8000_0021
    );
    assert_eq!(policy.guest_cr4(0x20), 0x2020);
    assert_eq!(policy.cr4_mask() & 0x2000, 0x2000);
}

#[test]
fn bochs_drops_optional_controls_it_lacks() {
    let (capabilities, _) = read_from(&bochs());
    assert_eq!(capabilities.vmcs_revision(), 1);
    let controls = capabilities.adjust(&DesiredControls::sluice()).unwrap();
    assert!(controls.secondary.contains(
        SecondaryProcessorControls::ENABLE_EPT
            | SecondaryProcessorControls::UNRESTRICTED_GUEST
            | SecondaryProcessorControls::ENABLE_VPID
    ));
    assert!(!controls
        .secondary
        .contains(SecondaryProcessorControls::ENABLE_XSAVES_XRSTORS));
    assert!(!controls
        .secondary
        .contains(SecondaryProcessorControls::ENABLE_INVPCID));
    assert!(!controls.exit.contains(ExitControls::LOAD_IA32_PAT));
    assert!(!controls
        .pin_based
        .contains(PinBasedControls::PROCESS_POSTED_INTERRUPTS));
    assert!(controls
        .pin_based
        .contains(PinBasedControls::ACTIVATE_PREEMPTION_TIMER));
}

#[test]
fn missing_required_controls_are_named() {
    // EPT but no unrestricted guest (Nehalem-like).
    let mut old = skylake();
    old.insert(msr::PROCBASED_CTLS2, 0x0000_004f_0000_0000);
    let (capabilities, _) = read_from(&old);
    let error = capabilities.adjust(&DesiredControls::sluice()).unwrap_err();
    assert_eq!(
        error,
        ControlError::Unsupported {
            field: ControlField::SecondaryProcessor,
            bits: SecondaryProcessorControls::UNRESTRICTED_GUEST.bits()
        }
    );
    assert_eq!(
        error.to_string(),
        "secondary processor-based controls: required but unsupported by this CPU: UNRESTRICTED_GUEST"
    );
    // No secondary controls at all: PROCBASED_CTLS2 and EPT_VPID_CAP are never read.
    let mut ancient = skylake();
    ancient.insert(msr::TRUE_PROCBASED_CTLS, 0x7ff9_fffe_0400_6172);
    ancient.remove(&msr::PROCBASED_CTLS2);
    ancient.remove(&msr::EPT_VPID_CAP);
    let (capabilities, read) = read_from(&ancient);
    assert!(!read.contains(&msr::PROCBASED_CTLS2));
    assert_eq!(capabilities.ept_vpid, 0);
    let error = capabilities.adjust(&DesiredControls::sluice()).unwrap_err();
    assert_eq!(
        error,
        ControlError::Unsupported {
            field: ControlField::PrimaryProcessor,
            bits: 1 << 31
        }
    );
    assert!(error.to_string().contains("ACTIVATE_SECONDARY_CONTROLS"));
    // Unnamed bits are printed in hex.
    let unnamed = ControlError::Unsupported {
        field: ControlField::Entry,
        bits: 1 << 30 | 1 << 15,
    };
    assert_eq!(
        unnamed.to_string(),
        "VM-entry controls: required but unsupported by this CPU: LOAD_IA32_EFER | 0x40000000"
    );
}

#[test]
fn without_true_msrs_default1_bits_stay_set() {
    let mut plain = skylake();
    plain.insert(msr::BASIC, 0x005a_0400_0000_0004);
    for index in [
        msr::TRUE_PINBASED_CTLS,
        msr::TRUE_PROCBASED_CTLS,
        msr::TRUE_EXIT_CTLS,
        msr::TRUE_ENTRY_CTLS,
    ] {
        plain.remove(&index);
    }
    let (capabilities, read) = read_from(&plain);
    assert!(read.contains(&msr::PROCBASED_CTLS));
    let controls = capabilities.adjust(&DesiredControls::sluice()).unwrap();
    assert!(controls.primary.contains(
        PrimaryProcessorControls::CR3_LOAD_EXITING | PrimaryProcessorControls::CR3_STORE_EXITING
    ));
}

#[test]
fn rules_between_controls_and_broken_msrs_are_refused() {
    let (capabilities, _) = read_from(&skylake());
    let mut desired = DesiredControls::sluice();
    desired.secondary_required = SecondaryProcessorControls::UNRESTRICTED_GUEST;
    desired.secondary_optional = SecondaryProcessorControls::empty();
    assert_eq!(
        capabilities.adjust(&desired),
        Err(ControlError::Inconsistent(
            "unrestricted guest requires EPT"
        ))
    );
    let mut desired = DesiredControls::sluice();
    desired.pin_required |= PinBasedControls::VIRTUAL_NMIS;
    desired.pin_required.remove(PinBasedControls::NMI_EXITING);
    assert_eq!(
        capabilities.adjust(&desired),
        Err(ControlError::Inconsistent(
            "virtual NMIs require NMI exiting"
        ))
    );
    // Without a preemption timer the save control is dropped, or refused if required.
    let mut no_timer = skylake();
    no_timer.insert(msr::TRUE_PINBASED_CTLS, 0x0000_003f_0000_0016);
    let (capabilities, _) = read_from(&no_timer);
    let controls = capabilities.adjust(&DesiredControls::sluice()).unwrap();
    assert!(!controls
        .exit
        .contains(ExitControls::SAVE_PREEMPTION_TIMER_VALUE));
    let mut desired = DesiredControls::sluice();
    desired.exit_required |= ExitControls::SAVE_PREEMPTION_TIMER_VALUE;
    assert!(matches!(
        capabilities.adjust(&desired),
        Err(ControlError::Inconsistent(_))
    ));
    let broken = AllowedSettings(0x0000_0001_0000_0003);
    assert_eq!(
        broken.adjust(ControlField::PinBased, 0, 0),
        Err(ControlError::ContradictoryCapability {
            field: ControlField::PinBased,
            bits: 2
        })
    );
    assert_eq!(
        AllowedSettings(0x0000_00ff_0000_0016).adjust(ControlField::PinBased, 1, 0x100),
        Ok(0x17)
    );
}
