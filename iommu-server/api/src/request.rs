//! Typed requests: decoding untrusted message bytes into validated values.
//!
//! Decoding checks the shape (exact length, reserved fields zero, enumerated fields defined,
//! alias count in range); the server then checks the request against its state.

use crate::messages::*;
use crate::{Bdf, BridgeReport, IoVirt, IommuError, Operation, ReportBridgesRequest};
use zerocopy::FromBytes;

/// Interrupt delivery mode of a remapped interrupt (Intel SDM vol 3 11.11.2). Only the modes a
/// device interrupt may use are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Deliver to the destination's vector.
    Fixed,
    /// Deliver to the lowest-priority processor among the destinations.
    LowestPriority,
}

/// Trigger mode of a remapped interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    /// Edge triggered (MSI, MSI-X).
    Edge,
    /// Level triggered (IOAPIC pins).
    Level,
}

/// How the destination field is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationMode {
    /// Destination is one APIC id.
    Physical,
    /// Destination is a logical APIC id set.
    Logical,
}

/// Which requester IDs may use an IRTE (VT-d spec 9.10, fields SVT/SQ/SID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceValidation {
    /// SVT = 01b: the requester ID must equal `source_id`, ignoring function bits per `qualifier`
    /// (SQ: 0 compare all bits, 1 ignore bit 2, 2 ignore bits 2:1, 3 ignore bits 2:0).
    RequesterId {
        /// The expected requester ID.
        source_id: Bdf,
        /// SQ, 0..=3.
        qualifier: u8,
    },
    /// SVT = 10b: the requester's bus must lie in `start_bus..=end_bus` (e.g. devices behind a
    /// PCIe-to-PCI bridge whose requests carry the bridge's secondary bus).
    BusRange {
        /// First bus.
        start_bus: u8,
        /// Last bus.
        end_bus: u8,
    },
}

/// Everything a remapped-format IRTE says (VT-d spec 9.10), validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrteSettings {
    /// Vector, 0x10..=0xff.
    pub vector: u8,
    /// Destination APIC id (xAPIC: 0..=0xff).
    pub destination: u32,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
    /// Trigger mode.
    pub trigger_mode: TriggerMode,
    /// Destination mode.
    pub destination_mode: DestinationMode,
    /// Redirection hint.
    pub redirection_hint: bool,
    /// Source-id verification.
    pub source: SourceValidation,
}

/// Arguments of [`Operation::Map`] after decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapArguments {
    /// Domain handle.
    pub domain: u32,
    /// Delegated memory handle.
    pub memory: u32,
    /// Offset into the delegated memory.
    pub offset: u64,
    /// Where the device sees it.
    pub iova: IoVirt,
    /// Length in bytes.
    pub size: u64,
    /// Requested rights (non-empty).
    pub rights: Rights,
}

/// A device with its DMA aliases, decoded from a [`DeviceRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceArguments {
    /// Domain handle.
    pub domain: u32,
    /// The device.
    pub device: Bdf,
    /// Number of valid entries in `aliases`.
    pub alias_count: usize,
    /// The aliases (entries past `alias_count` are zero).
    pub aliases: [Bdf; MAX_ALIASES],
}

impl DeviceArguments {
    /// The used aliases.
    pub fn aliases(&self) -> &[Bdf] {
        self.aliases.get(..self.alias_count).unwrap_or(&[])
    }
}

/// A decoded, shape-checked request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "decoded on the stack and consumed at once; a bridge report part (484 bytes) is               the largest message, and the servers have no heap to box it"
)]
pub enum Request {
    /// See [`Operation::CreateDomain`].
    CreateDomain,
    /// See [`Operation::DestroyDomain`].
    DestroyDomain {
        /// Domain handle.
        domain: u32,
    },
    /// See [`Operation::Map`].
    Map(MapArguments),
    /// See [`Operation::Unmap`].
    Unmap {
        /// Domain handle.
        domain: u32,
        /// Start of the mapping.
        iova: IoVirt,
        /// Length of the mapping.
        size: u64,
    },
    /// See [`Operation::AttachDevice`].
    AttachDevice(DeviceArguments),
    /// See [`Operation::DetachDevice`].
    DetachDevice(DeviceArguments),
    /// See [`Operation::AllocateIrte`].
    AllocateIrte,
    /// See [`Operation::ProgramIrte`].
    ProgramIrte {
        /// IRTE index.
        handle: u16,
        /// The entry's contents.
        settings: IrteSettings,
    },
    /// See [`Operation::FreeIrte`].
    FreeIrte {
        /// IRTE index.
        handle: u16,
    },
    /// See [`Operation::SubscribeFaults`].
    SubscribeFaults {
        /// The device.
        device: Bdf,
    },
    /// See [`Operation::DelegateMemory`].
    DelegateMemory {
        /// Rights asked for (non-empty).
        rights: Rights,
    },
    /// See [`Operation::TakeFault`].
    TakeFault,
    /// See [`Operation::QueryIrte`].
    QueryIrte {
        /// IRTE index.
        handle: u16,
    },
    /// See [`Operation::AllocateIoapicIrte`].
    AllocateIoapicIrte {
        /// The IOAPIC pin.
        gsi: u32,
        /// The owner the pin is routed to.
        owner: u32,
    },
    /// See [`Operation::ReportBridges`].
    ReportBridges(BridgeReport),
}

