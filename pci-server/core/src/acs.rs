//! Access Control Services: turning the isolation controls on, and deciding whether a function
//! isolates its peers (the rules of Linux's `pci_acs_enabled`, from PCIe Base spec 6.0 section
//! 6.12.1).

use crate::capability::{AcsCapability, AcsFlags, PortType};
use crate::function::FunctionInfo;
use crate::registers::acs;
use crate::ConfigSpace;

/// Enables the isolation controls (SV, RR, CR, UF) that `function` implements, leaving its
/// other controls alone. Returns the ACS capability as read back, or `None` without ACS.
pub fn enable_isolation<C: ConfigSpace + ?Sized>(
    config: &mut C,
    function: &FunctionInfo,
) -> Option<AcsCapability> {
    let capability = function.capabilities.acs?;
    let wanted = capability.control | (capability.capability & AcsFlags::ISOLATION);
    if wanted != capability.control {
        config.write16(
            function.bdf,
            capability.offset + acs::CONTROL,
            wanted.bits(),
        );
    }
    let control =
        AcsFlags::from_bits_truncate(config.read16(function.bdf, capability.offset + acs::CONTROL));
    Some(AcsCapability {
        control,
        ..capability
    })
}

/// True when the ACS isolation controls `function` implements are all enabled; false without
/// an ACS capability.
fn isolation_enabled(function: &FunctionInfo) -> bool {
    function
        .capabilities
        .acs
        .is_some_and(|capability| capability.isolates())
}

/// Whether `function` keeps peer-to-peer traffic from bypassing the IOMMU, per port type:
/// conventional PCI and PCI/PCIe bridges never do; root and downstream ports need ACS;
/// endpoints and upstream ports need ACS only when they are multi-function (section 6.12.1.2);
/// other types are not peers.
pub fn isolates_peers(function: &FunctionInfo) -> bool {
    let Some(pcie) = function.capabilities.pcie else {
        return false;
    };
    match pcie.port_type {
        PortType::PciToPcieBridge
        | PortType::PcieToPciBridge
        | PortType::RootComplexEventCollector => false,
        PortType::RootPort | PortType::SwitchDownstream => isolation_enabled(function),
        PortType::Endpoint
        | PortType::SwitchUpstream
        | PortType::LegacyEndpoint
        | PortType::RootComplexIntegratedEndpoint => {
            // Virtual functions are not multi-function devices of their own.
            if !function.multi_function || function.physical_function.is_some() {
                true
            } else {
                isolation_enabled(function)
            }
        }
        PortType::Reserved(_) => true,
    }
}
