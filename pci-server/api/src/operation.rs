//! Operation codes of the pci-server's portal: the first word of every request.

use crate::PciError;

/// What a request asks the pci-server to do. The request struct for each operation is named in
/// its documentation; [`crate::decode_request`] checks that the bytes match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Operation {
    /// How many functions the inventory holds. Request: none (empty). Reply: a `u32`.
    FunctionCount = 1,
    /// Describe the function at an inventory index. Request: [`crate::FunctionRequest`] whose
    /// `bdf` field is ignored and `index` is used. Reply: [`crate::FunctionReply`].
    /// Errors: `NoSuchFunction`.
    FunctionAt = 2,
    /// Describe one function by BDF. Request: [`crate::FunctionRequest`]. Reply:
    /// [`crate::FunctionReply`]. Errors: `NoSuchFunction`.
    Function = 3,
    /// Move an unassigned function into quarantine (reset, attach to the quarantine domain).
    /// Request: [`crate::FunctionRequest`]. Errors: `NoSuchFunction`, `NotAssignable`,
    /// `InvalidTransition`, `NoResetMethod`, `ResetFailed`, `IommuRefused`.
    Quarantine = 4,
    /// Assign a quarantined function to an owner (reset, attach to the owner's domain).
    /// Request: [`crate::AssignRequest`]. Errors: as `Quarantine`, plus `GroupConflict`.
    Assign = 5,
    /// Release a function its owner holds (bus mastering off, quarantine domain, reset).
    /// Request: [`crate::ReleaseRequest`]. Errors: `NoSuchFunction`, `NotAssignable`,
    /// `InvalidTransition`, `NotOwner`, `ResetFailed`, `IommuRefused`.
    Release = 6,
    /// Read the owner's function's config space. Request: [`crate::ConfigReadRequest`].
    /// Reply: [`crate::ConfigReadReply`]. Errors: `NoSuchFunction`, `NotOwner`,
    /// `OffsetOutOfRange`, `MisalignedAccess`.
    ConfigRead = 7,
    /// Write the owner's function's config space through the filter. Request:
    /// [`crate::ConfigWriteRequest`]. Errors: as `ConfigRead`, plus `WriteDenied`.
    ConfigWrite = 8,
    /// Program MSI (kind 0, the default) or one MSI-X table entry (kind 1, asked for
    /// explicitly) in remappable format with an IRTE handle the caller allocated and programmed
    /// through the iommu-server. MSI-X: the entry is masked while it is written, MSI-X is
    /// enabled with Function Mask clear, MSI and INTx are turned off. Request:
    /// [`crate::MsiProgramRequest`]. Every IRTE the message can select must be present, the
    /// caller's, and verify this function or one of its DMA aliases (asked at the
    /// iommu-server). Errors: `MalformedRequest`, `NoSuchFunction`, `NotOwner`,
    /// `NoMsiCapability`, `NoMsixCapability`, `VectorOutOfRange`, `IrteNotOwned`, and for MSI-X
    /// `MsixTableUnavailable`, `MemoryDecodingDisabled`.
    ProgramMsi = 9,
    /// Enable SR-IOV virtual functions on a physical function. Request:
    /// [`crate::EnableVfsRequest`]. Errors: `NoSuchFunction`, `NoSriovCapability`,
    /// `TooManyVfs`, `VfsAlreadyEnabled`, `VfBusOutOfRange`, `InventoryFull`.
    EnableVfs = 10,
    /// The caller takes a function the system description assigns to it (its owner identity
    /// is the id of the portal it calls through), naming the DMA domain it created at the
    /// iommu-server: the function is quarantined (if it was unassigned), reset, and attached
    /// with its DMA aliases to that domain. Request: [`crate::ClaimRequest`]. Errors:
    /// `NoSuchFunction`, `NotAssignable`, `NotOwner` (the description gives the function to
    /// someone else or to nobody), `InvalidTransition` (already assigned), `GroupConflict`,
    /// `NoResetMethod`, `ResetFailed`, `IommuRefused`, `InterruptRemappingUnavailable`.
    Claim = 11,
    /// One part of a memory BAR of a function the caller owns, as a memory capability (read,
    /// write) carried by the reply, with the BAR's address and size and where the part lies.
    /// The pages holding the function's MSI-X table or PBA are in no part: the owner changes
    /// the table only through `ProgramMsi` and reads it with `MsixRead` (PCIe Base spec 6.0
    /// section 7.7.2 keeps other registers out of those pages). Request:
    /// [`crate::BarRequest`]. Reply: [`crate::BarReply`]. Errors: `NoSuchFunction`,
    /// `NotOwner`, `NoSuchBar`, `BarUnavailable`, `BarPartUnavailable`.
    BarMemory = 12,
    /// Read one DWORD of the MSI-X table or of the Pending Bit Array of a function the caller
    /// owns, through the server's own mapping. Request: [`crate::MsixReadRequest`]. Reply:
    /// [`crate::ConfigReadReply`]. Errors: `MalformedRequest`, `MisalignedAccess`,
    /// `NoSuchFunction`, `NotOwner`, `NoMsixCapability`, `OffsetOutOfRange` (beyond the
    /// structure), `MsixTableUnavailable`, `MemoryDecodingDisabled`.
    MsixRead = 13,
    /// Route the INTx of a function the caller owns to the caller: the server computes the
    /// GSI (Interrupt Pin, swizzled through the bridges to the root bus, then the platform's
    /// routing table, `pci_core::intx`), turns the function's MSI and MSI-X off and sets
    /// Command.Interrupt Disable while it binds the line to the notification the request
    /// carries (transfer item, `BIND_INTERRUPT`) at bit `bit`, has the iommu-server program an
    /// IRTE for the IOAPIC pin (`AllocateIoapicIrte`), points the pin at it (kernel
    /// `interrupt_remap`), then clears Interrupt Disable. The reply carries the bound line
    /// with `ACKNOWLEDGE` only (the owner acknowledges it after handling each interrupt; the
    /// pin is level-triggered and stays masked until then). Request:
    /// [`crate::IntxRouteRequest`]. Reply: [`crate::IntxRouteReply`]. Errors:
    /// `MalformedRequest`, `NoSuchFunction`, `NotOwner`, `NoInterruptPin`,
    /// `IntxRoutingUnknown`, `MissingCapability`, `IntxLineBusy`, `IntxAlreadyRouted`,
    /// `InterruptRemappingUnavailable`, `IommuRefused`, `InterruptRoutingFailed`.
    RouteIntx = 14,
}

impl TryFrom<u32> for Operation {
    type Error = PciError;

    fn try_from(code: u32) -> Result<Self, PciError> {
        Ok(match code {
            1 => Operation::FunctionCount,
            2 => Operation::FunctionAt,
            3 => Operation::Function,
            4 => Operation::Quarantine,
            5 => Operation::Assign,
            6 => Operation::Release,
            7 => Operation::ConfigRead,
            8 => Operation::ConfigWrite,
            9 => Operation::ProgramMsi,
            10 => Operation::EnableVfs,
            11 => Operation::Claim,
            12 => Operation::BarMemory,
            13 => Operation::MsixRead,
            14 => Operation::RouteIntx,
            _ => return Err(PciError::UnknownOperation),
        })
    }
}
