//! DMA aliases, IOMMU groups and reset-method choice on the seed shapes and the q35 topology.

use super::*;
use crate::alias::dma_aliases;
use crate::fake::{
    conventional_e1000, conventional_pci_bridge, conventional_rtl8139, desktop, q35, root_port,
    switch_downstream,
};
use crate::reset::{reset_method, ResetMethod};

fn same_group(inventory: &Inventory, a: Bdf, c: Bdf) -> bool {
    inventory.group_of(a).unwrap() == inventory.group_of(c).unwrap()
}

#[test]
fn gpu_and_its_hdmi_audio_share_a_group_and_nothing_else() {
    let (_, inventory) = desktop();
    assert!(same_group(&inventory, desktop::GPU, desktop::GPU_AUDIO));
    let group = inventory.group_of(desktop::GPU).unwrap();
    let members: Vec<Bdf> = inventory.group_members(group).map(|f| f.bdf).collect();
    assert_eq!(members, vec![desktop::GPU, desktop::GPU_AUDIO]);
    assert_eq!(reset_method(&inventory, desktop::GPU), ResetMethod::Flr);
    // The audio function has no FLR and No_Soft_Reset set; its bus holds only its group.
    assert_eq!(
        reset_method(&inventory, desktop::GPU_AUDIO),
        ResetMethod::SecondaryBusReset {
            bridge: desktop::GPU_ROOT_PORT
        }
    );
}

#[test]
fn nic_without_flr_uses_a_pm_reset_and_is_alone() {
    let (_, inventory) = desktop();
    assert_eq!(
        reset_method(&inventory, desktop::NIC),
        ResetMethod::PowerManagement
    );
    let group = inventory.group_of(desktop::NIC).unwrap();
    assert_eq!(inventory.group_members(group).count(), 1);
}

#[test]
fn conventional_devices_behind_a_pcie_to_pci_bridge_share_a_group_and_alias_to_it() {
    let (_, inventory) = desktop();
    for device in [desktop::CONVENTIONAL_E1000, desktop::CONVENTIONAL_RTL8139] {
        let aliases = dma_aliases(&inventory, device);
        let ids: Vec<Bdf> = aliases.iter().map(|a| a.requester_id).collect();
        assert_eq!(
            ids,
            vec![device, b(6, 0, 0)],
            "secondary bus, device 0 function 0"
        );
        assert_eq!(aliases[1].via, Some(desktop::PCIE_PCI_BRIDGE));
        assert!(same_group(&inventory, device, desktop::PCIE_PCI_BRIDGE));
        assert_eq!(
            reset_method(&inventory, device),
            ResetMethod::SecondaryBusReset {
                bridge: desktop::PCIE_PCI_BRIDGE
            }
        );
    }
    assert!(same_group(
        &inventory,
        desktop::CONVENTIONAL_E1000,
        desktop::CONVENTIONAL_RTL8139
    ));
    assert!(!same_group(
        &inventory,
        desktop::CONVENTIONAL_E1000,
        desktop::BRIDGE_ROOT_PORT
    ));
}

#[test]
fn a_conventional_pci_bridge_aliases_to_itself() {
    let mut config = FakeConfigSpace::new()
        .with(b(0, 1, 0), root_port(0, 1, 2, true))
        .with(b(1, 0, 0), conventional_pci_bridge(1, 2, 2))
        .with(b(2, 3, 0), conventional_e1000())
        .with(b(2, 4, 0), conventional_rtl8139());
    let inventory = enumerate(&mut config);
    let ids: Vec<Bdf> = dma_aliases(&inventory, b(2, 3, 0))
        .iter()
        .map(|a| a.requester_id)
        .collect();
    assert_eq!(ids, vec![b(2, 3, 0), b(1, 0, 0)]);
    assert!(same_group(&inventory, b(2, 3, 0), b(2, 4, 0)));
    assert!(same_group(&inventory, b(2, 3, 0), b(1, 0, 0)));
}

#[test]
fn chipset_usb_controller_uses_af_flr_and_is_alone() {
    let (_, inventory) = desktop();
    assert_eq!(
        reset_method(&inventory, desktop::EHCI),
        ResetMethod::AdvancedFeaturesFlr
    );
    let group = inventory.group_of(desktop::EHCI).unwrap();
    assert_eq!(inventory.group_members(group).count(), 1);
    assert_eq!(dma_aliases(&inventory, desktop::EHCI).len(), 1);
}

#[test]
fn devices_behind_acs_less_multi_function_root_ports_share_one_group() {
    let (_, inventory) = desktop();
    for bdf in [desktop::PCH_PORT_1, desktop::PCH_NIC, desktop::XHCI] {
        assert!(same_group(&inventory, desktop::PCH_PORT_0, bdf), "{bdf}");
    }
    assert!(!same_group(&inventory, desktop::PCH_NIC, desktop::NIC));
    // PM reset is still possible: it touches only the function.
    assert_eq!(
        reset_method(&inventory, desktop::XHCI),
        ResetMethod::PowerManagement
    );
}

