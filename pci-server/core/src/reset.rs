//! Choosing a reset method per function, in Linux's priority order: PCIe FLR, AF FLR,
//! PM D3hot->D0 (only when No_Soft_Reset is clear), then a secondary bus reset of the parent
//! bridge (only when everything below that bridge is in the function's IOMMU group, so a bus
//! reset never disturbs another owner's device).

use crate::inventory::Inventory;
use core::fmt;
use pci_api::{Bdf, ResetMethodCode};

/// How a function can be reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetMethod {
    /// PCIe Function Level Reset (PCIe Base spec 6.0 section 6.6.2).
    Flr,
    /// Advanced Features FLR (PCI Advanced Capabilities ECN).
    AdvancedFeaturesFlr,
    /// D3hot -> D0 transition with No_Soft_Reset clear (PCI PM spec 1.2 section 5.6.1).
    PowerManagement,
    /// Secondary Bus Reset on the bridge above (PCIe Base spec 6.0 section 7.5.1.3.13).
    SecondaryBusReset {
        /// The bridge whose secondary bus is reset.
        bridge: Bdf,
    },
    /// None usable.
    None,
}

impl ResetMethod {
    /// The wire code.
    pub fn code(self) -> ResetMethodCode {
        match self {
            ResetMethod::Flr => ResetMethodCode::Flr,
            ResetMethod::AdvancedFeaturesFlr => ResetMethodCode::AfFlr,
            ResetMethod::PowerManagement => ResetMethodCode::PmD3hotD0,
            ResetMethod::SecondaryBusReset { .. } => ResetMethodCode::SecondaryBusReset,
            ResetMethod::None => ResetMethodCode::None,
        }
    }
}

impl fmt::Display for ResetMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetMethod::Flr => f.write_str("FLR"),
            ResetMethod::AdvancedFeaturesFlr => f.write_str("AF FLR"),
            ResetMethod::PowerManagement => f.write_str("PM D3hot->D0"),
            ResetMethod::SecondaryBusReset { bridge } => {
                write!(f, "secondary bus reset via {bridge}")
            }
            ResetMethod::None => f.write_str("none"),
        }
    }
}

/// The reset method for `bdf`; [`ResetMethod::None`] for unknown functions and bridges.
pub fn reset_method(inventory: &Inventory, bdf: Bdf) -> ResetMethod {
    let Some(function) = inventory.get(bdf) else {
        return ResetMethod::None;
    };
    if function.is_bridge() {
        return ResetMethod::None;
    }
    let capabilities = &function.capabilities;
    if capabilities.pcie.is_some_and(|pcie| pcie.flr) {
        return ResetMethod::Flr;
    }
    if capabilities
        .advanced_features
        .is_some_and(|af| af.flr && af.transactions_pending)
    {
        return ResetMethod::AdvancedFeaturesFlr;
    }
    if capabilities
        .power_management
        .is_some_and(|pm| !pm.no_soft_reset)
    {
        return ResetMethod::PowerManagement;
    }
    // A VF's only reset is its own FLR: a bus reset would take the PF and all VFs with it.
    if function.physical_function.is_some() {
        return ResetMethod::None;
    }
    let Some(bridge) = function.parent.and_then(|parent| inventory.get(parent)) else {
        return ResetMethod::None;
    };
    let (Some(numbers), Some(group)) = (bridge.bus_numbers, inventory.group_of(bdf)) else {
        return ResetMethod::None;
    };
    let all_in_group = inventory
        .functions_on_buses(numbers.secondary, numbers.subordinate)
        .all(|other| inventory.group_of(other.bdf) == Some(group));
    if all_in_group {
        ResetMethod::SecondaryBusReset { bridge: bridge.bdf }
    } else {
        ResetMethod::None
    }
}
