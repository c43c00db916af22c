//! Request and reply structs (`#[repr(C)]`, zerocopy) and the decoder that turns untrusted
//! request bytes into a typed [`Request`].

use crate::{Bdf, Operation, OwnerId, PciError};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Names one function, by BDF or (for [`Operation::FunctionAt`]) by inventory index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FunctionRequest {
    /// The function's requester ID.
    pub bdf: Bdf,
    /// Reserved, must be zero.
    pub reserved: u16,
    /// Inventory index (only for `FunctionAt`; must be zero otherwise).
    pub index: u32,
}

/// Assign a quarantined function to `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct AssignRequest {
    /// The function.
    pub bdf: Bdf,
    /// Reserved, must be zero.
    pub reserved: u16,
    /// The new owner.
    pub owner: OwnerId,
}

/// Release a function held by `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReleaseRequest {
    /// The function.
    pub bdf: Bdf,
    /// Reserved, must be zero.
    pub reserved: u16,
    /// The owner that releases it (checked against the current owner).
    pub owner: OwnerId,
}

/// Width code of a config access: 1, 2 or 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessWidthCode {
    /// One byte.
    Byte = 1,
    /// Two bytes.
    Word = 2,
    /// Four bytes.
    Dword = 4,
}

impl AccessWidthCode {
    fn decode(code: u8) -> Result<AccessWidthCode, PciError> {
        match code {
            1 => Ok(AccessWidthCode::Byte),
            2 => Ok(AccessWidthCode::Word),
            4 => Ok(AccessWidthCode::Dword),
            _ => Err(PciError::MisalignedAccess),
        }
    }
}

/// Read a config register of a function the caller owns (the owner is the caller's badge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConfigReadRequest {
    /// The function.
    pub bdf: Bdf,
    /// Byte offset in the 4 KiB config space.
    pub offset: u16,
    /// Access width in bytes: 1, 2 or 4.
    pub width: u8,
    /// Reserved, must be zero.
    pub reserved: [u8; 3],
}

/// The value read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConfigReadReply {
    /// The value, zero-extended.
    pub value: u32,
}

/// Write a config register of a function the caller owns, through the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConfigWriteRequest {
    /// The function.
    pub bdf: Bdf,
    /// Byte offset in the 4 KiB config space.
    pub offset: u16,
    /// Access width in bytes: 1, 2 or 4.
    pub width: u8,
    /// Reserved, must be zero.
    pub reserved: [u8; 3],
    /// The value (only the low `width` bytes are used; the rest must be zero).
    pub value: u32,
}

/// Program MSI (kind 0) or MSI-X (kind 1) vectors in remappable format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct MsiProgramRequest {
    /// The function.
    pub bdf: Bdf,
    /// MSI-X: the table entry. MSI: must be zero (all vectors share one address/data).
    pub vector: u16,
    /// The IRTE handle allocated from the iommu-server.
    pub irte_handle: u16,
    /// The subhandle (used when `flags` bit 0 is set).
    pub subhandle: u16,
    /// MSI only: how many vectors to enable (a power of two, 1..=32); MSI-X: must be 1.
    pub vector_count: u16,
    /// 0 = MSI, 1 = MSI-X.
    pub kind: u8,
    /// Bit 0: the subhandle is valid (SHV). Other bits reserved, zero.
    pub flags: u8,
}

/// Enable `count` SR-IOV virtual functions on a physical function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct EnableVfsRequest {
    /// The physical function.
    pub bdf: Bdf,
    /// Number of virtual functions, 1..=TotalVFs.
    pub count: u16,
}

/// Take a function the system description assigns to the caller, attaching it to `domain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ClaimRequest {
    /// The function.
    pub bdf: Bdf,
    /// Reserved, must be zero.
    pub reserved: u16,
    /// The caller's DMA domain handle at the iommu-server.
    pub domain: u32,
}

/// Route an owned function's INTx to the caller: [`crate::Operation::RouteIntx`]. The
/// notification to bind (with `BIND_INTERRUPT`) travels as a transfer item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct IntxRouteRequest {
    /// The function.
    pub bdf: Bdf,
    /// The notification bit the line signals, 0..=63.
    pub bit: u8,
    /// Zero.
    pub reserved: u8,
}