/// Reads a message struct that must fill `bytes` exactly.
fn exact<T: FromBytes>(bytes: &[u8]) -> Result<T, IommuError> {
    T::read_from_bytes(bytes).map_err(|_| IommuError::MalformedMessage)
}

fn zero<T: PartialEq + Default>(value: T) -> Result<(), IommuError> {
    if value == T::default() {
        Ok(())
    } else {
        Err(IommuError::InvalidField)
    }
}

fn decode_device(message: DeviceRequest) -> Result<DeviceArguments, IommuError> {
    let alias_count = usize::from(message.alias_count);
    if alias_count > MAX_ALIASES {
        return Err(IommuError::InvalidAliases);
    }
    let unused = message.aliases.get(alias_count..).unwrap_or(&[]);
    if unused.iter().any(|alias| alias.0 != 0) {
        return Err(IommuError::InvalidField);
    }
    let used = message.aliases.get(..alias_count).unwrap_or(&[]);
    for (index, alias) in used.iter().enumerate() {
        let later = used.get(index + 1..).unwrap_or(&[]);
        if *alias == message.device || later.contains(alias) {
            return Err(IommuError::InvalidAliases);
        }
    }
    Ok(DeviceArguments {
        domain: message.domain,
        device: message.device,
        alias_count,
        aliases: message.aliases,
    })
}

fn decode_irte(message: ProgramIrteRequest) -> Result<IrteSettings, IommuError> {
    zero(message.reserved)?;
    let delivery_mode = match message.delivery_mode {
        0 => DeliveryMode::Fixed,
        1 => DeliveryMode::LowestPriority,
        _ => return Err(IommuError::InvalidField),
    };
    let trigger_mode = match message.trigger_mode {
        0 => TriggerMode::Edge,
        1 => TriggerMode::Level,
        _ => return Err(IommuError::InvalidField),
    };
    let destination_mode = match message.destination_mode {
        0 => DestinationMode::Physical,
        1 => DestinationMode::Logical,
        _ => return Err(IommuError::InvalidField),
    };
    let redirection_hint = match message.redirection_hint {
        0 => false,
        1 => true,
        _ => return Err(IommuError::InvalidField),
    };
    let source = match message.source_validation {
        1 if message.source_qualifier <= 3 => SourceValidation::RequesterId {
            source_id: message.source_id,
            qualifier: message.source_qualifier,
        },
        2 if message.source_qualifier == 0 => SourceValidation::BusRange {
            start_bus: message.source_id.bus(),
            end_bus: message.source_id.devfn(),
        },
        0..=2 => return Err(IommuError::InvalidIrteConfiguration),
        _ => return Err(IommuError::InvalidField),
    };
    Ok(IrteSettings {
        vector: message.vector,
        destination: message.destination,
        delivery_mode,
        trigger_mode,
        destination_mode,
        redirection_hint,
        source,
    })
}

