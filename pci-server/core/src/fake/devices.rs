//! Device builders shaped like real hardware: IDs, class codes, BAR layouts and capability
//! chains follow `lspci -vvv -xxx` of the real devices (or QEMU's device models for the QEMU
//! ones). Addresses are what firmware typically assigns.

use super::function::{FakeFunction, FakeSriov};

/// ACS capability bits QEMU's ports implement: SV, TB, RR, CR, UF, DT (PCIe Base spec 6.0
/// section 7.7.11.2).
pub const ACS_QEMU_PORT: u16 = 0x005f;

/// PCIe port type field values (PCIe Base spec 6.0 section 7.5.3.2).
pub mod port_type {
    /// Endpoint.
    pub const ENDPOINT: u8 = 0x0;
    /// Legacy endpoint.
    pub const LEGACY_ENDPOINT: u8 = 0x1;
    /// Root port.
    pub const ROOT_PORT: u8 = 0x4;
    /// Switch upstream port.
    pub const SWITCH_UPSTREAM: u8 = 0x5;
    /// Switch downstream port.
    pub const SWITCH_DOWNSTREAM: u8 = 0x6;
    /// PCIe-to-PCI bridge.
    pub const PCIE_TO_PCI_BRIDGE: u8 = 0x7;
    /// Root complex integrated endpoint.
    pub const RC_INTEGRATED_ENDPOINT: u8 = 0x9;
}

/// NVIDIA GP104 [GeForce GTX 1080] function 0 (10de:1b80): legacy endpoint, multi-function
/// with the HDMI audio at function 1, FLR capable, BAR0 16 MiB, BAR1 256 MiB 64-bit
/// prefetchable, BAR3 32 MiB 64-bit prefetchable, BAR5 128 I/O ports, 512 KiB ROM; PM at
/// 0x60, MSI at 0x68, PCIe at 0x78, vendor-specific at 0xb4; no ACS.
pub fn gpu_function0() -> FakeFunction {
    FakeFunction::endpoint(0x10de, 0x1b80, 0x030000, 0xa1)
        .multi_function()
        .subsystem(0x1043, 0x8591)
        .command(0x0007)
        .memory_bar32(0, 0xf600_0000, 16 << 20, false)
        .memory_bar64(1, 0xe000_0000, 256 << 20, true)
        .memory_bar64(3, 0xf000_0000, 32 << 20, true)
        .io_bar(5, 0xe000, 128)
        .expansion_rom(0xf700_0000, 512 << 10)
        .next_capability_at(0x60)
        .power_management(false)
        .next_capability_at(0x68)
        .msi(0, true, false)
        .next_capability_at(0x78)
        .pcie(port_type::LEGACY_ENDPOINT, true)
        .next_capability_at(0xb4)
        .vendor_specific(0x14)
        .vendor_specific_extended(0x18)
        .aer()
}

/// NVIDIA GP104 High Definition Audio Controller, function 1 (10de:10f0): endpoint, no FLR,
/// PM with No_Soft_Reset set (so no PM reset either), MSI, BAR0 16 KiB.
pub fn gpu_audio_function1() -> FakeFunction {
    FakeFunction::endpoint(0x10de, 0x10f0, 0x040300, 0xa1)
        .multi_function()
        .subsystem(0x1043, 0x8591)
        .command(0x0006)
        .memory_bar32(0, 0xf708_0000, 16 << 10, false)
        .next_capability_at(0x60)
        .power_management(true)
        .next_capability_at(0x68)
        .msi(0, true, false)
        .next_capability_at(0x78)
        .pcie(port_type::ENDPOINT, false)
}

/// Intel 82574L Gigabit Network Connection (8086:10d3): no FLR, PM at 0xc8 with
/// No_Soft_Reset clear, MSI at 0xd0, PCIe at 0xe0, MSI-X at 0xa0 (5 vectors, table BAR3
/// offset 0, PBA BAR3 offset 0x2000); BAR0 128 KiB, BAR1 512 KiB (flash), BAR2 32 I/O ports,
/// BAR3 16 KiB; AER and DSN.
pub fn nic_82574l(serial: u64) -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x10d3, 0x020000, 0x00)
        .subsystem(0x8086, 0xa01f)
        .command(0x0007)
        .memory_bar32(0, 0xfba0_0000, 128 << 10, false)
        .memory_bar32(1, 0xfb80_0000, 512 << 10, false)
        .io_bar(2, 0xd000, 32)
        .memory_bar32(3, 0xfba2_0000, 16 << 10, false)
        .next_capability_at(0xc8)
        .power_management(false)
        .next_capability_at(0xd0)
        .msi(0, true, false)
        .next_capability_at(0xe0)
        .pcie(port_type::ENDPOINT, false)
        .next_capability_at(0xa0)
        .msix(5, 3, 0, 3, 0x2000)
        .aer()
        .serial_number(serial)
}

