//! The one error enum of the pci-server's interface; every operation documents which of these
//! it returns.

use core::fmt;

/// Every error the pci-server returns to a client, as a stable `u32` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PciError {
    /// The operation code is not one of [`crate::Operation`].
    UnknownOperation = 1,
    /// The request bytes have the wrong length for the operation, or a reserved field or a
    /// code field holds a value it may not.
    MalformedRequest = 2,
    /// No function with that BDF (or inventory index) exists.
    NoSuchFunction = 3,
    /// The caller does not own the function it tried to use or release.
    NotOwner = 4,
    /// The ownership change is not allowed from the function's current state (for example,
    /// assigning a function that is not quarantined). Nothing was changed.
    InvalidTransition = 5,
    /// Another function of the same IOMMU group is held by a different owner; groups are never
    /// split between owners.
    GroupConflict = 6,
    /// The function has no usable reset method (no FLR, no AF FLR, PM with NoSoftRst set, and
    /// no secondary bus reset that affects only its group), so it cannot change owners safely.
    NoResetMethod = 7,
    /// A reset did not complete: the device stayed not-ready past the bounded wait.
    ResetFailed = 8,
    /// The iommu-server refused to attach the function to the requested domain.
    IommuRefused = 9,
    /// The config-space offset plus access width is beyond 4 KiB.
    OffsetOutOfRange = 10,
    /// The config-space offset is not a multiple of the access width, or the width is not 1, 2
    /// or 4 bytes.
    MisalignedAccess = 11,
    /// The filter refused a config write: it would change bits the owner may not change (the
    /// server logs which register).
    WriteDenied = 12,
    /// The function has no MSI capability.
    NoMsiCapability = 13,
    /// The function has no MSI-X capability.
    NoMsixCapability = 14,
    /// The vector number (or vector count) is beyond what the capability supports.
    VectorOutOfRange = 15,
    /// The function has no SR-IOV extended capability.
    NoSriovCapability = 16,
    /// The number of virtual functions requested is zero or above TotalVFs.
    TooManyVfs = 17,
    /// Virtual functions are already enabled on this physical function.
    VfsAlreadyEnabled = 18,
    /// The virtual functions' routing IDs would fall outside the bus range of the bridge above.
    VfBusOutOfRange = 19,
    /// The server's fixed-size inventory has no room for more functions.
    InventoryFull = 20,
    /// The function is a bridge (or host bridge): the pci-server keeps it, it is never assigned.
    NotAssignable = 21,
    /// The function has no memory BAR with that register index (or it is an I/O BAR).
    NoSuchBar = 22,
    /// The server holds no device memory covering the BAR (it lies outside the windows init
    /// delegated, or the kernel refused to carve it).
    BarUnavailable = 23,
    /// The IOMMU cannot remap interrupts (ECAP.IR = 0), so a device could inject any
    /// interrupt; passthrough is refused unless the system description allows it with
    /// `insecure_no_interrupt_remapping = true`.
    InterruptRemappingUnavailable = 24,
    /// The function's MSI-X table cannot be reached: its Table BIR names no implemented memory
    /// BAR, the table does not fit in that BAR, or the server holds no device window covering
    /// it (or the kernel refused to map it). Nothing was written.
    MsixTableUnavailable = 25,
    /// Memory Space Enable is clear in the function's Command register, so its MSI-X table
    /// (in BAR memory) does not answer; the owner sets it first (a filtered `ConfigWrite`).
    /// Nothing was written.
    MemoryDecodingDisabled = 26,
    /// An IRTE the MSI/MSI-X message would select is not proven to be the caller's for this
    /// function: it is not allocated and programmed, it delivers to another owner's line, it
    /// verifies another device's requester id, or the iommu-server could not be asked. The
    /// server logs which and why as a denied write. Nothing was written.
    IrteNotOwned = 27,
    /// The BAR has no such part: the pages holding the MSI-X table and PBA are never handed
    /// out (PCIe Base spec 6.0 section 7.7.2: software changes the table only through the
    /// programming operation; the owner reads table and PBA with `MsixRead`), and the part
    /// index is beyond the BAR's remaining page runs.
    BarPartUnavailable = 28,
    /// The function has no usable INTx pin: Interrupt Pin reads 0 (or a value above 4), as on
    /// every virtual function.
    NoInterruptPin = 29,
    /// Where the function's INTx arrives is unknown: the host bridge is not one whose routing
    /// table the server knows (only q35/ICH9 8086:29c0 until an ACPI `_PRT` reader exists),
    /// or the bridges above the function are not all known.
    IntxRoutingUnknown = 30,
    /// The request must carry a capability (the notification to bind, with
    /// `BIND_INTERRUPT`) and did not.
    MissingCapability = 31,
    /// The function's GSI is already bound (another function routed to the same line: INTx
    /// lines are never shared between owners, nor between two functions of one owner).
    IntxLineBusy = 32,
    /// The function's INTx is already routed to its owner.
    IntxAlreadyRouted = 33,
    /// The server holds no interrupt lines, or the kernel refused to bind or remap the line
    /// (the server logs the kernel's status). Nothing stays bound.
    InterruptRoutingFailed = 34,
}

