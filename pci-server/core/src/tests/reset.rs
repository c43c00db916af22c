//! The reset executor: sequences, bounded waits, state saved and restored.

use super::*;
use crate::fake::{conventional_e1000, desktop, q35, FakeEvent, RecordingDelay};
use crate::registers::header;
use crate::reset::ResetMethod;
use crate::reset_exec::{reset_function, ResetError};
use crate::ConfigSpace;

#[test]
fn flr_resets_and_restores_state_with_bus_mastering_off() {
    let (mut config, inventory) = desktop();
    let bar1 = config.read32(desktop::GPU, 0x14);
    config.write16(desktop::GPU, header::COMMAND, 0x0407);
    let mut delay = RecordingDelay::default();
    let report = reset_function(&mut config, &mut delay, &inventory, desktop::GPU).unwrap();
    assert_eq!(report.method, ResetMethod::Flr);
    assert!(!report.transactions_were_pending);
    assert!(config
        .events()
        .contains(&FakeEvent::FunctionLevelReset(desktop::GPU)));
    assert_eq!(config.read32(desktop::GPU, 0x14), bar1);
    assert_eq!(
        config.read16(desktop::GPU, header::COMMAND),
        0x0403,
        "bus master off, rest kept"
    );
    assert!(delay.waits.contains(&100_000), "100 ms after FLR");
}

#[test]
fn flr_waits_a_bounded_time_for_pending_transactions() {
    let (mut config, inventory) = q35();
    config
        .function_mut(q35::NVME)
        .unwrap()
        .pending_transaction_reads
        .set(1_000_000);
    let mut delay = RecordingDelay::default();
    let report = reset_function(&mut config, &mut delay, &inventory, q35::NVME).unwrap();
    assert!(report.transactions_were_pending);
    assert_eq!(&delay.waits[..4], &[100_000, 200_000, 400_000, 800_000]);
    assert!(config
        .events()
        .contains(&FakeEvent::FunctionLevelReset(q35::NVME)));
}

#[test]
fn a_function_that_never_comes_back_is_an_error_after_a_bounded_wait() {
    let (mut config, inventory) = q35();
    config
        .function_mut(q35::NVME)
        .unwrap()
        .not_ready_after_reset = u32::MAX;
    let mut delay = RecordingDelay::default();
    let error = reset_function(&mut config, &mut delay, &inventory, q35::NVME).unwrap_err();
    assert_eq!(error, ResetError::NotReady(q35::NVME));
    assert!(delay.waits.len() <= 20);
}

#[test]
fn a_function_that_is_briefly_not_ready_is_waited_for() {
    let (mut config, inventory) = q35();
    config
        .function_mut(q35::NVME)
        .unwrap()
        .not_ready_after_reset = 3;
    let mut delay = RecordingDelay::default();
    assert!(reset_function(&mut config, &mut delay, &inventory, q35::NVME).is_ok());
    assert_eq!(delay.waits.iter().filter(|w| **w == 100_000).count(), 4);
}

#[test]
fn pm_reset_goes_through_d3hot() {
    let (mut config, inventory) = desktop();
    let mut delay = RecordingDelay::default();
    let report = reset_function(&mut config, &mut delay, &inventory, desktop::NIC).unwrap();
    assert_eq!(report.method, ResetMethod::PowerManagement);
    assert_eq!(
        config.events(),
        &[
            FakeEvent::PowerStateChange(desktop::NIC, 0, 3),
            FakeEvent::PowerStateChange(desktop::NIC, 3, 0),
            FakeEvent::PowerManagementReset(desktop::NIC),
        ]
    );
    assert_eq!(&delay.waits[..2], &[10_000, 10_000]);
}

#[test]
fn af_flr_resets_the_chipset_usb_controller() {
    let (mut config, inventory) = desktop();
    let mut delay = RecordingDelay::default();
    let report = reset_function(&mut config, &mut delay, &inventory, desktop::EHCI).unwrap();
    assert_eq!(report.method, ResetMethod::AdvancedFeaturesFlr);
    assert_eq!(
        config.events(),
        &[FakeEvent::AdvancedFeaturesReset(desktop::EHCI)]
    );
}

#[test]
fn secondary_bus_reset_holds_reset_for_at_least_a_millisecond_and_restores_the_bus() {
    let (mut config, inventory) = desktop();
    let e1000_bar = config.read32(desktop::CONVENTIONAL_E1000, 0x10);
    let rtl_bar = config.read32(desktop::CONVENTIONAL_RTL8139, 0x14);
    let mut delay = RecordingDelay::default();
    let report = reset_function(
        &mut config,
        &mut delay,
        &inventory,
        desktop::CONVENTIONAL_E1000,
    )
    .unwrap();
    assert_eq!(
        report.method,
        ResetMethod::SecondaryBusReset {
            bridge: desktop::PCIE_PCI_BRIDGE
        }
    );
    assert_eq!(report.functions_restored, 2);
    assert_eq!(
        config.events(),
        &[
            FakeEvent::SecondaryBusResetAsserted(desktop::PCIE_PCI_BRIDGE),
            FakeEvent::SecondaryBusReset(desktop::PCIE_PCI_BRIDGE),
        ]
    );
    assert!(delay.waits[0] >= 1_000, "reset asserted at least 1 ms");
    assert!(delay.waits[1] >= 100_000, "100 ms before config requests");
    assert_eq!(config.read32(desktop::CONVENTIONAL_E1000, 0x10), e1000_bar);
    assert_eq!(config.read32(desktop::CONVENTIONAL_RTL8139, 0x14), rtl_bar);
    assert_eq!(config.read16(desktop::PCIE_PCI_BRIDGE, 0x3e) & (1 << 6), 0);
}

#[test]
fn a_lone_conventional_device_on_the_root_bus_cannot_be_reset() {
    let mut config = FakeConfigSpace::new().with(b(0, 3, 0), conventional_e1000());
    let inventory = enumerate(&mut config);
    let mut delay = RecordingDelay::default();
    assert_eq!(
        reset_function(&mut config, &mut delay, &inventory, b(0, 3, 0)),
        Err(ResetError::NoResetMethod(b(0, 3, 0)))
    );
    assert!(config.events().is_empty());
    assert_eq!(
        reset_function(&mut config, &mut delay, &inventory, b(9, 9, 0)),
        Err(ResetError::NoSuchFunction(b(9, 9, 0)))
    );
}