/// Where the function's INTx arrives, and the entry it goes through. The reply carries the
/// bound interrupt line (`ACKNOWLEDGE` only) as a capability.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IntxRouteReply {
    /// The global system interrupt (the kernel's interrupt line; vector 0x30 + `gsi`).
    pub gsi: u32,
    /// The interrupt remapping table entry the IOAPIC pin is programmed with.
    pub irte_handle: u16,
    /// The function's Interrupt Pin (1 = INTA .. 4 = INTD).
    pub pin: u8,
    /// The root-bus device the interrupt leaves the hierarchy at.
    pub root_device: u8,
    /// The IOAPIC's source id the entry verifies.
    pub source_id: Bdf,
    /// The pin at `root_device` after swizzling (1..=4).
    pub root_pin: u8,
    /// Bridges crossed.
    pub bridges: u8,
}

/// Ask for one memory BAR of an owned function as a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BarRequest {
    /// The function.
    pub bdf: Bdf,
    /// BAR register index, 0..=5 (a 64-bit BAR is named by its low register).
    pub index: u8,
    /// Which part of the BAR, 0 first: the BAR's pages without those holding the function's
    /// MSI-X table or PBA, in address order (a BAR without them is one part: all of it).
    pub part: u8,
}

/// The BAR part handed out; the capability (read, write, page-granular: a BAR smaller than a
/// page comes with the whole page) travels with the reply. Byte `part_offset + k` of the BAR
/// is byte `offset_in_capability + k` of the capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct BarReply {
    /// The BAR's address as firmware programmed it.
    pub address: u64,
    /// The BAR's size in bytes.
    pub size: u64,
    /// Offset in the capability of the BAR byte `part_offset` (non-zero for sub-page BARs).
    pub offset_in_capability: u64,
    /// Bytes the capability covers.
    pub capability_size: u64,
    /// Offset in the BAR of the first BAR byte the capability covers (0 for the first part of
    /// a BAR that starts with no MSI-X page).
    pub part_offset: u64,
    /// How many parts the BAR has (pages holding the MSI-X table or PBA are in none).
    pub parts: u32,
    /// Zero.
    pub reserved: u32,
}

/// Read the owner's function's MSI-X table or Pending Bit Array, one DWORD (PCIe Base spec
/// 6.0 sections 7.7.2.5 and 7.7.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct MsixReadRequest {
    /// The function.
    pub bdf: Bdf,
    /// 0 = the table, 1 = the PBA.
    pub structure: u8,
    /// Reserved, must be zero.
    pub reserved: u8,
    /// Byte offset in the structure, a multiple of 4 (table: entry x 16 + register).
    pub offset: u32,
}

/// Reset method codes in [`FunctionReply::reset_method`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResetMethodCode {
    /// No usable reset method.
    None = 0,
    /// PCIe Function Level Reset.
    Flr = 1,
    /// Advanced Features FLR.
    AfFlr = 2,
    /// Power-management D3hot to D0 transition.
    PmD3hotD0 = 3,
    /// Secondary bus reset on the parent bridge.
    SecondaryBusReset = 4,
}

/// Ownership state codes in [`FunctionReply::owner_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OwnerStateCode {
    /// Owned by the pci-server, never assigned since boot.
    Unassigned = 0,
    /// In the quarantine domain.
    Quarantined = 1,
    /// Assigned; [`FunctionReply::owner`] says to whom.
    Assigned = 2,
}

/// What the server tells a client about one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FunctionReply {
    /// The function.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// IOMMU group number.
    pub iommu_group: u16,
    /// Class code: base << 16 | subclass << 8 | programming interface.
    pub class_code: u32,
    /// The owner (meaningful when `owner_state` is `Assigned`).
    pub owner: OwnerId,
    /// A [`ResetMethodCode`].
    pub reset_method: u8,
    /// An [`OwnerStateCode`].
    pub owner_state: u8,
    /// Reserved, zero.
    pub reserved: u16,
}