/// QEMU's `pcie-pci-bridge` (1b36:000e): a PCIe-to-PCI bridge with a 256-byte 64-bit BAR0,
/// PCIe capability of type PCIe-to-PCI bridge, MSI and SHPC; no ACS (never applicable).
pub fn pcie_to_pci_bridge(primary: u8, secondary: u8, subordinate: u8) -> FakeFunction {
    let mut bridge = FakeFunction::bridge(0x1b36, 0x000e, primary, secondary, subordinate)
        .memory_bar64(0, 0xfe80_0000, 256, false)
        .pcie(port_type::PCIE_TO_PCI_BRIDGE, false)
        .msi(0, true, true);
    bridge.add_capability(crate::registers::capability_id::SHPC, 8);
    bridge.aer()
}

/// A conventional PCI bridge without a PCIe capability (QEMU `pci-bridge`, 1b36:0001).
pub fn conventional_pci_bridge(primary: u8, secondary: u8, subordinate: u8) -> FakeFunction {
    FakeFunction::bridge(0x1b36, 0x0001, primary, secondary, subordinate)
        .memory_bar64(0, 0xfe90_0000, 256, false)
        .msi(0, true, true)
}

/// Intel 82540EM Gigabit Ethernet (8086:100e), conventional PCI: BAR0 128 KiB, BAR1 64 I/O
/// ports, 256 KiB ROM, PM at 0xdc with No_Soft_Reset set (conventional devices often reset
/// nothing on D3hot->D0).
pub fn conventional_e1000() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x100e, 0x020000, 0x03)
        .command(0x0007)
        .memory_bar32(0, 0xfe40_0000, 128 << 10, false)
        .io_bar(1, 0xc000, 64)
        .expansion_rom(0xfe48_0000, 256 << 10)
        .next_capability_at(0xdc)
        .power_management(true)
        .raw(0x3d, &[1])
}

/// Realtek RTL-8100/8101L/8139 (10ec:8139), conventional PCI with no capabilities at all:
/// BAR0 256 I/O ports, BAR1 256 bytes of memory.
pub fn conventional_rtl8139() -> FakeFunction {
    FakeFunction::endpoint(0x10ec, 0x8139, 0x020000, 0x20)
        .command(0x0007)
        .io_bar(0, 0xc100, 256)
        .memory_bar32(1, 0xfe4a_0000, 256, false)
}

/// Intel 6 Series/C200 Series Chipset Family USB Enhanced Host Controller (8086:1c26) at
/// 00:1d.0: BAR0 1 KiB, PM at 0x50 (No_Soft_Reset set), debug port at 0x58, Advanced
/// Features at 0x98 with FLR and TP. The firmware reserves an RMRR for it (legacy USB
/// keyboard emulation), which the iommu-server honours.
pub fn usb_ehci_6_series() -> FakeFunction {
    let mut function = FakeFunction::endpoint(0x8086, 0x1c26, 0x0c0320, 0x05)
        .subsystem(0x1043, 0x844d)
        .command(0x0006)
        .memory_bar32(0, 0xfbb0_8000, 1 << 10, false)
        .next_capability_at(0x50)
        .power_management(true)
        .next_capability_at(0x58);
    let debug = function.add_capability(crate::registers::capability_id::DEBUG_PORT, 4);
    function.put16(debug + 2, 0x20a0);
    function.next_capability_at(0x98).advanced_features(true)
}

/// ASMedia ASM1042 SuperSpeed USB Host Controller (1b21:1042): BAR0 32 KiB 64-bit, PM at
/// 0x50 (No_Soft_Reset clear), MSI at 0x68, PCIe legacy endpoint at 0x80 without FLR.
pub fn usb_xhci_asm1042() -> FakeFunction {
    FakeFunction::endpoint(0x1b21, 0x1042, 0x0c0330, 0x00)
        .command(0x0006)
        .memory_bar64(0, 0xfb50_0000, 32 << 10, false)
        .next_capability_at(0x50)
        .power_management(false)
        .next_capability_at(0x68)
        .msi(3, true, false)
        .next_capability_at(0x80)
        .pcie(port_type::LEGACY_ENDPOINT, false)
}

/// QEMU's `pcie-root-port` (1b36:000c): PCIe root port with slot, MSI, PM, AER and (unless
/// `acs` is false, as with `disable-acs=on`) ACS with SV TB RR CR UF DT, control clear as
/// firmware leaves it.
pub fn root_port(primary: u8, secondary: u8, subordinate: u8, acs: bool) -> FakeFunction {
    let port = FakeFunction::bridge(0x1b36, 0x000c, primary, secondary, subordinate)
        .command(0x0107)
        .pcie(port_type::ROOT_PORT, false)
        .msix(1, 0, 0, 0, 0x800)
        .power_management(true)
        .aer();
    if acs {
        port.acs(ACS_QEMU_PORT, 0)
    } else {
        port
    }
}

/// An Intel PCH root port without ACS (8086:1c10, 6 Series), multi-function at 00:1c.x as
/// consumer boards have them.
pub fn pch_root_port_without_acs(primary: u8, secondary: u8, subordinate: u8) -> FakeFunction {
    FakeFunction::bridge(0x8086, 0x1c10, primary, secondary, subordinate)
        .multi_function()
        .command(0x0107)
        .next_capability_at(0x40)
        .pcie(port_type::ROOT_PORT, false)
        .msi(0, false, false)
        .power_management(true)
}