impl PciError {
    /// The stable wire code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a wire code; `None` for a code this version does not know.
    pub const fn from_code(code: u32) -> Option<PciError> {
        use PciError::*;
        Some(match code {
            1 => UnknownOperation,
            2 => MalformedRequest,
            3 => NoSuchFunction,
            4 => NotOwner,
            5 => InvalidTransition,
            6 => GroupConflict,
            7 => NoResetMethod,
            8 => ResetFailed,
            9 => IommuRefused,
            10 => OffsetOutOfRange,
            11 => MisalignedAccess,
            12 => WriteDenied,
            13 => NoMsiCapability,
            14 => NoMsixCapability,
            15 => VectorOutOfRange,
            16 => NoSriovCapability,
            17 => TooManyVfs,
            18 => VfsAlreadyEnabled,
            19 => VfBusOutOfRange,
            20 => InventoryFull,
            21 => NotAssignable,
            22 => NoSuchBar,
            23 => BarUnavailable,
            24 => InterruptRemappingUnavailable,
            25 => MsixTableUnavailable,
            26 => MemoryDecodingDisabled,
            27 => IrteNotOwned,
            28 => BarPartUnavailable,
            29 => NoInterruptPin,
            30 => IntxRoutingUnknown,
            31 => MissingCapability,
            32 => IntxLineBusy,
            33 => IntxAlreadyRouted,
            34 => InterruptRoutingFailed,
            _ => return None,
        })
    }
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            PciError::UnknownOperation => "unknown operation code",
            PciError::MalformedRequest => "malformed request (length, reserved or code field)",
            PciError::NoSuchFunction => "no such PCI function",
            PciError::NotOwner => "caller does not own this function",
            PciError::InvalidTransition => "ownership change not allowed from the current state",
            PciError::GroupConflict => "another function of the IOMMU group has another owner",
            PciError::NoResetMethod => "function has no usable reset method",
            PciError::ResetFailed => "reset did not complete within its bounded wait",
            PciError::IommuRefused => "iommu-server refused the domain attachment",
            PciError::OffsetOutOfRange => "config offset beyond 4 KiB",
            PciError::MisalignedAccess => "config access misaligned or of a bad width",
            PciError::WriteDenied => "config write denied by the filter",
            PciError::NoMsiCapability => "function has no MSI capability",
            PciError::NoMsixCapability => "function has no MSI-X capability",
            PciError::VectorOutOfRange => "vector beyond the capability's vector count",
            PciError::NoSriovCapability => "function has no SR-IOV capability",
            PciError::TooManyVfs => "virtual function count is zero or above TotalVFs",
            PciError::VfsAlreadyEnabled => "virtual functions already enabled",
            PciError::VfBusOutOfRange => "virtual functions would fall outside the bridge's buses",
            PciError::InventoryFull => "function inventory is full",
            PciError::NotAssignable => "bridges are never assigned",
            PciError::NoSuchBar => "function has no memory BAR with that index",
            PciError::BarUnavailable => "no device memory covers that BAR",
            PciError::InterruptRemappingUnavailable => {
                "no interrupt remapping: passthrough refused (insecure_no_interrupt_remapping not set)"
            }
            PciError::MsixTableUnavailable => {
                "MSI-X table not in a reachable memory BAR of the function"
            }
            PciError::MemoryDecodingDisabled => {
                "memory decoding is off (Command.Memory Space Enable): the MSI-X table does not answer"
            }
            PciError::IrteNotOwned => {
                "IRTE not allocated and programmed by the caller for this function or its DMA aliases"
            }
            PciError::BarPartUnavailable => {
                "no such part of the BAR (MSI-X table and PBA pages are never handed out)"
            }
            PciError::NoInterruptPin => "function has no INTx pin (Interrupt Pin 0 or invalid)",
            PciError::IntxRoutingUnknown => {
                "INTx routing unknown (host bridge without a known routing table, or broken bridge path)"
            }
            PciError::MissingCapability => "request carries no notification capability",
            PciError::IntxLineBusy => "the function's INTx line is already bound (never shared)",
            PciError::IntxAlreadyRouted => "the function's INTx is already routed to its owner",
            PciError::InterruptRoutingFailed => {
                "the kernel refused to bind or remap the line, or the server holds no lines"
            }
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..64 {
            if let Some(error) = PciError::from_code(code) {
                assert_eq!(error.code(), code);
                assert!(!format!("{error}").is_empty());
            }
        }
        assert_eq!(PciError::from_code(20), Some(PciError::InventoryFull));
        assert_eq!(PciError::from_code(21), Some(PciError::NotAssignable));
        assert_eq!(
            PciError::from_code(24),
            Some(PciError::InterruptRemappingUnavailable)
        );
        assert_eq!(
            PciError::from_code(25),
            Some(PciError::MsixTableUnavailable)
        );
        assert_eq!(
            PciError::from_code(26),
            Some(PciError::MemoryDecodingDisabled)
        );
        assert_eq!(PciError::from_code(27), Some(PciError::IrteNotOwned));
        assert_eq!(PciError::from_code(28), Some(PciError::BarPartUnavailable));
        assert_eq!(PciError::from_code(29), Some(PciError::NoInterruptPin));
        assert_eq!(
            PciError::from_code(34),
            Some(PciError::InterruptRoutingFailed)
        );
        assert_eq!(PciError::from_code(35), None);
        assert_eq!(PciError::from_code(0), None);
    }
}