/// A decoded, validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// See [`Operation::FunctionCount`].
    FunctionCount,
    /// See [`Operation::FunctionAt`].
    FunctionAt {
        /// Inventory index.
        index: u32,
    },
    /// See [`Operation::Function`].
    Function(Bdf),
    /// See [`Operation::Quarantine`].
    Quarantine(Bdf),
    /// See [`Operation::Assign`].
    Assign(AssignRequest),
    /// See [`Operation::Release`].
    Release(ReleaseRequest),
    /// See [`Operation::ConfigRead`].
    ConfigRead {
        /// The function.
        bdf: Bdf,
        /// Byte offset (checked against the width and 4 KiB).
        offset: u16,
        /// The width.
        width: AccessWidthCode,
    },
    /// See [`Operation::ConfigWrite`].
    ConfigWrite {
        /// The function.
        bdf: Bdf,
        /// Byte offset (checked against the width and 4 KiB).
        offset: u16,
        /// The width.
        width: AccessWidthCode,
        /// The value.
        value: u32,
    },
    /// See [`Operation::ProgramMsi`].
    ProgramMsi(MsiProgramRequest),
    /// See [`Operation::EnableVfs`].
    EnableVfs(EnableVfsRequest),
    /// See [`Operation::Claim`].
    Claim(ClaimRequest),
    /// See [`Operation::BarMemory`].
    BarMemory {
        /// The function.
        bdf: Bdf,
        /// BAR register index, 0..=5.
        index: u8,
        /// The part of the BAR.
        part: u8,
    },
    /// See [`Operation::MsixRead`].
    MsixRead {
        /// The function.
        bdf: Bdf,
        /// The table or the PBA.
        structure: MsixStructure,
        /// Byte offset in it (a multiple of 4).
        offset: u32,
    },
    /// See [`Operation::RouteIntx`].
    RouteIntx {
        /// The function.
        bdf: Bdf,
        /// The notification bit, 0..=63.
        bit: u8,
    },
}

/// The two MSI-X structures in BAR memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixStructure {
    /// The MSI-X table (16 bytes per entry).
    Table,
    /// The Pending Bit Array (one bit per entry).
    PendingBits,
}

/// The size of config space (PCIe Base spec 6.0 section 7.2.2: 4 KiB per function).
const CONFIG_SPACE_SIZE: u32 = 4096;

fn read<T: FromBytes>(bytes: &[u8]) -> Result<T, PciError> {
    T::read_from_bytes(bytes).map_err(|_| PciError::MalformedRequest)
}

fn check_access(offset: u16, width: u8) -> Result<AccessWidthCode, PciError> {
    let code = AccessWidthCode::decode(width)?;
    if !offset.is_multiple_of(u16::from(width)) {
        return Err(PciError::MisalignedAccess);
    }
    if u32::from(offset) + u32::from(width) > CONFIG_SPACE_SIZE {
        return Err(PciError::OffsetOutOfRange);
    }
    Ok(code)
}

