//! Whether an owner may point a function's MSI or MSI-X message at the IRTEs it names: the
//! pci-server does not take an owner's word for an `irte_handle`. Before anything is written,
//! every IRTE index the message can select (VT-d spec rev 4.1 section 5.1.5.2: the handle, or
//! handle + subhandle with SHV, and for multi-vector MSI handle + vector number) is looked up
//! at the iommu-server (`iommu-api` `QueryIrte`) and must be
//!
//! - present (allocated and programmed, step 8 of `docs/passthrough.md`),
//! - the caller's (the iommu-server reports whose line the entry delivers to; only the client
//!   that allocated an entry may program it, and only for its own line),
//! - for this function: its source-id verification (VT-d spec 9.10, SVT/SQ/SID) names one of
//!   the function's requester ids (its own, or a DMA alias a bridge gives it), all 16 bits
//!   compared, or the single bus of one of them.
//!
//! The decisions are pure ([`indices`], [`check`]) and host-tested; the query goes through
//! [`crate::iommu::DomainBinding::irte_status`].

use core::fmt;

use iommu_api::IrteStatusReply;
use pci_api::{Bdf, MsiProgramRequest, OwnerId};

/// Most IRTEs one request can select (multi-vector MSI: 32 vectors, PCIe 6.0 section 7.7.1.2).
pub const MAX_INDICES: usize = 32;

/// SVT value: verify the requester id with SID and SQ (VT-d spec 9.10).
const SVT_REQUESTER_ID: u8 = 1;
/// SVT value: verify that the requester's bus lies in SID's range (VT-d spec 9.10).
const SVT_BUS_RANGE: u8 = 2;

/// Why a handle was not accepted. Nothing was written when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteRefusal {
    /// Handle + subhandle (+ vector) does not fit the 16-bit interrupt index.
    IndexOverflow {
        /// The handle asked for.
        handle: u16,
    },
    /// The iommu-server could not say (no such entry, or the call failed); its error code.
    Unverifiable {
        /// The IRTE index.
        index: u16,
        /// The iommu-server's error code (0: the call itself failed).
        code: u32,
    },
    /// The entry is free, or allocated and not programmed yet.
    NotProgrammed {
        /// The IRTE index.
        index: u16,
    },
    /// The entry delivers to another client's line (0: to no client's).
    OtherOwner {
        /// The IRTE index.
        index: u16,
        /// Whose it is.
        owner: OwnerId,
    },
    /// The entry verifies requester ids that are not this function's.
    OtherSource {
        /// The IRTE index.
        index: u16,
        /// SVT of the entry.
        validation: u8,
        /// SQ of the entry.
        qualifier: u8,
        /// SID of the entry.
        source: Bdf,
    },
}

impl fmt::Display for IrteRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrteRefusal::IndexOverflow { handle } => {
                write!(f, "IRTE {handle} plus subhandle/vectors is beyond 65535")
            }
            IrteRefusal::Unverifiable { index, code } => write!(
                f,
                "IRTE {index} could not be verified at the iommu-server (code {code})"
            ),
            IrteRefusal::NotProgrammed { index } => {
                write!(f, "IRTE {index} is not allocated and programmed")
            }
            IrteRefusal::OtherOwner { index, owner } => {
                write!(f, "IRTE {index} delivers to {owner}, not the caller")
            }
            IrteRefusal::OtherSource {
                index,
                validation,
                qualifier,
                source,
            } => write!(
                f,
                "IRTE {index} verifies source {source} (SVT {validation}, SQ {qualifier}), not \
                 this function or its DMA aliases"
            ),
        }
    }
}

/// Every IRTE index the message `request` asks for can select: MSI-X the handle (plus the
/// subhandle with SHV); MSI with one vector the handle, with n vectors handle + 0..n (the
/// pci-server sets SHV with subhandle 0 and the function ORs the vector number into the data).
/// `request` has passed `pci_api`'s decoder (vector counts are powers of two up to 32).
pub fn indices(
    request: &MsiProgramRequest,
) -> Result<heapless::Vec<u16, MAX_INDICES>, IrteRefusal> {
    let overflow = IrteRefusal::IndexOverflow {
        handle: request.irte_handle,
    };
    let (first, count) = if request.kind == 1 {
        let first = if request.flags & 1 != 0 {
            request.irte_handle.checked_add(request.subhandle)
        } else {
            Some(request.irte_handle)
        };
        (first.ok_or(overflow)?, 1)
    } else {
        (request.irte_handle, request.vector_count.max(1))
    };
    let mut indices = heapless::Vec::new();
    for vector in 0..count {
        let index = first.checked_add(vector).ok_or(overflow)?;
        indices.push(index).map_err(|_| overflow)?;
    }
    Ok(indices)
}

