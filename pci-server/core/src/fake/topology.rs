//! Whole-machine fakes: a q35 topology like the one the QEMU acceptance run starts, and a
//! desktop host shaped like the machines in the user reports (GPU + HDMI audio, 82574L NICs,
//! conventional PCI behind bridges, chipset USB).

use super::devices::*;
use super::space::FakeConfigSpace;
use crate::ecam::{EcamRegion, HostPhys};
use crate::Bdf;

const fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::from_bus_devfn(bus, (device << 3) | function)
}

/// The MCFG entry QEMU's q35 reports: ECAM at 0xb0000000, segment 0, buses 0-255.
pub fn q35_ecam() -> EcamRegion {
    #[allow(clippy::expect_used)]
    EcamRegion::new(HostPhys(0xb000_0000), 0, 0, 255).expect("constant, valid MCFG entry")
}

/// BDFs of the q35 topology built by [`q35_topology`].
pub mod q35 {
    use super::bdf;
    use crate::Bdf;

    /// Host bridge.
    pub const HOST_BRIDGE: Bdf = bdf(0, 0, 0);
    /// `-device pcie-root-port,id=rp1,bus=pcie.0,addr=1.0` (ACS).
    pub const ROOT_PORT_NVME: Bdf = bdf(0, 1, 0);
    /// `-device nvme,bus=rp1,sriov_max_vfs=4,...`.
    pub const NVME: Bdf = bdf(1, 0, 0);
    /// Root port holding the switch.
    pub const ROOT_PORT_SWITCH: Bdf = bdf(0, 2, 0);
    /// `-device x3130-upstream`.
    pub const SWITCH_UPSTREAM: Bdf = bdf(2, 0, 0);
    /// `-device xio3130-downstream,chassis=..,slot=0`.
    pub const SWITCH_DOWNSTREAM_0: Bdf = bdf(3, 0, 0);
    /// `-device xio3130-downstream,chassis=..,slot=1`.
    pub const SWITCH_DOWNSTREAM_1: Bdf = bdf(3, 1, 0);
    /// e1000e below downstream port 0.
    pub const SWITCH_E1000E: Bdf = bdf(4, 0, 0);
    /// ich9-intel-hda below downstream port 1.
    pub const SWITCH_HDA: Bdf = bdf(5, 0, 0);
    /// Root port holding the pcie-pci-bridge.
    pub const ROOT_PORT_BRIDGE: Bdf = bdf(0, 3, 0);
    /// `-device pcie-pci-bridge`.
    pub const PCIE_PCI_BRIDGE: Bdf = bdf(6, 0, 0);
    /// Conventional e1000 behind the bridge (slot 1).
    pub const CONVENTIONAL_E1000: Bdf = bdf(7, 1, 0);
    /// Conventional rtl8139 behind the bridge (slot 2).
    pub const CONVENTIONAL_RTL8139: Bdf = bdf(7, 2, 0);
    /// Root port holding the multi-function slot.
    pub const ROOT_PORT_MULTI: Bdf = bdf(0, 4, 0);
    /// `-device e1000e,addr=0.0,multifunction=on`.
    pub const MULTI_FUNCTION_0: Bdf = bdf(8, 0, 0);
    /// `-device ich9-intel-hda,addr=0.1`.
    pub const MULTI_FUNCTION_1: Bdf = bdf(8, 0, 1);
    /// Root port holding `edu`.
    pub const ROOT_PORT_EDU: Bdf = bdf(0, 5, 0);
    /// `-device edu`.
    pub const EDU: Bdf = bdf(9, 0, 0);
    /// ICH9 LPC.
    pub const LPC: Bdf = bdf(0, 0x1f, 0);
    /// ICH9 AHCI.
    pub const AHCI: Bdf = bdf(0, 0x1f, 2);
    /// ICH9 SMBus.
    pub const SMBUS: Bdf = bdf(0, 0x1f, 3);
}

