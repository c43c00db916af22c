//! MSI-X: locating the table in a BAR, and programming an entry (mask sequence, MSI and INTx
//! off, refusals that write nothing).

use super::*;
use crate::fake::{desktop, q35, FakeFunction, FakeMsixTable};
use crate::msi::{
    clear_msix_table, irte_index, program_msi, program_msix_entry, IrteHandle, MsiError,
    MsixEntryRegister, MsixTable,
};
use crate::msix::{
    msix_pages, pba_location, table_location, MsixLocationError, MsixPbaLocation, MsixTableLocation,
};
use crate::registers::{header, msix, Command};
use crate::{ConfigSpace, HostPhys};
use pci_api::PciError;

/// An endpoint with a 4 KiB memory BAR0, an I/O BAR1, and MSI-X `entries` in BAR `bir` at
/// `offset`.
fn msix_device(entries: u16, bir: u8, offset: u32) -> FakeFunction {
    FakeFunction::endpoint(0x1234, 0x5678, 0x020000, 0)
        .command(0x0007)
        .memory_bar32(0, 0xfd00_0000, 4096, false)
        .io_bar(1, 0xc000, 32)
        .next_capability_at(0x40)
        .msix(entries, bir, offset, bir, 0x800)
}

/// Locates the table of `function` alone on bus 0 (one inventory at a time: they are big).
fn locate(function: FakeFunction) -> Result<MsixTableLocation, MsixLocationError> {
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), function);
    let inventory = enumerate(&mut config);
    table_location(inventory.get(b(0, 2, 0)).unwrap())
}

