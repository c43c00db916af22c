//! DMA aliases: the requester IDs the IOMMU may see for a function's DMA, following Linux's
//! `pci_for_each_dma_alias` rules. A PCIe-to-PCI bridge takes ownership of conventional
//! transactions and issues them as (secondary bus, 00.0) (PCIe-to-PCI/PCI-X Bridge spec 1.0
//! section 2.3); a conventional PCI bridge or a PCI-to-PCIe bridge issues them with its own ID.
//! PCIe root and switch ports pass requester IDs through unchanged.

use crate::capability::PortType;
use crate::inventory::Inventory;
use pci_api::Bdf;

/// One requester ID a function's DMA may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaAlias {
    /// The requester ID.
    pub requester_id: Bdf,
    /// The bridge that substitutes it, or `None` for the function's own ID.
    pub via: Option<Bdf>,
}

/// Most aliases recorded for one function.
pub const MAX_ALIASES: usize = 8;

/// The function's own requester ID followed by every alias introduced on its upstream path,
/// nearest bridge first. Empty for an unknown BDF.
pub fn dma_aliases(inventory: &Inventory, bdf: Bdf) -> heapless::Vec<DmaAlias, MAX_ALIASES> {
    let mut aliases = heapless::Vec::new();
    if inventory.get(bdf).is_none() {
        return aliases;
    }
    let _ = aliases.push(DmaAlias {
        requester_id: bdf,
        via: None,
    });
    for bridge_bdf in inventory.upstream_path(bdf) {
        let Some(bridge) = inventory.get(bridge_bdf) else {
            break;
        };
        let alias = match bridge.capabilities.pcie.map(|pcie| pcie.port_type) {
            Some(PortType::PcieToPciBridge) => bridge
                .bus_numbers
                .map(|numbers| Bdf::from_bus_devfn(numbers.secondary, 0)),
            Some(PortType::PciToPcieBridge) => Some(bridge_bdf),
            // Root ports, switch ports and other PCIe functions forward IDs unchanged.
            Some(_) => None,
            // A conventional PCI bridge issues the transaction as itself.
            None => Some(bridge_bdf),
        };
        if let Some(requester_id) = alias {
            let entry = DmaAlias {
                requester_id,
                via: Some(bridge_bdf),
            };
            // A bridge may substitute the function's own ID (a device at devfn 0 of the
            // bridge's secondary bus) or one already listed: each requester ID appears once.
            let known = aliases.iter().any(|a| a.requester_id == requester_id);
            if !known && aliases.push(entry).is_err() {
                break;
            }
        }
    }
    aliases
}