impl Request {
    /// Decodes the message of operation `code` from `payload` (untrusted).
    pub fn decode(code: u32, payload: &[u8]) -> Result<Request, IommuError> {
        let operation = Operation::try_from(code)?;
        Ok(match operation {
            Operation::CreateDomain => {
                let message: CreateDomainRequest = exact(payload)?;
                zero(message.flags)?;
                Request::CreateDomain
            }
            Operation::DestroyDomain => {
                let message: DestroyDomainRequest = exact(payload)?;
                Request::DestroyDomain {
                    domain: message.domain,
                }
            }
            Operation::Map => {
                let message: MapRequest = exact(payload)?;
                zero(message.reserved)?;
                let rights = Rights::from_bits(message.rights)
                    .filter(|rights| !rights.is_empty())
                    .ok_or(IommuError::InvalidRights)?;
                Request::Map(MapArguments {
                    domain: message.domain,
                    memory: message.memory,
                    offset: message.offset,
                    iova: message.iova,
                    size: message.size,
                    rights,
                })
            }
            Operation::Unmap => {
                let message: UnmapRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::Unmap {
                    domain: message.domain,
                    iova: message.iova,
                    size: message.size,
                }
            }
            Operation::AttachDevice => Request::AttachDevice(decode_device(exact(payload)?)?),
            Operation::DetachDevice => Request::DetachDevice(decode_device(exact(payload)?)?),
            Operation::AllocateIrte => {
                let message: AllocateIrteRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::AllocateIrte
            }
            Operation::ProgramIrte => {
                let message: ProgramIrteRequest = exact(payload)?;
                Request::ProgramIrte {
                    handle: message.handle,
                    settings: decode_irte(message)?,
                }
            }
            Operation::FreeIrte => {
                let message: IrteRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::FreeIrte {
                    handle: message.handle,
                }
            }
            Operation::SubscribeFaults => {
                let message: SubscribeFaultsRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::SubscribeFaults {
                    device: message.device,
                }
            }
            Operation::DelegateMemory => {
                let message: DelegateMemoryRequest = exact(payload)?;
                zero(message.reserved)?;
                let rights = Rights::from_bits(message.rights)
                    .filter(|rights| !rights.is_empty())
                    .ok_or(IommuError::InvalidRights)?;
                Request::DelegateMemory { rights }
            }
            Operation::TakeFault => {
                let message: TakeFaultRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::TakeFault
            }
            Operation::QueryIrte => {
                let message: IrteRequest = exact(payload)?;
                zero(message.reserved)?;
                Request::QueryIrte {
                    handle: message.handle,
                }
            }
            Operation::AllocateIoapicIrte => {
                let message: IoapicIrteRequest = exact(payload)?;
                Request::AllocateIoapicIrte {
                    gsi: message.gsi,
                    owner: message.owner,
                }
            }
            Operation::ReportBridges => {
                let message: ReportBridgesRequest = exact(payload)?;
                Request::ReportBridges(BridgeReport::decode(&message)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zerocopy::IntoBytes;

    #[test]
    fn map_round_trip_and_checks() {
        let mut message = MapRequest {
            domain: 3,
            memory: 7,
            offset: 0x1000,
            iova: IoVirt(0x10_0000),
            size: 0x2000,
            rights: 3,
            reserved: 0,
        };
        let decoded = Request::decode(Operation::Map as u32, message.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            Request::Map(MapArguments {
                domain: 3,
                memory: 7,
                offset: 0x1000,
                iova: IoVirt(0x10_0000),
                size: 0x2000,
                rights: Rights::READ | Rights::WRITE,
            })
        );
        message.rights = 0;
        assert_eq!(
            Request::decode(3, message.as_bytes()),
            Err(IommuError::InvalidRights)
        );
        message.rights = 4;
        assert_eq!(
            Request::decode(3, message.as_bytes()),
            Err(IommuError::InvalidRights)
        );
        message.rights = 1;
        message.reserved = 1;
        assert_eq!(
            Request::decode(3, message.as_bytes()),
            Err(IommuError::InvalidField)
        );
        assert_eq!(
            Request::decode(3, &[0; 39]),
            Err(IommuError::MalformedMessage)
        );
        assert_eq!(
            Request::decode(3, &[0; 41]),
            Err(IommuError::MalformedMessage)
        );
        assert_eq!(Request::decode(0, &[]), Err(IommuError::UnknownOperation));
        assert_eq!(Request::decode(16, &[]), Err(IommuError::UnknownOperation));
    }

    #[test]
    fn device_aliases_are_checked() {
        let mut message = DeviceRequest {
            domain: 1,
            device: Bdf::new(3, 0, 0).unwrap(),
            alias_count: 1,
            aliases: [Bdf::default(); MAX_ALIASES],
        };
        message.aliases[0] = Bdf::new(2, 0, 0).unwrap();
        let Request::AttachDevice(arguments) = Request::decode(5, message.as_bytes()).unwrap()
        else {
            panic!("wrong request");
        };
        assert_eq!(arguments.aliases(), &[Bdf::new(2, 0, 0).unwrap()]);
        message.alias_count = 9;
        assert_eq!(
            Request::decode(5, message.as_bytes()),
            Err(IommuError::InvalidAliases)
        );
        message.alias_count = 2;
        message.aliases[1] = Bdf::new(2, 0, 0).unwrap();
        assert_eq!(
            Request::decode(6, message.as_bytes()),
            Err(IommuError::InvalidAliases)
        );
        message.alias_count = 1;
        assert_eq!(
            Request::decode(6, message.as_bytes()),
            Err(IommuError::InvalidField)
        );
        message.aliases[1] = Bdf(0);
        message.aliases[0] = message.device;
        assert_eq!(
            Request::decode(6, message.as_bytes()),
            Err(IommuError::InvalidAliases)
        );
    }

    #[test]
    fn irte_fields_are_checked() {
        let mut message = ProgramIrteRequest {
            handle: 4,
            source_id: Bdf::new(0, 3, 0).unwrap(),
            source_validation: 1,
            vector: 0x40,
            destination: 1,
            ..Default::default()
        };
        let Request::ProgramIrte { handle, settings } =
            Request::decode(8, message.as_bytes()).unwrap()
        else {
            panic!("wrong request");
        };
        assert_eq!(handle, 4);
        assert_eq!(settings.delivery_mode, DeliveryMode::Fixed);
        assert_eq!(
            settings.source,
            SourceValidation::RequesterId {
                source_id: Bdf::new(0, 3, 0).unwrap(),
                qualifier: 0
            }
        );
        message.source_validation = 0;
        assert_eq!(
            Request::decode(8, message.as_bytes()),
            Err(IommuError::InvalidIrteConfiguration)
        );
        message.source_validation = 3;
        assert_eq!(
            Request::decode(8, message.as_bytes()),
            Err(IommuError::InvalidField)
        );
        message.source_validation = 1;
        message.delivery_mode = 2;
        assert_eq!(
            Request::decode(8, message.as_bytes()),
            Err(IommuError::InvalidField)
        );
    }

    #[test]
    fn delegation_and_fault_requests_are_checked() {
        let mut message = DelegateMemoryRequest {
            rights: 3,
            reserved: 0,
        };
        assert_eq!(
            Request::decode(11, message.as_bytes()),
            Ok(Request::DelegateMemory {
                rights: Rights::READ | Rights::WRITE
            })
        );
        message.rights = 0;
        assert_eq!(
            Request::decode(11, message.as_bytes()),
            Err(IommuError::InvalidRights)
        );
        message.rights = 1;
        message.reserved = 5;
        assert_eq!(
            Request::decode(11, message.as_bytes()),
            Err(IommuError::InvalidField)
        );
        assert_eq!(Request::decode(12, &[0; 4]), Ok(Request::TakeFault));
        assert_eq!(
            Request::decode(12, &[1, 0, 0, 0]),
            Err(IommuError::InvalidField)
        );
        assert_eq!(
            Request::decode(12, &[0; 8]),
            Err(IommuError::MalformedMessage)
        );
    }

    #[test]
    fn irte_queries_name_one_handle_with_the_reserved_half_zero() {
        assert_eq!(
            Request::decode(13, &[7, 1, 0, 0]),
            Ok(Request::QueryIrte { handle: 0x107 })
        );
        assert_eq!(
            Request::decode(13, &[7, 0, 0, 1]),
            Err(IommuError::InvalidField)
        );
        assert_eq!(
            Request::decode(13, &[7, 0]),
            Err(IommuError::MalformedMessage)
        );
        assert_eq!(
            Request::decode(16, &[0; 4]),
            Err(IommuError::UnknownOperation)
        );
    }

    #[test]
    fn ioapic_irte_requests_name_a_gsi_and_an_owner() {
        let message = IoapicIrteRequest { gsi: 21, owner: 64 };
        assert_eq!(
            Request::decode(14, message.as_bytes()),
            Ok(Request::AllocateIoapicIrte { gsi: 21, owner: 64 })
        );
        assert_eq!(
            Request::decode(14, &message.as_bytes()[..4]),
            Err(IommuError::MalformedMessage)
        );
        assert_eq!(
            Request::decode(14, &[0; 12]),
            Err(IommuError::MalformedMessage)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(code in 0u32..18, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(code, &bytes);
        }

        #[test]
        fn decode_of_right_length_is_total(code in 1u32..=14, seed in any::<[u8; 40]>()) {
            let length = match code {
                3 => 40,
                4..=6 => 24,
                8 => 16,
                11 | 14 => 8,
                _ => 4,
            };
            let result = Request::decode(code, &seed[..length]);
            prop_assert_ne!(result, Err(IommuError::MalformedMessage));
            prop_assert_ne!(result, Err(IommuError::UnknownOperation));
        }
    }
}