#[test]
fn the_table_is_found_in_its_bar() {
    let (_, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    assert_eq!(
        table_location(nic),
        Ok(MsixTableLocation {
            bdf: desktop::NIC,
            bar_index: 3,
            address: HostPhys(0xfba2_0000),
            bytes: 5 * 16,
            entries: 5,
        })
    );
    drop(inventory);
    let (_, inventory) = q35();
    let nvme = inventory.get(q35::NVME).unwrap();
    let location = table_location(nvme).unwrap();
    assert_eq!(location.bar_index, 0);
    assert_eq!(location.address, HostPhys(0xfe60_0000 + 0x2000));
    assert_eq!((location.entries, location.bytes), (65, 65 * 16));
}

#[test]
fn a_table_outside_a_memory_bar_is_refused() {
    assert_eq!(
        locate(crate::fake::edu()),
        Err(MsixLocationError::NoMsix(b(0, 2, 0)))
    );
    let error = locate(msix_device(4, 1, 0)).unwrap_err();
    assert_eq!(
        error,
        MsixLocationError::BarNotMemory {
            bdf: b(0, 2, 0),
            bar_index: 1
        }
    );
    assert_eq!(PciError::from(error), PciError::MsixTableUnavailable);
    assert!(matches!(
        locate(msix_device(4, 5, 0)),
        Err(MsixLocationError::BarNotMemory { bar_index: 5, .. })
    ));
    // 64 entries = 1 KiB at offset 0xc00 of a 4 KiB BAR: 0x400 bytes past its end.
    let error = locate(msix_device(64, 0, 0xc08)).unwrap_err();
    assert_eq!(
        error,
        MsixLocationError::TableOutsideBar {
            bdf: b(0, 2, 0),
            offset: 0xc08,
            bytes: 1024,
            bar_size: 4096
        }
    );
    assert!(format!("{error}").contains("does not fit"));
    // Exactly filling the BAR is fine.
    assert!(locate(msix_device(64, 0, 0xc00)).is_ok());
}

#[test]
fn programming_turns_msi_and_intx_off_and_unmasks_under_function_mask() {
    let (mut config, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    let msi = nic.capabilities.msi.unwrap();
    let msix_capability = nic.capabilities.msix.unwrap();
    program_msi(&mut config, nic, IrteHandle(3), 1).unwrap();
    assert_eq!(config.read16(desktop::NIC, msi.offset + 2) & 1, 1);
    config.clear_log();
    let mut table = FakeMsixTable::default();
    let message =
        program_msix_entry(&mut config, &mut table, nic, 4, IrteHandle(0x1234), None).unwrap();
    assert_eq!(irte_index(message, 0), 0x1234);
    assert_eq!(message.address, 0xfee0_0000 | (0x1234 << 5) | (1 << 4));
    assert_eq!(
        table.read_entry(desktop::NIC, 4, MsixEntryRegister::AddressLow),
        message.address as u32
    );
    assert_eq!(
        table.read_entry(desktop::NIC, 4, MsixEntryRegister::Data),
        0
    );
    assert_eq!(
        table.read_entry(desktop::NIC, 4, MsixEntryRegister::VectorControl),
        0,
        "unmasked"
    );
    // Other entries stay as reset left them: masked.
    assert_eq!(
        table.read_entry(desktop::NIC, 3, MsixEntryRegister::VectorControl),
        1
    );
    assert_eq!(
        config.read16(desktop::NIC, msi.offset + 2) & 1,
        0,
        "MSI off"
    );
    let command = Command::from_bits_retain(config.read16(desktop::NIC, header::COMMAND));
    assert!(command.contains(Command::INTX_DISABLE | Command::MEMORY_SPACE));
    let control_offset = msix_capability.offset + msix::CONTROL;
    let control_writes: Vec<u32> = config
        .writes()
        .iter()
        .filter(|(bdf, offset, _, _)| *bdf == desktop::NIC && *offset == control_offset)
        .map(|(_, _, _, value)| *value)
        .collect();
    let masked_enable = u32::from(msix::ENABLE | msix::FUNCTION_MASK);
    assert_eq!(
        control_writes.first().map(|value| value & masked_enable),
        Some(masked_enable),
        "enabled under Function Mask first"
    );
    assert_eq!(
        control_writes.last().map(|value| value & masked_enable),
        Some(u32::from(msix::ENABLE)),
        "Function Mask cleared last"
    );
    let control = config.read16(desktop::NIC, control_offset);
    assert_eq!(control & (msix::ENABLE | msix::FUNCTION_MASK), msix::ENABLE);
}

#[test]
fn a_subhandle_goes_in_the_data_and_sets_shv() {
    let (mut config, inventory) = q35();
    let nvme = inventory.get(q35::NVME).unwrap();
    let mut table = FakeMsixTable::default();
    let message =
        program_msix_entry(&mut config, &mut table, nvme, 64, IrteHandle(10), Some(3)).unwrap();
    assert_ne!(message.address & (1 << 3), 0);
    assert_eq!(table.read_entry(q35::NVME, 64, MsixEntryRegister::Data), 3);
    assert_eq!(irte_index(message, 0), 13);
}

#[test]
fn refusals_write_nothing() {
    let (mut config, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    let mut table = FakeMsixTable::default();
    config.clear_log();
    assert_eq!(
        program_msix_entry(&mut config, &mut table, nic, 5, IrteHandle(1), None),
        Err(MsiError::EntryOutOfRange {
            entry: 5,
            table_size: 5
        })
    );
    assert_eq!(
        program_msix_entry(&mut config, &mut table, nic, u16::MAX, IrteHandle(1), None),
        Err(MsiError::EntryOutOfRange {
            entry: u16::MAX,
            table_size: 5
        })
    );
    let ehci = inventory.get(desktop::EHCI).unwrap();
    assert_eq!(
        program_msix_entry(&mut config, &mut table, ehci, 0, IrteHandle(1), None),
        Err(MsiError::NoMsix(desktop::EHCI))
    );
    assert!(config.writes().is_empty());
    assert!(table.writes.is_empty());
    // Memory decoding off: the table would not answer.
    config.write16(desktop::NIC, header::COMMAND, 0x0004);
    config.clear_log();
    let error = program_msix_entry(&mut config, &mut table, nic, 0, IrteHandle(1), None);
    assert_eq!(error, Err(MsiError::MemoryDecodingDisabled(desktop::NIC)));
    assert_eq!(
        PciError::from(MsiError::MemoryDecodingDisabled(desktop::NIC)),
        PciError::MemoryDecodingDisabled
    );
    assert!(config.writes().is_empty());
    assert!(table.writes.is_empty());
}

#[test]
fn clearing_masks_every_entry_zeroes_it_and_disables_msix() {
    let (mut config, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    let capability = nic.capabilities.msix.unwrap();
    let mut table = FakeMsixTable::default();
    for entry in [0, 4] {
        program_msix_entry(&mut config, &mut table, nic, entry, IrteHandle(9), Some(2)).unwrap();
    }
    // The owner turned memory decoding off before letting go: it is turned on for the
    // writes and put back, and bus mastering stays off.
    config.write16(desktop::NIC, header::COMMAND, 0x0400);
    config.clear_log();
    assert_eq!(clear_msix_table(&mut config, &mut table, nic), Ok(5));
    for entry in 0..5 {
        assert_eq!(
            table.read_entry(desktop::NIC, entry, MsixEntryRegister::VectorControl),
            1,
            "entry {entry} masked"
        );
        for register in [
            MsixEntryRegister::AddressLow,
            MsixEntryRegister::AddressHigh,
            MsixEntryRegister::Data,
        ] {
            assert_eq!(table.read_entry(desktop::NIC, entry, register), 0);
        }
    }
    let control = config.read16(desktop::NIC, capability.offset + msix::CONTROL);
    assert_eq!(
        control & (msix::ENABLE | msix::FUNCTION_MASK),
        msix::FUNCTION_MASK
    );
    assert_eq!(config.read16(desktop::NIC, header::COMMAND), 0x0400);
    let commands: Vec<u32> = config
        .writes()
        .iter()
        .filter(|(bdf, offset, _, _)| *bdf == desktop::NIC && *offset == header::COMMAND)
        .map(|(_, _, _, value)| *value)
        .collect();
    assert!(
        commands.iter().all(|value| value & 0x4 == 0),
        "{commands:x?}"
    );
    assert!(
        commands.iter().any(|value| value & 0x2 != 0),
        "decoding on for the writes"
    );
    // Each entry is masked before its address changes.
    let first = table
        .writes
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(|(_, entry, register, _)| (*entry, *register))
        .next();
    assert_eq!(first, Some((0, MsixEntryRegister::VectorControl)));
    // No MSI-X: nothing written.
    let ehci = inventory.get(desktop::EHCI).unwrap();
    config.clear_log();
    let before = table.writes.len();
    assert_eq!(
        clear_msix_table(&mut config, &mut table, ehci),
        Err(MsiError::NoMsix(desktop::EHCI))
    );
    assert!(config.writes().is_empty());
    assert_eq!(table.writes.len(), before);
}

#[test]
fn the_pba_and_the_pages_of_both_structures_are_found() {
    let (_, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    assert_eq!(
        pba_location(nic),
        Ok(MsixPbaLocation {
            bar_index: 3,
            address: HostPhys(0xfba2_2000),
            bytes: 8,
        })
    );
    // Table page and PBA page apart; no MSI-X page in BAR0.
    assert_eq!(
        msix_pages(nic, 3).as_slice(),
        &[(0xfba2_0000, 0xfba2_1000), (0xfba2_2000, 0xfba2_3000)]
    );
    assert!(msix_pages(nic, 0).is_empty());
    drop(inventory);
    let (_, inventory) = q35();
    let nvme = inventory.get(q35::NVME).unwrap();
    // 65 entries: two QWORDs of pending bits; table and PBA pages touch and merge.
    assert_eq!(pba_location(nvme).unwrap().bytes, 16);
    assert_eq!(
        msix_pages(nvme, 0).as_slice(),
        &[(0xfe60_2000, 0xfe60_4000)]
    );
    drop(inventory);
    // A PBA past the end of its BAR, or in an I/O BAR, is not located (and holds no page).
    let outside = FakeFunction::endpoint(0x1234, 0x5678, 0x020000, 0)
        .command(0x0007)
        .memory_bar32(0, 0xfd00_0000, 4096, false)
        .io_bar(1, 0xc000, 32)
        .next_capability_at(0x40)
        .msix(4, 0, 0, 0, 0x1000);
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), outside);
    let inventory = enumerate(&mut config);
    let function = inventory.get(b(0, 2, 0)).unwrap();
    assert!(matches!(
        pba_location(function),
        Err(MsixLocationError::TableOutsideBar { .. })
    ));
    assert_eq!(
        msix_pages(function, 0).as_slice(),
        &[(0xfd00_0000, 0xfd00_1000)]
    );
    drop(inventory);
    let in_io = FakeFunction::endpoint(0x1234, 0x5678, 0x020000, 0)
        .command(0x0007)
        .memory_bar32(0, 0xfd00_0000, 4096, false)
        .io_bar(1, 0xc000, 32)
        .next_capability_at(0x40)
        .msix(4, 0, 0, 1, 0);
    let mut config = FakeConfigSpace::new().with(b(0, 2, 0), in_io);
    let inventory = enumerate(&mut config);
    let function = inventory.get(b(0, 2, 0)).unwrap();
    assert_eq!(
        pba_location(function),
        Err(MsixLocationError::BarNotMemory {
            bdf: b(0, 2, 0),
            bar_index: 1
        })
    );
}
