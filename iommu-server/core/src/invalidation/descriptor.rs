//! Invalidation descriptors (VT-d spec 6.5.2), 128-bit format (IQA_REG.DW = 0).

use crate::DomainId;
use iommu_api::{Bdf, HostPhys, IoVirt};

/// Descriptor type codes, bits 3:0.
const TYPE_CONTEXT_CACHE: u64 = 0x1;
const TYPE_IOTLB: u64 = 0x2;
const TYPE_INTERRUPT_ENTRY_CACHE: u64 = 0x4;
const TYPE_WAIT: u64 = 0x5;

/// Granularity of a context-cache invalidation (6.5.2.1, field G bits 5:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextGranularity {
    /// 01b: every context entry.
    Global,
    /// 10b: entries tagged with this domain id.
    Domain(DomainId),
    /// 11b: the entry of one source id (with function mask FM, bits 49:48).
    Device {
        /// Domain id the entry was (or will be) tagged with.
        domain: DomainId,
        /// Source id.
        source: Bdf,
        /// FM: how many low function bits to ignore (0..=3).
        function_mask: u8,
    },
}

/// Granularity of an IOTLB invalidation (6.5.2.3, field G bits 5:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbGranularity {
    /// 01b: all IOTLB and paging-structure cache entries.
    Global,
    /// 10b: entries of one domain.
    Domain(DomainId),
    /// 11b: 2^address_mask pages at `address` of one domain.
    Pages {
        /// Domain id.
        domain: DomainId,
        /// First page (aligned to 2^address_mask pages).
        address: IoVirt,
        /// AM, bits 69:64: log2 of the page count.
        address_mask: u8,
        /// IH, bit 70: only leaf entries changed (paging-structure caches may be kept).
        invalidation_hint: bool,
    },
}

/// Granularity of an interrupt entry cache invalidation (6.5.2.7, field G bit 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptEntryGranularity {
    /// 0: all entries.
    Global,
    /// 1: 2^index_mask entries starting at `index` (IIDX bits 47:32, IM bits 31:27).
    Index {
        /// First IRTE index.
        index: u16,
        /// log2 of the count.
        index_mask: u8,
    },
}

/// One invalidation descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Context-cache invalidate descriptor, type 1h (6.5.2.1).
    ContextCache(ContextGranularity),
    /// IOTLB invalidate descriptor, type 2h (6.5.2.3).
    Iotlb {
        /// What to invalidate.
        granularity: IotlbGranularity,
        /// DR, bit 7: drain reads (when CAP.DRD).
        drain_reads: bool,
        /// DW, bit 6: drain writes (when CAP.DWD).
        drain_writes: bool,
    },
    /// Interrupt entry cache invalidate descriptor, type 4h (6.5.2.7).
    InterruptEntryCache(InterruptEntryGranularity),
    /// Invalidation wait descriptor, type 5h (6.5.2.8).
    Wait {
        /// SW, bit 5: write `data` (bits 63:32) to `address` (bits 127:66) on completion.
        status_write: Option<(HostPhys, u32)>,
        /// IF, bit 4: set ICS.IWC (and raise the completion event) on completion.
        interrupt: bool,
        /// FN, bit 6: later descriptors wait until this one completes.
        fence: bool,
    },
}

impl Descriptor {
    /// The two qwords (low, high).
    pub fn encode(&self) -> [u64; 2] {
        match *self {
            Descriptor::ContextCache(granularity) => {
                let low = match granularity {
                    ContextGranularity::Global => 1 << 4,
                    ContextGranularity::Domain(domain) => (2 << 4) | (u64::from(domain.0) << 16),
                    ContextGranularity::Device {
                        domain,
                        source,
                        function_mask,
                    } => {
                        (3 << 4)
                            | (u64::from(domain.0) << 16)
                            | (u64::from(source.0) << 32)
                            | (u64::from(function_mask & 0x3) << 48)
                    }
                };
                [TYPE_CONTEXT_CACHE | low, 0]
            }
            Descriptor::Iotlb {
                granularity,
                drain_reads,
                drain_writes,
            } => {
                let mut low =
                    TYPE_IOTLB | (u64::from(drain_writes) << 6) | (u64::from(drain_reads) << 7);
                let mut high = 0;
                match granularity {
                    IotlbGranularity::Global => low |= 1 << 4,
                    IotlbGranularity::Domain(domain) => {
                        low |= (2 << 4) | (u64::from(domain.0) << 16)
                    }
                    IotlbGranularity::Pages {
                        domain,
                        address,
                        address_mask,
                        invalidation_hint,
                    } => {
                        low |= (3 << 4) | (u64::from(domain.0) << 16);
                        high = (address.0 & !0xfff)
                            | (u64::from(invalidation_hint) << 6)
                            | u64::from(address_mask & 0x3f);
                    }
                }
                [low, high]
            }
            Descriptor::InterruptEntryCache(granularity) => match granularity {
                InterruptEntryGranularity::Global => [TYPE_INTERRUPT_ENTRY_CACHE, 0],
                InterruptEntryGranularity::Index { index, index_mask } => [
                    TYPE_INTERRUPT_ENTRY_CACHE
                        | (1 << 4)
                        | (u64::from(index_mask & 0x1f) << 27)
                        | (u64::from(index) << 32),
                    0,
                ],
            },
            Descriptor::Wait {
                status_write,
                interrupt,
                fence,
            } => {
                let mut low = TYPE_WAIT | (u64::from(interrupt) << 4) | (u64::from(fence) << 6);
                let mut high = 0;
                if let Some((address, data)) = status_write {
                    low |= (1 << 5) | (u64::from(data) << 32);
                    high = address.0 & !0x3;
                }
                [low, high]
            }
        }
    }

