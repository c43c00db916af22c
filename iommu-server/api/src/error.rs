//! Every error the iommu-server can return, each named and documented.
//!
//! The numeric code travels in [`crate::ReplyHeader::status`]; `0` means success and is never an
//! error code. A rejected request changed nothing on the server.

use core::fmt;

macro_rules! iommu_errors {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal => $text:literal, )*) => {
        /// Why the iommu-server refused a request (or why an internal step failed).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum IommuError {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl IommuError {
            /// Every error, in code order (for tests and documentation).
            pub const ALL: &'static [IommuError] = &[$(IommuError::$name,)*];

            /// The wire code of this error (never 0).
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The error with this wire code, if any.
            pub fn from_code(code: u32) -> Option<Self> {
                match code {
                    $( $code => Some(IommuError::$name), )*
                    _ => None,
                }
            }

            /// A one-line human description.
            pub const fn description(self) -> &'static str {
                match self {
                    $( IommuError::$name => $text, )*
                }
            }
        }
    };
}

iommu_errors! {
    /// The operation code is not one of [`crate::Operation`].
    UnknownOperation = 1 => "unknown operation code",
    /// The message is shorter or longer than the operation's request struct.
    MalformedMessage = 2 => "message length does not match the operation",
    /// A reserved field is not zero, or an enumerated field has an undefined value.
    InvalidField = 3 => "reserved field not zero or undefined field value",
    /// The rights word has bits other than READ and WRITE, or neither.
    InvalidRights = 4 => "rights must be a non-empty combination of READ and WRITE",
    /// No DMA domain with this id exists.
    UnknownDomain = 5 => "no such DMA domain",
    /// The domain, IRTE or memory belongs to another client.
    NotOwner = 6 => "object belongs to another client",
    /// All domain ids the hardware supports (CAP.ND) or the server tracks are in use.
    DomainLimitReached = 7 => "no free domain id",
    /// A domain with devices still attached cannot be destroyed.
    DomainInUse = 8 => "domain still has devices attached",
    /// The quarantine domain cannot be the target of this operation.
    QuarantineDomain = 9 => "operation not allowed on the quarantine domain",
    /// No delegated memory with this handle exists for the caller.
    UnknownMemory = 10 => "no such delegated memory",
    /// The requested mapping rights exceed the rights the memory was delegated with.
    RightsExceeded = 11 => "mapping rights exceed the delegated rights",
    /// The range (offset + size) does not lie inside the delegated memory.
    RangeOutsideMemory = 12 => "range lies outside the delegated memory",
    /// An address, offset or size is not a multiple of 4 KiB.
    Misaligned = 13 => "address or size not 4 KiB aligned",
    /// The size is zero.
    ZeroSize = 14 => "size is zero",
    /// The range wraps around the address space.
    AddressOverflow = 15 => "range wraps around the address space",
    /// The I/O virtual range goes beyond the domain's address width (SAGAW / MGAW).
    AddressBeyondWidth = 16 => "I/O virtual range beyond the domain's address width",
    /// The I/O virtual range overlaps the MSI window 0xFEE00000-0xFEEFFFFF (VT-d spec 3.14),
    /// which is never mapped into a DMA domain.
    MsiWindow = 17 => "range overlaps the MSI window 0xfee00000-0xfeefffff",
    /// The host-physical range overlaps the interrupt address range 0xFEE00000-0xFEEFFFFF.
    MsiWindowPhysical = 18 => "physical range overlaps the interrupt address range",
    /// Part of the I/O virtual range is already mapped in this domain.
    AlreadyMapped = 19 => "I/O virtual range already mapped",
    /// The range is not exactly one existing mapping of this domain.
    NotMapped = 20 => "no mapping with exactly this range",
    /// The server has no frame left for page tables.
    OutOfTableMemory = 21 => "no frame left for page tables",
    /// The server's mapping bookkeeping is full.
    MappingLimitReached = 22 => "too many mappings",
    /// The device is not behind any VT-d unit this server owns.
    UnknownDevice = 23 => "device not behind a VT-d unit of this server",
    /// The device (or one of its DMA aliases) is attached to another domain.
    DeviceBusy = 24 => "device or alias attached to another domain",
    /// The device is not attached to the given domain.
    DeviceNotAttached = 25 => "device not attached to this domain",
    /// More DMA aliases than the message can carry, or a duplicated alias.
    InvalidAliases = 26 => "too many or duplicated DMA aliases",
    /// The server's device bookkeeping is full.
    DeviceLimitReached = 27 => "too many attached devices",
    /// A reserved memory region (RMRR) of the device conflicts with the domain's mappings.
    RmrrConflict = 28 => "RMRR identity map conflicts with an existing mapping",
    /// Every interrupt remapping table entry is in use.
    IrteExhausted = 29 => "no free interrupt remapping table entry",
    /// The IRTE handle is out of range or not allocated.
    UnknownIrte = 30 => "no such interrupt remapping table entry",
    /// The IRTE settings are invalid (vector below 0x10, reserved delivery mode, ...).
    InvalidIrteConfiguration = 31 => "invalid interrupt remapping entry settings",
    /// The unit has no interrupt remapping (ECAP.IR = 0) or it is not enabled.
    InterruptRemappingUnavailable = 32 => "interrupt remapping unavailable",
    /// The hardware did not complete an operation within the bounded wait.
    HardwareTimeout = 33 => "VT-d hardware did not respond in time",
    /// The hardware reported an invalidation queue error (FSTS.IQE/ICE/ITE).
    InvalidationError = 34 => "invalidation queue error reported by hardware",
    /// No room to record another fault subscriber.
    SubscriberLimitReached = 35 => "too many fault subscribers",
    /// The bus/device/function is malformed.
    InvalidBdf = 36 => "invalid bus/device/function",
    /// The unit lacks a capability this configuration needs (e.g. no usable SAGAW).
    UnsupportedHardware = 37 => "VT-d unit lacks a required capability",
    /// The request must carry a capability (the memory to delegate, the notification to
    /// signal) and did not, or the kernel refused to tell the server about it.
    MissingCapability = 38 => "request carries no usable capability",
    /// No fault report is waiting for the caller.
    NoFaultPending = 39 => "no fault report pending",
    /// The IRTE would deliver to an interrupt line the caller does not own.
    VectorNotOwned = 40 => "vector is not one of the caller's interrupt lines",
    /// No DRHD unit's device scope covers the device and its segment has no INCLUDE_PCI_ALL
    /// unit (VT-d spec 8.3).
    NoUnitForDevice = 41 => "no VT-d unit covers the device",
    /// The DRHD unit that translates the device was not brought up (no register page, or its
    /// bring-up failed): nothing isolates the device, so it is refused.
    UnitNotBroughtUp = 42 => "the VT-d unit translating the device is not brought up",
    /// The device may sit behind a bridge scope whose bus range the server could not read, so
    /// which unit translates it is unknown.
    AmbiguousUnit = 43 => "which VT-d unit translates the device is unknown",
    /// The GSI is not an IOAPIC pin: it is at or above the first MSI line (the kernel's
    /// interrupt lines from there on are MSI lines, `docs/kernel.md` "Interrupts").
    NotAnIoapicPin = 44 => "GSI is not an IOAPIC pin",
    /// The DMAR lists no IOAPIC in any unit's device scope, so no source id could verify the
    /// pin's interrupts (VT-d spec 8.3.1.1).
    NoIoapicScope = 45 => "the DMAR names no IOAPIC",
    /// The DMAR lists more than one IOAPIC; which one has the GSI needs the MADT's GSI bases,
    /// which the server does not have, so it does not guess.
    AmbiguousIoapic = 46 => "several IOAPICs: which one has the GSI is unknown",
    /// The GSI already has an IRTE: an INTx line is never shared between owners.
    GsiInUse = 47 => "the GSI already has an interrupt remapping table entry",
    /// A reported bridge's secondary bus is not above the bridge's own bus, or its subordinate
    /// bus is below its secondary bus.
    InvalidBusRange = 48 => "bridge bus range empty or not below the bridge",
    /// A bridge is reported twice, or two bridges' bus ranges overlap without one bridge
    /// sitting below the other (buses form a tree: ranges nest or stay apart).
    OverlappingBridges = 49 => "bridges repeated or their bus ranges overlap",
    /// A bridge report part is not the next one (parts are numbered from 0), or a later part
    /// arrived with no report begun.
    ReportOutOfOrder = 50 => "bridge report part out of order",
    /// The report names more bridges than the server keeps.
    BridgeLimitReached = 51 => "too many bridges reported",
    /// The bridges' bus ranges were already reported; routing is fixed.
    BridgesAlreadyReported = 52 => "bridge bus ranges already reported",
    /// A device is already placed in a domain, so routing can no longer change under it.
    DevicesAlreadyPlaced = 53 => "devices already placed: routing can no longer change",
    /// With the reported bus ranges, two DRHD units claim the same device or buses (the DMAR
    /// contradicts the bus numbers); routing stays as it was.
    ConflictingUnits = 54 => "with these bus ranges two VT-d units claim one device",
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl core::error::Error for IommuError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for (index, error) in IommuError::ALL.iter().enumerate() {
            assert_eq!(error.code(), index as u32 + 1);
            assert_eq!(IommuError::from_code(error.code()), Some(*error));
            assert!(!error.description().is_empty());
        }
        assert_eq!(IommuError::from_code(0), None);
        assert_eq!(IommuError::from_code(1000), None);
    }
}
