//! Enumeration, BAR sizing and capability decoding against the device fakes.

use super::*;
use crate::bar::BarKind;
use crate::capability::{AcsFlags, PortType};
use crate::fake::{desktop, q35};
use crate::listing::Listing;
use crate::registers::header;
use crate::{AccessWidth, ConfigSpace, HeaderKind};

#[test]
fn q35_enumerates_every_function_without_errors() {
    let (config, inventory) = q35();
    assert!(inventory.errors().is_empty(), "{:?}", inventory.errors());
    let mut expected = config.bdfs();
    expected.sort();
    let found: Vec<Bdf> = inventory.functions().iter().map(|f| f.bdf).collect();
    assert_eq!(found, expected);
    assert_eq!(inventory.functions().len(), 21);
}

#[test]
fn q35_parents_follow_the_bridges() {
    let (_, inventory) = q35();
    let edu = inventory.get(q35::EDU).unwrap();
    assert_eq!(edu.parent, Some(q35::ROOT_PORT_EDU));
    assert_eq!(
        inventory.upstream_path(q35::SWITCH_HDA).as_slice(),
        &[
            q35::SWITCH_DOWNSTREAM_1,
            q35::SWITCH_UPSTREAM,
            q35::ROOT_PORT_SWITCH
        ]
    );
    assert!(inventory.upstream_path(q35::LPC).is_empty());
    let bridge = inventory.get(q35::PCIE_PCI_BRIDGE).unwrap();
    assert_eq!(bridge.header, HeaderKind::Bridge);
    let numbers = bridge.bus_numbers.unwrap();
    assert_eq!(
        (numbers.primary, numbers.secondary, numbers.subordinate),
        (6, 7, 7)
    );
}

#[test]
fn gpu_bars_are_sized_like_the_real_card() {
    let (_, inventory) = desktop();
    let gpu = inventory.get(desktop::GPU).unwrap();
    let bars: Vec<(u8, BarKind, bool, u64, u64)> = gpu
        .bars
        .bars
        .iter()
        .map(|bar| (bar.index, bar.kind, bar.prefetchable, bar.address, bar.size))
        .collect();
    assert_eq!(
        bars,
        vec![
            (0, BarKind::Memory32, false, 0xf600_0000, 16 << 20),
            (1, BarKind::Memory64, true, 0xe000_0000, 256 << 20),
            (3, BarKind::Memory64, true, 0xf000_0000, 32 << 20),
            (5, BarKind::Io, false, 0xe000, 128),
        ]
    );
    let rom = gpu.bars.rom.unwrap();
    assert_eq!((rom.address, rom.size), (0xf700_0000, 512 << 10));
    assert!(gpu.bars.issues.is_empty());
    assert!(gpu.multi_function);
    assert_eq!(gpu.class.name(), "VGA compatible controller");
}

#[test]
fn sizing_disables_decode_and_restores_every_register() {
    let mut config = desktop_topology();
    let before: Vec<u32> = (0..16)
        .map(|i| config.read32(desktop::GPU, i * 4))
        .collect();
    let _ = enumerate(&mut config);
    let after: Vec<u32> = (0..16)
        .map(|i| config.read32(desktop::GPU, i * 4))
        .collect();
    assert_eq!(before, after, "header restored after sizing");
    // Every all-ones write to a BAR happened while memory and I/O decode were off.
    let mut command = before[1] as u16;
    let mut sized = 0;
    for (bdf, offset, width, value) in config.writes() {
        if *bdf != desktop::GPU {
            continue;
        }
        if *offset == header::COMMAND && *width == AccessWidth::Word {
            command = *value as u16;
        }
        if (0x10..=0x30).contains(offset) && *value & 0xffff_f800 == 0xffff_f800 {
            assert_eq!(command & 0x3, 0, "decode on while sizing at {offset:#x}");
            sized += 1;
        }
    }
    assert!(sized >= 7, "BARs and ROM probed, got {sized}");
}