/// Checks what the iommu-server said about IRTE `index` against `caller` and the function's
/// requester ids (`requester_ids`, its own first).
pub fn check(
    index: u16,
    status: &IrteStatusReply,
    caller: OwnerId,
    requester_ids: &[Bdf],
) -> Result<(), IrteRefusal> {
    if status.present == 0 {
        return Err(IrteRefusal::NotProgrammed { index });
    }
    if status.owner != caller.0 {
        return Err(IrteRefusal::OtherOwner {
            index,
            owner: OwnerId(status.owner),
        });
    }
    let source = Bdf::from_requester_id(status.source_id.0);
    let verified = match (status.source_validation, status.source_qualifier) {
        (SVT_REQUESTER_ID, 0) => requester_ids.contains(&source),
        (SVT_BUS_RANGE, _) => {
            let (start, end) = (status.source_id.bus(), status.source_id.devfn());
            start == end && requester_ids.iter().any(|id| id.bus() == start)
        }
        _ => false,
    };
    if !verified {
        return Err(IrteRefusal::OtherSource {
            index,
            validation: status.source_validation,
            qualifier: status.source_qualifier,
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: OwnerId = OwnerId(64);
    const DEVICE: Bdf = Bdf::from_bus_devfn(6, 0x08);
    const ALIAS: Bdf = Bdf::from_bus_devfn(6, 0);

    fn request(kind: u8, handle: u16, subhandle: Option<u16>, count: u16) -> MsiProgramRequest {
        MsiProgramRequest {
            bdf: DEVICE,
            vector: 0,
            irte_handle: handle,
            subhandle: subhandle.unwrap_or(0),
            vector_count: count,
            kind,
            flags: u8::from(subhandle.is_some()),
        }
    }

    fn status(owner: u32, validation: u8, source: u16) -> IrteStatusReply {
        IrteStatusReply {
            owner,
            present: 1,
            source_validation: validation,
            source_qualifier: 0,
            vector: 0x49,
            source_id: iommu_api::Bdf(source),
            reserved: 0,
        }
    }

    #[test]
    fn the_indices_are_the_ones_the_message_can_select() {
        assert_eq!(indices(&request(1, 7, None, 1)).unwrap().as_slice(), &[7]);
        assert_eq!(
            indices(&request(1, 7, Some(3), 1)).unwrap().as_slice(),
            &[10]
        );
        assert_eq!(indices(&request(0, 7, None, 1)).unwrap().as_slice(), &[7]);
        assert_eq!(
            indices(&request(0, 7, None, 4)).unwrap().as_slice(),
            &[7, 8, 9, 10]
        );
        assert_eq!(indices(&request(0, 7, None, 32)).unwrap().len(), 32);
        assert_eq!(
            indices(&request(1, 0xfff0, Some(0x10), 1)),
            Err(IrteRefusal::IndexOverflow { handle: 0xfff0 })
        );
        assert_eq!(
            indices(&request(0, 0xfffe, None, 4)),
            Err(IrteRefusal::IndexOverflow { handle: 0xfffe })
        );
    }

    #[test]
    fn only_a_present_entry_of_the_caller_for_this_function_passes() {
        let ids = [DEVICE, ALIAS];
        let own = DEVICE.requester_id();
        assert_eq!(check(3, &status(64, 1, own), OWNER, &ids), Ok(()));
        assert_eq!(
            check(3, &status(64, 1, ALIAS.requester_id()), OWNER, &ids),
            Ok(()),
            "the alias a PCIe-to-PCI bridge gives it"
        );
        assert_eq!(check(3, &status(64, 2, 0x0606), OWNER, &ids), Ok(()));
        let absent = IrteStatusReply {
            present: 0,
            ..status(64, 1, own)
        };
        assert_eq!(
            check(3, &absent, OWNER, &ids),
            Err(IrteRefusal::NotProgrammed { index: 3 })
        );
        assert_eq!(
            check(3, &status(65, 1, own), OWNER, &ids),
            Err(IrteRefusal::OtherOwner {
                index: 3,
                owner: OwnerId(65)
            })
        );
        assert_eq!(
            check(3, &status(0, 1, own), OWNER, &ids),
            Err(IrteRefusal::OtherOwner {
                index: 3,
                owner: OwnerId(0)
            })
        );
        let other_device = check(3, &status(64, 1, 0x0700), OWNER, &ids);
        assert!(matches!(other_device, Err(IrteRefusal::OtherSource { .. })));
        // A qualifier that ignores function bits, no verification, a range of buses: too wide.
        let wide = IrteStatusReply {
            source_qualifier: 3,
            ..status(64, 1, own)
        };
        assert!(check(3, &wide, OWNER, &ids).is_err());
        assert!(check(3, &status(64, 0, own), OWNER, &ids).is_err());
        assert!(check(3, &status(64, 2, 0x0607), OWNER, &ids).is_err());
        assert!(check(3, &status(64, 2, 0x0707), OWNER, &ids).is_err());
        assert!(check(3, &status(64, 3, own), OWNER, &ids).is_err());
        let text = format!("{}", other_device.unwrap_err());
        assert!(text.contains("07:00.0"), "{text}");
    }
}
