//! Remappable-format MSI and MSI-X programming.

use super::*;
use crate::fake::{desktop, q35, FakeMsixTable};
use crate::msi::{
    irte_index, program_msi, program_msix_entry, remappable_message, IrteHandle, MsiError,
    MsixEntryRegister, MsixTable,
};
use crate::ConfigSpace;

#[test]
fn remappable_address_carries_the_handle_as_vt_d_lays_it_out() {
    let message = remappable_message(IrteHandle(0x8123), None);
    // 0xFEE, handle[14:0]=0x0123 in 19:5, format bit 4, handle[15] in bit 2, SHV clear.
    assert_eq!(
        message.address,
        0xfee0_0000 | (0x0123 << 5) | (1 << 4) | (1 << 2)
    );
    assert_eq!(message.data, 0);
    assert_eq!(irte_index(message, 0), 0x8123);
    let with_sub = remappable_message(IrteHandle(0x10), Some(5));
    assert_eq!(with_sub.address & (1 << 3), 1 << 3);
    assert_eq!(with_sub.data, 5);
    assert_eq!(irte_index(with_sub, 2), 0x10 + 7);
}

#[test]
fn edu_msi_is_programmed_and_enabled() {
    let (mut config, inventory) = q35();
    let edu = inventory.get(q35::EDU).unwrap();
    let msi = edu.capabilities.msi.unwrap();
    let message = program_msi(&mut config, edu, IrteHandle(42), 1).unwrap();
    assert_eq!(
        config.read32(q35::EDU, msi.offset + 4),
        message.address as u32
    );
    assert_eq!(config.read32(q35::EDU, msi.offset + 8), 0);
    assert_eq!(config.read16(q35::EDU, msi.data_offset()), 0);
    let control = config.read16(q35::EDU, msi.offset + 2);
    assert_eq!(control & 1, 1, "enabled");
    assert_eq!((control >> 4) & 7, 0, "one vector");
    assert_eq!(irte_index(message, 0), 42);
}

#[test]
fn multi_vector_msi_uses_a_subhandle_and_multiple_message_enable() {
    let (mut config, inventory) = desktop();
    let xhci = inventory.get(desktop::XHCI).unwrap();
    let msi = xhci.capabilities.msi.unwrap();
    let message = program_msi(&mut config, xhci, IrteHandle(100), 8).unwrap();
    assert_ne!(message.address & (1 << 3), 0, "SHV");
    assert_eq!((config.read16(desktop::XHCI, msi.offset + 2) >> 4) & 7, 3);
    assert_eq!(irte_index(message, 7), 107);
    config.clear_log();
    assert_eq!(
        program_msi(&mut config, xhci, IrteHandle(100), 16),
        Err(MsiError::BadVectorCount {
            requested: 16,
            capable: 8
        })
    );
    assert_eq!(
        program_msi(&mut config, xhci, IrteHandle(100), 3).unwrap_err(),
        MsiError::BadVectorCount {
            requested: 3,
            capable: 8
        }
    );
    assert!(config.writes().is_empty(), "nothing written on error");
    let ehci = inventory.get(desktop::EHCI).unwrap();
    assert_eq!(
        program_msi(&mut config, ehci, IrteHandle(1), 1),
        Err(MsiError::NoMsi(desktop::EHCI))
    );
}

#[test]
fn msix_entry_is_masked_while_programmed() {
    let (mut config, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    let msix = nic.capabilities.msix.unwrap();
    let mut table = FakeMsixTable::default();
    let message =
        program_msix_entry(&mut config, &mut table, nic, 2, IrteHandle(9), Some(0)).unwrap();
    let writes: Vec<(MsixEntryRegister, u32)> =
        table.writes.iter().map(|(_, _, r, v)| (*r, *v)).collect();
    assert_eq!(
        writes,
        vec![
            (MsixEntryRegister::VectorControl, 1),
            (MsixEntryRegister::AddressLow, message.address as u32),
            (MsixEntryRegister::AddressHigh, 0),
            (MsixEntryRegister::Data, 0),
            (MsixEntryRegister::VectorControl, 0),
        ]
    );
    assert!(table
        .writes
        .iter()
        .all(|(bdf, entry, _, _)| *bdf == desktop::NIC && *entry == 2));
    assert_eq!(
        table.read_entry(desktop::NIC, 2, MsixEntryRegister::VectorControl),
        0
    );
    let control = config.read16(desktop::NIC, msix.offset + 2);
    assert_eq!(control & 0xc000, 0x8000, "enabled, function mask clear");
    assert_eq!(
        program_msix_entry(&mut config, &mut table, nic, 5, IrteHandle(9), None),
        Err(MsiError::EntryOutOfRange {
            entry: 5,
            table_size: 5
        })
    );
}
