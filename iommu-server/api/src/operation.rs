//! Operation codes of the iommu-server's portal.

use crate::IommuError;

/// One operation of the iommu-server. The code is the IPC message label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Operation {
    /// Create an empty DMA domain owned by the caller. [`crate::CreateDomainRequest`] ->
    /// [`crate::CreateDomainReply`]. Errors: `DomainLimitReached`, `InvalidField`.
    CreateDomain = 1,
    /// Destroy a domain with no devices attached; its mappings are removed and flushed.
    /// [`crate::DestroyDomainRequest`]. Errors: `UnknownDomain`, `NotOwner`, `DomainInUse`,
    /// `QuarantineDomain`, `HardwareTimeout`.
    DestroyDomain = 2,
    /// Map part of memory the caller delegated into a domain. [`crate::MapRequest`].
    /// Errors: `UnknownDomain`, `NotOwner`, `UnknownMemory`, `InvalidRights`, `RightsExceeded`,
    /// `RangeOutsideMemory`, `Misaligned`, `ZeroSize`, `AddressOverflow`, `AddressBeyondWidth`,
    /// `MsiWindow`, `MsiWindowPhysical`, `AlreadyMapped`, `OutOfTableMemory`,
    /// `MappingLimitReached`, `HardwareTimeout`.
    Map = 3,
    /// Remove exactly one earlier mapping; the IOTLB is flushed before the reply.
    /// [`crate::UnmapRequest`]. Errors: `UnknownDomain`, `NotOwner`, `NotMapped`,
    /// `HardwareTimeout`.
    Unmap = 4,
    /// Move a device and its DMA aliases from quarantine into a domain.
    /// [`crate::DeviceRequest`]. Errors: `UnknownDomain`, `NotOwner`, `UnknownDevice`,
    /// `DeviceBusy`, `InvalidAliases`, `DeviceLimitReached`, `RmrrConflict`,
    /// `OutOfTableMemory`, `InvalidBdf`, `HardwareTimeout`.
    AttachDevice = 5,
    /// Move a device and its DMA aliases from a domain back to quarantine.
    /// [`crate::DeviceRequest`]. Errors: `UnknownDomain`, `NotOwner`, `DeviceNotAttached`,
    /// `InvalidAliases`, `HardwareTimeout`.
    DetachDevice = 6,
    /// Allocate one interrupt remapping table entry (not present until programmed).
    /// [`crate::AllocateIrteRequest`] -> [`crate::IrteReply`]. Errors: `IrteExhausted`,
    /// `InterruptRemappingUnavailable`.
    AllocateIrte = 7,
    /// Program an IRTE the caller allocated and get the remappable-format MSI message for it.
    /// [`crate::ProgramIrteRequest`] -> [`crate::MsiMessageReply`]. Errors: `UnknownIrte`,
    /// `NotOwner`, `InvalidIrteConfiguration`, `InvalidField`, `HardwareTimeout`.
    ProgramIrte = 8,
    /// Free an IRTE the caller allocated (cleared and invalidated first).
    /// [`crate::IrteRequest`]. Errors: `UnknownIrte`, `NotOwner`, `HardwareTimeout`.
    FreeIrte = 9,
    /// Ask for [`crate::FaultReport`]s of a device the caller owns (attached to its domain).
    /// [`crate::SubscribeFaultsRequest`]; the notification to signal (bit 0, `SIGNAL`) travels
    /// as a transfer item. Errors: `UnknownDevice`, `NotOwner`, `SubscriberLimitReached`,
    /// `MissingCapability`.
    SubscribeFaults = 10,
    /// Delegate memory to the server so that it can be mapped for DMA: the request carries
    /// the memory capability (with `DMA_MAP` and the rights asked for) as a transfer item; the
    /// server learns its host-physical range from the kernel and checks the rights by mapping
    /// it into itself. [`crate::DelegateMemoryRequest`] -> [`crate::DelegateMemoryReply`].
    /// Errors: `MissingCapability`, `InvalidRights`, `RightsExceeded`, `MsiWindowPhysical`,
    /// `MappingLimitReached`, `Misaligned`, `ZeroSize`, `AddressOverflow`.
    DelegateMemory = 11,
    /// Take the oldest fault report of a device the caller owns (its subscription's
    /// notification was signalled). [`crate::TakeFaultRequest`] -> [`crate::FaultReport`].
    /// Errors: `NoFaultPending`.
    TakeFault = 12,
    /// Read-only, for the pci-server only: who an IRTE delivers to and which requester ids it
    /// accepts, so that the pci-server can refuse to point a device at an entry that is not
    /// its owner's (`docs/passthrough.md`, step 9). [`crate::IrteRequest`] ->
    /// [`crate::IrteStatusReply`]. Errors: `NotOwner` (the caller is not the pci-server),
    /// `InterruptRemappingUnavailable`, `UnknownIrte` (handle beyond the table).
    QueryIrte = 13,
    /// For the pci-server only: allocate and program an IRTE for IOAPIC pin `gsi` (VT-d spec
    /// 5.1.5.1): vector 0x30 + `gsi` on APIC 0, fixed, level-triggered, physical, with
    /// source-id verification of the IOAPIC's requester id from the DMAR (SVT 1, SQ 0),
    /// written in the table of the unit whose scope lists the IOAPIC. The pci-server then has
    /// the kernel point the pin at the entry (`interrupt_remap`) and frees it with `FreeIrte`.
    /// [`crate::IoapicIrteRequest`] -> [`crate::IoapicIrteReply`]. Errors: `NotOwner` (the
    /// caller is not the pci-server, or `owner` is no owner's portal id), `NotAnIoapicPin`,
    /// `InterruptRemappingUnavailable` (no unit remaps, or not the IOAPIC's), `NoIoapicScope`,
    /// `AmbiguousIoapic`, `GsiInUse`, `IrteExhausted`, `HardwareTimeout`.
    AllocateIoapicIrte = 14,
    /// For the pci-server only, once at boot before it places any device: every PCI-to-PCI
    /// bridge of segment 0 with its secondary and subordinate bus, in parts of at most
    /// [`crate::BRIDGES_PER_REPORT`] ([`crate::ReportBridgesRequest`]). The last part makes the
    /// server resolve the DMAR's bridge scopes and scope paths through bridges and re-route
    /// devices to units (VT-d spec 8.3.1). A refused part changes nothing; a part 0 starts the
    /// report afresh. Errors: `NotOwner` (the caller is not the pci-server), `InvalidField`,
    /// `InvalidBusRange`, `OverlappingBridges`, `ReportOutOfOrder`, `BridgeLimitReached`,
    /// `BridgesAlreadyReported`, `DevicesAlreadyPlaced`, `ConflictingUnits`,
    /// `UnsupportedHardware` (no DMA remapping).
    ReportBridges = 15,
}

impl Operation {
    /// Every operation, in code order.
    pub const ALL: &'static [Operation] = &[
        Operation::CreateDomain,
        Operation::DestroyDomain,
        Operation::Map,
        Operation::Unmap,
        Operation::AttachDevice,
        Operation::DetachDevice,
        Operation::AllocateIrte,
        Operation::ProgramIrte,
        Operation::FreeIrte,
        Operation::SubscribeFaults,
        Operation::DelegateMemory,
        Operation::TakeFault,
        Operation::QueryIrte,
        Operation::AllocateIoapicIrte,
        Operation::ReportBridges,
    ];
}

impl TryFrom<u32> for Operation {
    type Error = IommuError;

    fn try_from(code: u32) -> Result<Self, IommuError> {
        Operation::ALL
            .iter()
            .copied()
            .find(|operation| *operation as u32 == code)
            .ok_or(IommuError::UnknownOperation)
    }
}
