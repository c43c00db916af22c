//! Context entries in legacy mode (VT-d spec 9.3): which domain and which second-level tables
//! a requester ID (bus/device/function) uses.
//!
//! A context table is one 4 KiB frame of 256 16-byte entries indexed by device/function; the
//! root table (see [`super::root_table`]) points at one context table per bus.

use crate::registers::capability::PagingLevels;
use crate::DomainId;
use iommu_api::HostPhys;

/// P, bit 0 of the low qword: the entry is present.
pub const CONTEXT_PRESENT: u64 = 1 << 0;
/// FPD, bit 1: fault processing disable (faults from this source are not recorded).
pub const CONTEXT_FAULT_PROCESSING_DISABLE: u64 = 1 << 1;
/// TT, bits 3:2: translation type.
pub const CONTEXT_TRANSLATION_TYPE_SHIFT: u32 = 2;
/// SLPTPTR, bits 63:12: second-level page table pointer.
pub const CONTEXT_TABLE_POINTER: u64 = 0xffff_ffff_ffff_f000;
/// AW, bits 66:64 (bits 2:0 of the high qword): address width.
pub const CONTEXT_ADDRESS_WIDTH: u64 = 0x7;
/// DID, bits 87:72 (bits 23:8 of the high qword): domain identifier.
pub const CONTEXT_DOMAIN_SHIFT: u32 = 8;

/// TT field values (VT-d spec 9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslationType {
    /// 00b: untranslated requests are translated through the second-level tables; translation
    /// (ATS) requests and translated requests are blocked.
    UntranslatedOnly,
    /// 01b: as 00b, and ATS requests are allowed (device-TLB).
    AllRequests,
    /// 10b: untranslated requests pass through untranslated (needs ECAP.PT). Never used for
    /// assigned devices.
    PassThrough,
}

/// A legacy-mode context entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextEntry {
    /// Faults from this source are not recorded.
    pub fault_processing_disable: bool,
    /// How requests are translated.
    pub translation_type: TranslationType,
    /// Top-level second-level table.
    pub second_level_root: HostPhys,
    /// Depth of the second-level tables.
    pub levels: PagingLevels,
    /// Domain id tagging the caches.
    pub domain: DomainId,
}

impl ContextEntry {
    /// An entry translating through `second_level_root` for `domain`.
    pub fn translated(domain: DomainId, second_level_root: HostPhys, levels: PagingLevels) -> Self {
        Self {
            fault_processing_disable: false,
            translation_type: TranslationType::UntranslatedOnly,
            second_level_root,
            levels,
            domain,
        }
    }

    /// The two qwords (low, high) with P set.
    pub fn encode(&self) -> (u64, u64) {
        let translation_type: u64 = match self.translation_type {
            TranslationType::UntranslatedOnly => 0,
            TranslationType::AllRequests => 1,
            TranslationType::PassThrough => 2,
        };
        let mut low = CONTEXT_PRESENT
            | (translation_type << CONTEXT_TRANSLATION_TYPE_SHIFT)
            | (self.second_level_root.0 & CONTEXT_TABLE_POINTER);
        if self.fault_processing_disable {
            low |= CONTEXT_FAULT_PROCESSING_DISABLE;
        }
        let high = self.levels.context_aw() | (u64::from(self.domain.0) << CONTEXT_DOMAIN_SHIFT);
        (low, high)
    }

    /// Decodes a present entry; `None` when P is clear or a field holds a reserved value.
    pub fn decode(low: u64, high: u64) -> Option<Self> {
        if low & CONTEXT_PRESENT == 0 {
            return None;
        }
        let translation_type = match (low >> CONTEXT_TRANSLATION_TYPE_SHIFT) & 0x3 {
            0 => TranslationType::UntranslatedOnly,
            1 => TranslationType::AllRequests,
            2 => TranslationType::PassThrough,
            _ => return None,
        };
        Some(Self {
            fault_processing_disable: low & CONTEXT_FAULT_PROCESSING_DISABLE != 0,
            translation_type,
            second_level_root: HostPhys(low & CONTEXT_TABLE_POINTER),
            levels: PagingLevels::from_context_aw(high & CONTEXT_ADDRESS_WIDTH)?,
            domain: DomainId(((high >> CONTEXT_DOMAIN_SHIFT) & 0xffff) as u16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_bit_exact() {
        let entry =
            ContextEntry::translated(DomainId(0x1234), HostPhys(0x5000), PagingLevels::Four);
        assert_eq!(entry.encode(), (0x5001, 0x0012_3402));
        assert_eq!(ContextEntry::decode(0x5001, 0x0012_3402), Some(entry));
        assert_eq!(ContextEntry::decode(0x5000, 0x0012_3402), None);
        assert_eq!(
            ContextEntry::decode(0x500d, 0x0012_3402),
            None,
            "TT=11b is reserved"
        );
        assert_eq!(
            ContextEntry::decode(0x5001, 0x0012_3404),
            None,
            "AW=100b is reserved"
        );
    }
}