/// A q35 machine like
/// `qemu-system-x86_64 -machine q35 -device intel-iommu,intremap=on -nic none
///  -device pcie-root-port,id=rp1,addr=1.0 -device nvme-subsys,id=s -device nvme,bus=rp1,subsys=s,sriov_max_vfs=4,...
///  -device pcie-root-port,id=rp2,addr=2.0 -device x3130-upstream,id=up,bus=rp2
///  -device xio3130-downstream,id=dn0,bus=up,chassis=1,slot=0 -device e1000e,bus=dn0
///  -device xio3130-downstream,id=dn1,bus=up,chassis=1,slot=1 -device ich9-intel-hda,bus=dn1
///  -device pcie-root-port,id=rp3,addr=3.0 -device pcie-pci-bridge,id=br,bus=rp3
///  -device e1000,bus=br,addr=1.0 -device rtl8139,bus=br,addr=2.0
///  -device pcie-root-port,id=rp4,addr=4.0 -device e1000e,bus=rp4,addr=0.0,multifunction=on
///  -device ich9-intel-hda,bus=rp4,addr=0.1 -device pcie-root-port,id=rp5,addr=5.0 -device edu,bus=rp5`,
/// with bus numbers as SeaBIOS assigns them. The switch's downstream ports have no ACS.
pub fn q35_topology() -> FakeConfigSpace {
    FakeConfigSpace::new()
        .with(q35::HOST_BRIDGE, q35_host_bridge())
        .with(q35::ROOT_PORT_NVME, root_port(0, 1, 1, true))
        .with(q35::NVME, nvme_with_sriov(4))
        .with(q35::ROOT_PORT_SWITCH, root_port(0, 2, 5, true))
        .with(q35::SWITCH_UPSTREAM, switch_upstream(2, 3, 5))
        .with(q35::SWITCH_DOWNSTREAM_0, switch_downstream(3, 4, 4, false))
        .with(q35::SWITCH_DOWNSTREAM_1, switch_downstream(3, 5, 5, false))
        .with(q35::SWITCH_E1000E, e1000e())
        .with(q35::SWITCH_HDA, ich9_intel_hda())
        .with(q35::ROOT_PORT_BRIDGE, root_port(0, 6, 7, true))
        .with(q35::PCIE_PCI_BRIDGE, pcie_to_pci_bridge(6, 7, 7))
        .with(q35::CONVENTIONAL_E1000, conventional_e1000())
        .with(q35::CONVENTIONAL_RTL8139, conventional_rtl8139())
        .with(q35::ROOT_PORT_MULTI, root_port(0, 8, 8, true))
        .with(q35::MULTI_FUNCTION_0, e1000e().multi_function())
        .with(q35::MULTI_FUNCTION_1, ich9_intel_hda().multi_function())
        .with(q35::ROOT_PORT_EDU, root_port(0, 9, 9, true))
        .with(q35::EDU, edu())
        .with(q35::LPC, ich9_lpc())
        .with(q35::AHCI, ich9_ahci())
        .with(q35::SMBUS, ich9_smbus())
}

/// BDFs of the desktop host built by [`desktop_topology`].
pub mod desktop {
    use super::bdf;
    use crate::Bdf;

    /// Host bridge.
    pub const HOST_BRIDGE: Bdf = bdf(0, 0, 0);
    /// CPU PCIe root port for the GPU (with ACS).
    pub const GPU_ROOT_PORT: Bdf = bdf(0, 1, 0);
    /// GPU, function 0.
    pub const GPU: Bdf = bdf(1, 0, 0);
    /// GPU HDMI audio, function 1.
    pub const GPU_AUDIO: Bdf = bdf(1, 0, 1);
    /// Root port with ACS for the first 82574L.
    pub const NIC_ROOT_PORT: Bdf = bdf(0, 2, 0);
    /// 82574L alone behind an ACS root port.
    pub const NIC: Bdf = bdf(2, 0, 0);
    /// PCH root port 00:1c.0 (no ACS, multi-function).
    pub const PCH_PORT_0: Bdf = bdf(0, 0x1c, 0);
    /// PCH root port 00:1c.1 (no ACS).
    pub const PCH_PORT_1: Bdf = bdf(0, 0x1c, 1);
    /// Second 82574L behind PCH port 0.
    pub const PCH_NIC: Bdf = bdf(3, 0, 0);
    /// ASM1042 xHCI behind PCH port 1.
    pub const XHCI: Bdf = bdf(4, 0, 0);
    /// Chipset EHCI (has an RMRR).
    pub const EHCI: Bdf = bdf(0, 0x1d, 0);
    /// Root port with ACS above the PCIe-to-PCI bridge.
    pub const BRIDGE_ROOT_PORT: Bdf = bdf(0, 6, 0);
    /// PCIe-to-PCI bridge.
    pub const PCIE_PCI_BRIDGE: Bdf = bdf(5, 0, 0);
    /// Conventional e1000 behind it.
    pub const CONVENTIONAL_E1000: Bdf = bdf(6, 1, 0);
    /// Conventional rtl8139 behind it.
    pub const CONVENTIONAL_RTL8139: Bdf = bdf(6, 2, 0);
}

/// A desktop like the reports' machines: GPU with HDMI audio behind a CPU root port, an
/// 82574L alone behind an ACS root port, a second 82574L and an ASM1042 behind ACS-less PCH
/// root ports, the chipset EHCI on bus 0, and two conventional PCI devices behind a
/// PCIe-to-PCI bridge.
pub fn desktop_topology() -> FakeConfigSpace {
    FakeConfigSpace::new()
        .with(desktop::HOST_BRIDGE, q35_host_bridge())
        .with(desktop::GPU_ROOT_PORT, root_port(0, 1, 1, true))
        .with(desktop::GPU, gpu_function0())
        .with(desktop::GPU_AUDIO, gpu_audio_function1())
        .with(desktop::NIC_ROOT_PORT, root_port(0, 2, 2, true))
        .with(desktop::NIC, nic_82574l(0x0025_90ff_ff12_3456))
        .with(desktop::PCH_PORT_0, pch_root_port_without_acs(0, 3, 3))
        .with(desktop::PCH_PORT_1, pch_root_port_without_acs(0, 4, 4))
        .with(desktop::PCH_NIC, nic_82574l(0x0025_90ff_ff12_3457))
        .with(desktop::XHCI, usb_xhci_asm1042())
        .with(desktop::EHCI, usb_ehci_6_series())
        .with(desktop::BRIDGE_ROOT_PORT, root_port(0, 5, 6, true))
        .with(desktop::PCIE_PCI_BRIDGE, pcie_to_pci_bridge(5, 6, 6))
        .with(desktop::CONVENTIONAL_E1000, conventional_e1000())
        .with(desktop::CONVENTIONAL_RTL8139, conventional_rtl8139())
}