    /// Decodes a descriptor of one of the four types above (used by the fake unit; a real
    /// unit reports other types as an invalidation queue error).
    pub fn decode(qwords: [u64; 2]) -> Option<Descriptor> {
        let [low, high] = qwords;
        let granularity = (low >> 4) & 0x3;
        let domain = DomainId(((low >> 16) & 0xffff) as u16);
        match low & 0xf {
            TYPE_CONTEXT_CACHE => Some(Descriptor::ContextCache(match granularity {
                1 => ContextGranularity::Global,
                2 => ContextGranularity::Domain(domain),
                3 => ContextGranularity::Device {
                    domain,
                    source: Bdf(((low >> 32) & 0xffff) as u16),
                    function_mask: ((low >> 48) & 0x3) as u8,
                },
                _ => return None,
            })),
            TYPE_IOTLB => Some(Descriptor::Iotlb {
                granularity: match granularity {
                    1 => IotlbGranularity::Global,
                    2 => IotlbGranularity::Domain(domain),
                    3 => IotlbGranularity::Pages {
                        domain,
                        address: IoVirt(high & !0xfff),
                        address_mask: (high & 0x3f) as u8,
                        invalidation_hint: high & (1 << 6) != 0,
                    },
                    _ => return None,
                },
                drain_reads: low & (1 << 7) != 0,
                drain_writes: low & (1 << 6) != 0,
            }),
            TYPE_INTERRUPT_ENTRY_CACHE => {
                Some(Descriptor::InterruptEntryCache(if low & (1 << 4) == 0 {
                    InterruptEntryGranularity::Global
                } else {
                    InterruptEntryGranularity::Index {
                        index: ((low >> 32) & 0xffff) as u16,
                        index_mask: ((low >> 27) & 0x1f) as u8,
                    }
                }))
            }
            TYPE_WAIT => Some(Descriptor::Wait {
                status_write: (low & (1 << 5) != 0)
                    .then_some((HostPhys(high & !0x3), (low >> 32) as u32)),
                interrupt: low & (1 << 4) != 0,
                fence: low & (1 << 6) != 0,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_bit_exact() {
        let device = Descriptor::ContextCache(ContextGranularity::Device {
            domain: DomainId(5),
            source: Bdf::new(1, 2, 3).unwrap(),
            function_mask: 0,
        });
        assert_eq!(device.encode(), [0x0000_0113_0005_0031, 0]);
        let pages = Descriptor::Iotlb {
            granularity: IotlbGranularity::Pages {
                domain: DomainId(7),
                address: IoVirt(0x12_3000),
                address_mask: 2,
                invalidation_hint: false,
            },
            drain_reads: true,
            drain_writes: true,
        };
        assert_eq!(pages.encode(), [0x0007_00f2, 0x12_3002]);
        let wait = Descriptor::Wait {
            status_write: Some((HostPhys(0x9000), 0xabcd)),
            interrupt: false,
            fence: true,
        };
        assert_eq!(wait.encode(), [0x0000_abcd_0000_0065, 0x9000]);
        let iec = Descriptor::InterruptEntryCache(InterruptEntryGranularity::Index {
            index: 9,
            index_mask: 0,
        });
        assert_eq!(iec.encode(), [0x0000_0009_0000_0014, 0]);
        for descriptor in [device, pages, wait, iec] {
            assert_eq!(Descriptor::decode(descriptor.encode()), Some(descriptor));
        }
        assert_eq!(Descriptor::decode([0x3, 0]), None);
        assert_eq!(
            Descriptor::decode([0x1, 0]),
            None,
            "context G=00b is reserved"
        );
    }
}