/// Decodes the bytes of a request for operation code `operation`. Never panics; any bytes that
/// are not exactly a valid request give an error.
pub fn decode_request(operation: u32, bytes: &[u8]) -> Result<Request, PciError> {
    match Operation::try_from(operation)? {
        Operation::FunctionCount => {
            if bytes.is_empty() {
                Ok(Request::FunctionCount)
            } else {
                Err(PciError::MalformedRequest)
            }
        }
        Operation::FunctionAt => {
            let request: FunctionRequest = read(bytes)?;
            if request.reserved != 0 || request.bdf.requester_id() != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::FunctionAt {
                index: request.index,
            })
        }
        operation @ (Operation::Function | Operation::Quarantine) => {
            let request: FunctionRequest = read(bytes)?;
            if request.reserved != 0 || request.index != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(if operation == Operation::Function {
                Request::Function(request.bdf)
            } else {
                Request::Quarantine(request.bdf)
            })
        }
        Operation::Assign => {
            let request: AssignRequest = read(bytes)?;
            if request.reserved != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::Assign(request))
        }
        Operation::Release => {
            let request: ReleaseRequest = read(bytes)?;
            if request.reserved != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::Release(request))
        }
        Operation::ConfigRead => {
            let request: ConfigReadRequest = read(bytes)?;
            if request.reserved != [0; 3] {
                return Err(PciError::MalformedRequest);
            }
            let width = check_access(request.offset, request.width)?;
            Ok(Request::ConfigRead {
                bdf: request.bdf,
                offset: request.offset,
                width,
            })
        }
        Operation::ConfigWrite => {
            let request: ConfigWriteRequest = read(bytes)?;
            if request.reserved != [0; 3] {
                return Err(PciError::MalformedRequest);
            }
            let width = check_access(request.offset, request.width)?;
            let fits = match width {
                AccessWidthCode::Byte => request.value <= 0xff,
                AccessWidthCode::Word => request.value <= 0xffff,
                AccessWidthCode::Dword => true,
            };
            if !fits {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::ConfigWrite {
                bdf: request.bdf,
                offset: request.offset,
                width,
                value: request.value,
            })
        }
        Operation::ProgramMsi => {
            let request: MsiProgramRequest = read(bytes)?;
            let valid = match request.kind {
                0 => {
                    request.vector == 0
                        && request.vector_count.is_power_of_two()
                        && request.vector_count <= 32
                }
                1 => request.vector_count == 1 && request.vector < 2048,
                _ => false,
            };
            if !valid || request.flags & !1 != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::ProgramMsi(request))
        }
        Operation::EnableVfs => {
            let request: EnableVfsRequest = read(bytes)?;
            Ok(Request::EnableVfs(request))
        }
        Operation::Claim => {
            let request: ClaimRequest = read(bytes)?;
            if request.reserved != 0 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::Claim(request))
        }
        Operation::BarMemory => {
            let request: BarRequest = read(bytes)?;
            if request.index > 5 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::BarMemory {
                bdf: request.bdf,
                index: request.index,
                part: request.part,
            })
        }
        Operation::MsixRead => {
            let request: MsixReadRequest = read(bytes)?;
            let structure = match request.structure {
                0 => MsixStructure::Table,
                1 => MsixStructure::PendingBits,
                _ => return Err(PciError::MalformedRequest),
            };
            if request.reserved != 0 {
                return Err(PciError::MalformedRequest);
            }
            if !request.offset.is_multiple_of(4) {
                return Err(PciError::MisalignedAccess);
            }
            Ok(Request::MsixRead {
                bdf: request.bdf,
                structure,
                offset: request.offset,
            })
        }
        Operation::RouteIntx => {
            let request: IntxRouteRequest = read(bytes)?;
            if request.reserved != 0 || request.bit >= 64 {
                return Err(PciError::MalformedRequest);
            }
            Ok(Request::RouteIntx {
                bdf: request.bdf,
                bit: request.bit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_config_write() {
        let request = ConfigWriteRequest {
            bdf: Bdf::new(3, 0, 0).unwrap(),
            offset: 4,
            width: 2,
            reserved: [0; 3],
            value: 0x0406,
        };
        assert_eq!(
            decode_request(Operation::ConfigWrite as u32, request.as_bytes()),
            Ok(Request::ConfigWrite {
                bdf: request.bdf,
                offset: 4,
                width: AccessWidthCode::Word,
                value: 0x0406
            })
        );
    }

    #[test]
    fn rejects_bad_requests() {
        let mut request = ConfigReadRequest {
            bdf: Bdf::new(3, 0, 0).unwrap(),
            offset: 3,
            width: 2,
            reserved: [0; 3],
        };
        let op = Operation::ConfigRead as u32;
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MisalignedAccess)
        );
        request.offset = 4094;
        request.width = 4;
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MisalignedAccess)
        );
        request.offset = 4096 - 4;
        assert!(decode_request(op, request.as_bytes()).is_ok());
        request.width = 3;
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MisalignedAccess)
        );
        request.width = 4;
        request.reserved = [0, 1, 0];
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        assert_eq!(
            decode_request(op, &request.as_bytes()[..7]),
            Err(PciError::MalformedRequest)
        );
        assert_eq!(decode_request(99, &[]), Err(PciError::UnknownOperation));
        assert_eq!(
            decode_request(Operation::FunctionCount as u32, &[0]),
            Err(PciError::MalformedRequest)
        );
    }

    #[test]
    fn write_value_must_fit_its_width() {
        let request = ConfigWriteRequest {
            bdf: Bdf::from_requester_id(0x100),
            offset: 4,
            width: 1,
            reserved: [0; 3],
            value: 0x100,
        };
        assert_eq!(
            decode_request(Operation::ConfigWrite as u32, request.as_bytes()),
            Err(PciError::MalformedRequest)
        );
    }

    #[test]
    fn msi_requests_are_checked() {
        let mut request = MsiProgramRequest {
            bdf: Bdf::from_requester_id(0x100),
            vector: 0,
            irte_handle: 7,
            subhandle: 0,
            vector_count: 3,
            kind: 0,
            flags: 1,
        };
        let op = Operation::ProgramMsi as u32;
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        request.vector_count = 4;
        assert!(decode_request(op, request.as_bytes()).is_ok());
        request.kind = 2;
        assert_eq!(
            decode_request(op, request.as_bytes()),
            Err(PciError::MalformedRequest)
        );
    }

    #[test]
    fn claim_and_bar_requests_are_checked() {
        let claim = ClaimRequest {
            bdf: Bdf::from_requester_id(0x0600),
            reserved: 0,
            domain: 3,
        };
        assert_eq!(
            decode_request(Operation::Claim as u32, claim.as_bytes()),
            Ok(Request::Claim(claim))
        );
        let bad = ClaimRequest {
            reserved: 1,
            ..claim
        };
        assert_eq!(
            decode_request(Operation::Claim as u32, bad.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        let mut bar = BarRequest {
            bdf: Bdf::from_requester_id(0x0600),
            index: 5,
            part: 0,
        };
        let op = Operation::BarMemory as u32;
        assert_eq!(
            decode_request(op, bar.as_bytes()),
            Ok(Request::BarMemory {
                bdf: bar.bdf,
                index: 5,
                part: 0
            })
        );
        bar.index = 6;
        assert_eq!(
            decode_request(op, bar.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        bar.index = 0;
        bar.part = 2;
        assert_eq!(
            decode_request(op, bar.as_bytes()),
            Ok(Request::BarMemory {
                bdf: bar.bdf,
                index: 0,
                part: 2
            }),
            "the server decides which parts exist"
        );
        assert_eq!(
            decode_request(op, &bar.as_bytes()[..3]),
            Err(PciError::MalformedRequest)
        );
    }

    #[test]
    fn msix_reads_name_a_structure_and_an_aligned_offset() {
        let op = Operation::MsixRead as u32;
        let mut read = MsixReadRequest {
            bdf: Bdf::from_requester_id(0x0100),
            structure: 1,
            reserved: 0,
            offset: 8,
        };
        assert_eq!(
            decode_request(op, read.as_bytes()),
            Ok(Request::MsixRead {
                bdf: read.bdf,
                structure: MsixStructure::PendingBits,
                offset: 8
            })
        );
        read.offset = 6;
        assert_eq!(
            decode_request(op, read.as_bytes()),
            Err(PciError::MisalignedAccess)
        );
        read.offset = 0;
        read.structure = 2;
        assert_eq!(
            decode_request(op, read.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        read.structure = 0;
        read.reserved = 1;
        assert_eq!(
            decode_request(op, read.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        assert_eq!(decode_request(op, &[0; 6]), Err(PciError::MalformedRequest));
    }

    #[test]
    fn intx_routes_name_a_function_and_a_bit() {
        let request = IntxRouteRequest {
            bdf: Bdf::from_requester_id(0x0900),
            bit: 63,
            reserved: 0,
        };
        assert_eq!(
            decode_request(14, request.as_bytes()),
            Ok(Request::RouteIntx {
                bdf: Bdf::from_requester_id(0x0900),
                bit: 63
            })
        );
        let mut bad = request;
        bad.bit = 64;
        assert_eq!(
            decode_request(14, bad.as_bytes()),
            Err(PciError::MalformedRequest),
            "a notification has 64 bits"
        );
        bad = request;
        bad.reserved = 1;
        assert_eq!(
            decode_request(14, bad.as_bytes()),
            Err(PciError::MalformedRequest)
        );
        assert_eq!(
            decode_request(14, &request.as_bytes()[..3]),
            Err(PciError::MalformedRequest)
        );
        assert_eq!(
            decode_request(15, request.as_bytes()),
            Err(PciError::UnknownOperation)
        );
        assert_eq!(core::mem::size_of::<IntxRouteReply>(), 12);
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(op in 0u32..16, bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_request(op, &bytes);
        }

        #[test]
        fn accepted_config_accesses_stay_inside_config_space(offset in any::<u16>(), width in any::<u8>()) {
            let request = ConfigReadRequest { bdf: Bdf::from_requester_id(0), offset, width, reserved: [0; 3] };
            if let Ok(Request::ConfigRead { offset, width, .. }) = decode_request(Operation::ConfigRead as u32, request.as_bytes()) {
                prop_assert!(u32::from(offset) + width as u32 <= 4096);
                prop_assert_eq!(offset % width as u16, 0);
            }
        }
    }
}