/// QEMU's `x3130-upstream` switch upstream port (104c:8232).
pub fn switch_upstream(primary: u8, secondary: u8, subordinate: u8) -> FakeFunction {
    FakeFunction::bridge(0x104c, 0x8232, primary, secondary, subordinate)
        .command(0x0107)
        .pcie(port_type::SWITCH_UPSTREAM, false)
        .msi(0, true, true)
        .power_management(true)
        .aer()
}

/// QEMU's `xio3130-downstream` switch downstream port (104c:8233), with or without ACS.
pub fn switch_downstream(primary: u8, secondary: u8, subordinate: u8, acs: bool) -> FakeFunction {
    let port = FakeFunction::bridge(0x104c, 0x8233, primary, secondary, subordinate)
        .command(0x0107)
        .pcie(port_type::SWITCH_DOWNSTREAM, false)
        .msi(0, true, true)
        .power_management(true)
        .aer();
    if acs {
        port.acs(ACS_QEMU_PORT, 0)
    } else {
        port
    }
}

/// A QEMU nvme virtual function: endpoint with FLR, MSI-X, ARI; VFs read 0xffff as IDs.
pub fn nvme_virtual_function() -> FakeFunction {
    let mut function = FakeFunction::endpoint(0xffff, 0xffff, 0x010802, 0x02)
        .pcie(port_type::ENDPOINT, true)
        .msix(2, 0, 0x2000, 0, 0x3000)
        .ari(0);
    // VF BARs read zero (they are in the PF's SR-IOV capability).
    function.put32(0x10, 0);
    function
}

/// QEMU's nvme controller (1b36:0010) with `sriov_max_vfs`: BAR0 16 KiB 64-bit, MSI-X with
/// 65 vectors in BAR0 (table 0x2000, PBA 0x3000), PM, PCIe endpoint with FLR; ARI and SR-IOV
/// (First VF Offset 1, VF Stride 1, VF device ID 0x0010, VF BAR0 16 KiB).
pub fn nvme_with_sriov(total_vfs: u16) -> FakeFunction {
    FakeFunction::endpoint(0x1b36, 0x0010, 0x010802, 0x02)
        .subsystem(0x1af4, 0x1100)
        .command(0x0006)
        .memory_bar64(0, 0xfe60_0000, 16 << 10, false)
        .next_capability_at(0x40)
        .power_management(false)
        .msix(65, 0, 0x2000, 0, 0x3000)
        .pcie(port_type::ENDPOINT, true)
        .ari(0)
        .sriov(
            FakeSriov {
                total_vfs,
                first_offset: 1,
                stride: 1,
                vf_device_id: 0x0010,
                vf_bar_address: 0x8_0000_0000,
                vf_bar_size: 16 << 10,
            },
            nvme_virtual_function(),
        )
}

/// QEMU's `edu` device (1234:11e8, revision 0x10, class 00ff): conventional PCI, BAR0 1 MiB
/// non-prefetchable MMIO, one MSI capability (64-bit, one vector), nothing else.
pub fn edu() -> FakeFunction {
    FakeFunction::endpoint(0x1234, 0x11e8, 0x00ff00, 0x10)
        .subsystem(0x1af4, 0x1100)
        .command(0x0002)
        .memory_bar32(0, 0xfea0_0000, 1 << 20, false)
        .msi(0, true, false)
        // QEMU's edu.c: Interrupt Pin 1 (INTA), raised when MSI is off.
        .raw(0x3d, &[1])
}

/// QEMU's `e1000e` (8086:10d3, the 82574L model): like [`nic_82574l`].
pub fn e1000e() -> FakeFunction {
    nic_82574l(0x0000_5254_0012_3456)
}

/// QEMU's `ich9-intel-hda` (8086:293e), conventional: BAR0 16 KiB, MSI.
pub fn ich9_intel_hda() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x293e, 0x040300, 0x03)
        .memory_bar32(0, 0xfe70_0000, 16 << 10, false)
        .msi(0, true, false)
}

/// q35 host bridge (8086:29c0).
pub fn q35_host_bridge() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x29c0, 0x060000, 0x00)
}

/// ICH9 LPC (8086:2918), function 0 of the multi-function 00:1f.
pub fn ich9_lpc() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x2918, 0x060100, 0x02).multi_function()
}

/// ICH9 AHCI (8086:2922), 00:1f.2.
pub fn ich9_ahci() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x2922, 0x010601, 0x02)
        .multi_function()
        .io_bar(4, 0xc0c0, 32)
        .memory_bar32(5, 0xfebd_5000, 4 << 10, false)
        .msi(0, true, false)
}

/// ICH9 SMBus (8086:2930), 00:1f.3.
pub fn ich9_smbus() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x2930, 0x0c0500, 0x02)
        .multi_function()
        .io_bar(4, 0x0700, 64)
}