#[test]
fn nic_capabilities_are_decoded() {
    let (_, inventory) = desktop();
    let nic = inventory.get(desktop::NIC).unwrap();
    let caps = &nic.capabilities;
    let msix = caps.msix.unwrap();
    assert_eq!(
        (msix.table_size, msix.table_bir, msix.table_offset),
        (5, 3, 0)
    );
    assert_eq!((msix.pba_bir, msix.pba_offset), (3, 0x2000));
    let msi = caps.msi.unwrap();
    assert!(msi.address_64 && !msi.per_vector_mask);
    assert_eq!(msi.offset, 0xd0);
    let pm = caps.power_management.unwrap();
    assert_eq!(pm.offset, 0xc8);
    assert!(!pm.no_soft_reset);
    let pcie = caps.pcie.unwrap();
    assert_eq!(
        (pcie.offset, pcie.version, pcie.port_type, pcie.flr),
        (0xe0, 1, PortType::Endpoint, false)
    );
    assert_eq!(caps.serial_number, Some(0x0025_90ff_ff12_3456));
    assert!(caps.aer.is_some());
    let order: Vec<u16> = caps.standard.iter().map(|c| c.offset).collect();
    assert_eq!(order, vec![0xc8, 0xd0, 0xe0, 0xa0]);
    assert!(caps.issues.is_empty());
}

#[test]
fn acs_is_enabled_on_ports_that_have_it() {
    let (config, inventory) = q35();
    let port = inventory.get(q35::ROOT_PORT_EDU).unwrap();
    let acs = port.capabilities.acs.unwrap();
    assert!(acs.control.contains(AcsFlags::ISOLATION));
    assert!(!acs.control.contains(AcsFlags::EGRESS_CONTROL));
    let control = config.read16(q35::ROOT_PORT_EDU, acs.offset + 6);
    assert_eq!(AcsFlags::from_bits_truncate(control), acs.control);
}

#[test]
fn edu_looks_like_qemus() {
    let (_, inventory) = q35();
    let edu = inventory.get(q35::EDU).unwrap();
    assert_eq!(
        (edu.vendor_id, edu.device_id, edu.revision),
        (0x1234, 0x11e8, 0x10)
    );
    assert_eq!(edu.class.to_u32(), 0x00ff00);
    assert_eq!(edu.bars.bars.len(), 1);
    assert_eq!(edu.bars.bars[0].size, 1 << 20);
    let msi = edu.capabilities.msi.unwrap();
    assert_eq!(msi.max_vectors(), 1);
    assert!(edu.capabilities.pcie.is_none());
    assert!(edu.capabilities.extended.is_empty());
}

#[test]
fn nvme_advertises_sriov_and_ari() {
    let (_, inventory) = q35();
    let nvme = inventory.get(q35::NVME).unwrap();
    let sriov = nvme.capabilities.sriov.unwrap();
    assert_eq!(
        (
            sriov.total_vfs,
            sriov.first_vf_offset,
            sriov.vf_stride,
            sriov.vf_device_id,
            sriov.vfs_enabled
        ),
        (4, 1, 1, 0x0010, false)
    );
    assert!(nvme.capabilities.ari.is_some());
    assert!(nvme.capabilities.pcie.unwrap().flr);
}

#[test]
fn listing_shows_what_passthrough_needs() {
    let (mut config, inventory) = desktop();
    let ownership = crate::ownership::Ownership::new(&mut config, &inventory);
    let text = format!(
        "{}",
        Listing {
            inventory: &inventory,
            ownership: Some(&ownership)
        }
    );
    assert!(
        text.contains("0000:01:00.0 10de:1b80 VGA compatible controller [0300] rev a1"),
        "{text}"
    );
    assert!(text.contains("BAR1: mem64 pref 0xe0000000 size 256M"));
    assert!(text.contains("ROM: 0xf7000000 size 512K"));
    assert!(text.contains("MSI-X(5 vec, table BAR3+0x0, PBA BAR3+0x2000)"));
    assert!(text.contains("reset: FLR, owner: unassigned"));
    assert!(text.contains("reset: PM D3hot->D0"));
    assert!(text.contains("reset: AF FLR"));
    assert!(text.contains("dma aliases: 06:00.0"));
    assert!(text.contains("ACS(SV+ RR+ CR+ UF+)"));
    let gpu_block = text.split("0000:01:00.1").next().unwrap();
    assert!(gpu_block.contains("iommu group: 6"));
}