#[test]
fn q35_groups_follow_acs_aliases_and_multi_function_rules() {
    let (_, inventory) = q35();
    // nvme alone behind an ACS root port.
    let nvme_group = inventory.group_of(q35::NVME).unwrap();
    assert_eq!(inventory.group_members(nvme_group).count(), 1);
    // edu alone, reset through its root port.
    let edu_group = inventory.group_of(q35::EDU).unwrap();
    assert_eq!(inventory.group_members(edu_group).count(), 1);
    assert_eq!(
        reset_method(&inventory, q35::EDU),
        ResetMethod::SecondaryBusReset {
            bridge: q35::ROOT_PORT_EDU
        }
    );
    // Multi-function slot without ACS: together.
    assert!(same_group(
        &inventory,
        q35::MULTI_FUNCTION_0,
        q35::MULTI_FUNCTION_1
    ));
    assert!(!same_group(
        &inventory,
        q35::MULTI_FUNCTION_0,
        q35::ROOT_PORT_MULTI
    ));
    // Conventional devices behind the pcie-pci-bridge: with the bridge.
    assert!(same_group(
        &inventory,
        q35::CONVENTIONAL_E1000,
        q35::PCIE_PCI_BRIDGE
    ));
    assert!(same_group(
        &inventory,
        q35::CONVENTIONAL_RTL8139,
        q35::PCIE_PCI_BRIDGE
    ));
    // The switch's downstream ports have no ACS: everything below the switch together.
    assert!(same_group(&inventory, q35::SWITCH_E1000E, q35::SWITCH_HDA));
    assert!(same_group(
        &inventory,
        q35::SWITCH_E1000E,
        q35::SWITCH_DOWNSTREAM_0
    ));
    assert!(!same_group(
        &inventory,
        q35::SWITCH_E1000E,
        q35::SWITCH_UPSTREAM
    ));
    // Chipset functions (multi-function, no ACS): together.
    assert!(same_group(&inventory, q35::LPC, q35::SMBUS));
    // Bridges and host bridges have no reset method.
    assert_eq!(
        reset_method(&inventory, q35::PCIE_PCI_BRIDGE),
        ResetMethod::None
    );
}

#[test]
fn downstream_ports_with_acs_isolate_the_switch_functions() {
    let mut config = q35_topology()
        .with(q35::SWITCH_DOWNSTREAM_0, switch_downstream(3, 4, 4, true))
        .with(q35::SWITCH_DOWNSTREAM_1, switch_downstream(3, 5, 5, true));
    let inventory = enumerate(&mut config);
    assert!(!same_group(&inventory, q35::SWITCH_E1000E, q35::SWITCH_HDA));
    let group = inventory.group_of(q35::SWITCH_HDA).unwrap();
    assert_eq!(inventory.group_members(group).count(), 1);
}

#[test]
fn without_acs_enabled_endpoints_join_their_root_port() {
    let mut config = q35_topology();
    let options = EnumerationOptions {
        enable_acs: false,
        include_enabled_vfs: true,
    };
    let inventory = Inventory::enumerate(&mut config, &q35_ecam(), options);
    assert!(same_group(&inventory, q35::NVME, q35::ROOT_PORT_NVME));
    assert!(same_group(&inventory, q35::EDU, q35::ROOT_PORT_EDU));
    assert!(!same_group(&inventory, q35::EDU, q35::NVME));
}

#[test]
fn a_device_at_the_bridges_alias_id_lists_that_id_once() {
    use crate::fake::pcie_to_pci_bridge;
    use crate::fake::{q35_ecam, FakeConfigSpace};
    // 00:01.0 root port -> 01:00.0 PCIe-to-PCI bridge -> 02:00.0 conventional e1000: its
    // DMA arrives as (secondary bus 2, 00.0), which is its own requester ID.
    let mut config = FakeConfigSpace::new()
        .with(b(0, 1, 0), root_port(0, 1, 2, true))
        .with(b(1, 0, 0), pcie_to_pci_bridge(1, 2, 2))
        .with(b(2, 0, 0), conventional_e1000())
        .with(b(2, 1, 0), conventional_e1000());
    let inventory = crate::Inventory::enumerate(
        &mut config,
        &q35_ecam(),
        crate::EnumerationOptions::default(),
    );
    let ids = |device| -> Vec<Bdf> {
        dma_aliases(&inventory, device)
            .iter()
            .map(|a| a.requester_id)
            .collect()
    };
    assert_eq!(ids(b(2, 0, 0)), vec![b(2, 0, 0)]);
    assert_eq!(ids(b(2, 1, 0)), vec![b(2, 1, 0), b(2, 0, 0)]);
}
