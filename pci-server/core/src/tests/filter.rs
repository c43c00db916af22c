//! The owner's filtered config access.

use super::*;
use crate::fake::{desktop, q35};
use crate::filter::{filtered_read, filtered_write, DeniedWrite, FilterError};
use crate::registers::header;
use crate::{AccessWidth, ConfigSpace};

fn write(
    config: &mut FakeConfigSpace,
    inventory: &Inventory,
    bdf: Bdf,
    offset: u16,
    width: AccessWidth,
    value: u32,
) -> (Result<(), FilterError>, Vec<DeniedWrite>) {
    let function = inventory.get(bdf).unwrap().clone();
    let mut denied = Vec::new();
    let result = filtered_write(config, &function, offset, width, value, &mut |d| {
        denied.push(*d)
    });
    (result, denied)
}

#[test]
fn the_owner_may_turn_on_decode_bus_mastering_and_intx_disable() {
    let (mut config, inventory) = q35();
    let (result, denied) = write(
        &mut config,
        &inventory,
        q35::EDU,
        header::COMMAND,
        AccessWidth::Word,
        0x0407,
    );
    assert_eq!(result, Ok(()));
    assert!(denied.is_empty());
    assert_eq!(config.read16(q35::EDU, header::COMMAND), 0x0407);
}

#[test]
fn serr_enable_is_denied_named_logged_and_not_written() {
    let (mut config, inventory) = q35();
    config.clear_log();
    let (result, denied) = write(
        &mut config,
        &inventory,
        q35::EDU,
        header::COMMAND,
        AccessWidth::Word,
        0x0106,
    );
    let Err(FilterError::WriteDenied(record)) = result else {
        panic!("expected denial, got {result:?}")
    };
    assert_eq!(record.register, "command");
    assert_eq!(denied, vec![record]);
    assert!(config.writes().is_empty());
    assert!(format!("{record}").contains("register=command"));
    assert_eq!(
        pci_api::PciError::from(FilterError::WriteDenied(record)),
        pci_api::PciError::WriteDenied
    );
}

#[test]
fn status_error_bits_can_be_cleared_and_read_only_bits_ignored() {
    let (mut config, inventory) = desktop();
    config.poke(desktop::NIC, header::STATUS, &[0x10, 0x20]); // caps list + received master abort
    let current = config.read32(desktop::NIC, header::COMMAND);
    let (result, _) = write(
        &mut config,
        &inventory,
        desktop::NIC,
        header::COMMAND,
        AccessWidth::Dword,
        current,
    );
    assert_eq!(result, Ok(()));
    assert_eq!(
        config.read16(desktop::NIC, header::STATUS),
        0x0010,
        "RW1C cleared, caps list kept"
    );
}

#[test]
fn bars_are_writable_for_the_vmm() {
    let (mut config, inventory) = q35();
    let (result, _) = write(
        &mut config,
        &inventory,
        q35::EDU,
        0x10,
        AccessWidth::Dword,
        0xffff_ffff,
    );
    assert_eq!(result, Ok(()));
    assert_eq!(config.read32(q35::EDU, 0x10), 0xfff0_0000);
}

#[test]
fn msi_msix_and_device_specific_registers_are_the_servers() {
    let (mut config, inventory) = desktop();
    let msi = inventory
        .get(desktop::NIC)
        .unwrap()
        .capabilities
        .msi
        .unwrap();
    let (result, denied) = write(
        &mut config,
        &inventory,
        desktop::NIC,
        msi.offset + 2,
        AccessWidth::Word,
        0x0081,
    );
    assert!(
        matches!(result, Err(FilterError::WriteDenied(d)) if d.register == "MSI capability (server-owned)")
    );
    assert_eq!(denied.len(), 1);
    let msix = inventory
        .get(desktop::NIC)
        .unwrap()
        .capabilities
        .msix
        .unwrap();
    let (result, _) = write(
        &mut config,
        &inventory,
        desktop::NIC,
        msix.offset + 2,
        AccessWidth::Word,
        0x8004,
    );
    assert!(
        matches!(result, Err(FilterError::WriteDenied(d)) if d.register == "MSI-X capability (server-owned)")
    );
    let (result, _) = write(
        &mut config,
        &inventory,
        desktop::NIC,
        0x50,
        AccessWidth::Dword,
        1,
    );
    assert!(
        matches!(result, Err(FilterError::WriteDenied(d)) if d.register == "device-specific register")
    );
    let (result, _) = write(
        &mut config,
        &inventory,
        desktop::NIC,
        0x00,
        AccessWidth::Word,
        0x1234,
    );
    assert!(matches!(result, Err(FilterError::WriteDenied(d)) if d.register == "vendor ID"));
}

#[test]
fn initiate_flr_is_denied_but_other_device_control_bits_pass() {
    let (mut config, inventory) = q35();
    let pcie = inventory.get(q35::NVME).unwrap().capabilities.pcie.unwrap();
    let register = pcie.offset + 8;
    let current = config.read16(q35::NVME, register) as u32;
    let (result, _) = write(
        &mut config,
        &inventory,
        q35::NVME,
        register,
        AccessWidth::Word,
        current | 0x8000,
    );
    assert!(
        matches!(result, Err(FilterError::WriteDenied(d)) if d.register == "PCIe device control")
    );
    assert!(config.events().is_empty(), "no FLR happened");
    let (result, _) = write(
        &mut config,
        &inventory,
        q35::NVME,
        register,
        AccessWidth::Word,
        current ^ 0x0001,
    );
    assert_eq!(result, Ok(()));
}

#[test]
fn misaligned_and_out_of_range_accesses_are_refused() {
    let (mut config, inventory) = q35();
    let (result, _) = write(
        &mut config,
        &inventory,
        q35::EDU,
        0x05,
        AccessWidth::Word,
        0,
    );
    assert_eq!(result, Err(FilterError::Misaligned { offset: 5 }));
    let (result, _) = write(
        &mut config,
        &inventory,
        q35::EDU,
        4096,
        AccessWidth::Byte,
        0,
    );
    assert_eq!(result, Err(FilterError::OutOfRange { offset: 4096 }));
    assert_eq!(
        filtered_read(&config, q35::EDU, 0x02, AccessWidth::Dword),
        Err(FilterError::Misaligned { offset: 2 })
    );
    assert_eq!(
        filtered_read(&config, q35::EDU, 0x00, AccessWidth::Dword),
        Ok(0x11e8_1234)
    );
    assert_eq!(
        filtered_read(&config, q35::EDU, 0xffc, AccessWidth::Dword),
        Ok(0)
    );
}
