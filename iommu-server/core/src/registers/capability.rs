//! CAP_REG decoding (VT-d spec 10.4.2) and what the driver adapts to.

use iommu_api::IommuError;

/// The capability register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability(pub u64);

/// Second-level paging depth: the adjusted guest address width the domain's tables cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PagingLevels {
    /// 39-bit AGAW, 3-level table (SAGAW bit 1, context entry AW = 001b).
    Three,
    /// 48-bit AGAW, 4-level table (SAGAW bit 2, AW = 010b).
    Four,
    /// 57-bit AGAW, 5-level table (SAGAW bit 3, AW = 011b).
    Five,
}

impl PagingLevels {
    /// Number of table levels.
    pub const fn count(self) -> u8 {
        match self {
            PagingLevels::Three => 3,
            PagingLevels::Four => 4,
            PagingLevels::Five => 5,
        }
    }
    /// Address width in bits the tables translate.
    pub const fn address_width(self) -> u32 {
        match self {
            PagingLevels::Three => 39,
            PagingLevels::Four => 48,
            PagingLevels::Five => 57,
        }
    }
    /// The context entry AW field (VT-d spec 9.3).
    pub const fn context_aw(self) -> u64 {
        match self {
            PagingLevels::Three => 1,
            PagingLevels::Four => 2,
            PagingLevels::Five => 3,
        }
    }
    /// Inverse of [`Self::context_aw`].
    pub const fn from_context_aw(aw: u64) -> Option<Self> {
        match aw {
            1 => Some(PagingLevels::Three),
            2 => Some(PagingLevels::Four),
            3 => Some(PagingLevels::Five),
            _ => None,
        }
    }
}

fn field(value: u64, low: u32, width: u32) -> u64 {
    (value >> low) & ((1u64 << width) - 1)
}

impl Capability {
    /// ND, bits 2:0: number of domain ids supported is 2^(4 + 2 * ND).
    pub fn domain_count(self) -> u32 {
        1u32 << (4 + 2 * field(self.0, 0, 3) as u32).min(16)
    }
    /// RWBF, bit 4: software must flush the write buffer after table updates.
    pub fn required_write_buffer_flushing(self) -> bool {
        field(self.0, 4, 1) == 1
    }
    /// CM, bit 7: caching mode; not-present and erroneous entries may be cached, so every
    /// not-present -> present change must be invalidated too.
    pub fn caching_mode(self) -> bool {
        field(self.0, 7, 1) == 1
    }
    /// SAGAW, bits 12:8: supported adjusted guest address widths (bit 1: 39-bit 3-level,
    /// bit 2: 48-bit 4-level, bit 3: 57-bit 5-level).
    pub fn supported_agaw(self) -> u8 {
        field(self.0, 8, 5) as u8
    }
    /// MGAW, bits 21:16: maximum guest address width, stored as width - 1.
    pub fn maximum_guest_address_width(self) -> u32 {
        field(self.0, 16, 6) as u32 + 1
    }
    /// FRO, bits 33:24: offset of the first fault recording register, in 16-byte units.
    pub fn fault_recording_offset(self) -> u16 {
        (field(self.0, 24, 10) * 16) as u16
    }
    /// SLLPS, bits 37:34: second-level large pages (bit 34: 2 MiB, bit 35: 1 GiB).
    pub fn supports_2m_pages(self) -> bool {
        field(self.0, 34, 1) == 1
    }
    /// SLLPS bit 35: 1 GiB second-level pages.
    pub fn supports_1g_pages(self) -> bool {
        field(self.0, 35, 1) == 1
    }
    /// PSI, bit 39: page-selective IOTLB invalidation supported.
    pub fn page_selective_invalidation(self) -> bool {
        field(self.0, 39, 1) == 1
    }
    /// NFR, bits 47:40: number of fault recording registers minus one.
    pub fn fault_recording_count(self) -> u16 {
        field(self.0, 40, 8) as u16 + 1
    }
    /// MAMV, bits 53:48: maximum address mask value for page-selective invalidation.
    pub fn maximum_address_mask(self) -> u8 {
        field(self.0, 48, 6) as u8
    }
    /// DWD, bit 54: write draining.
    pub fn write_draining(self) -> bool {
        field(self.0, 54, 1) == 1
    }
    /// DRD, bit 55: read draining.
    pub fn read_draining(self) -> bool {
        field(self.0, 55, 1) == 1
    }

    /// The deepest paging level SAGAW allows, capped by `preferred` (a shallower table walks
    /// faster; the server asks for the narrowest width that covers what it needs). Falls back to
    /// a deeper one when the preferred is unsupported.
    pub fn choose_levels(self, preferred: PagingLevels) -> Result<PagingLevels, IommuError> {
        let sagaw = self.supported_agaw();
        let supported = |levels: PagingLevels| sagaw & (1 << (levels.count() - 2)) != 0;
        [PagingLevels::Three, PagingLevels::Four, PagingLevels::Five]
            .into_iter()
            .filter(|levels| *levels >= preferred)
            .chain([PagingLevels::Five, PagingLevels::Four, PagingLevels::Three])
            .find(|levels| supported(*levels))
            .ok_or(IommuError::UnsupportedHardware)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: Capability = Capability(0x00d2_008c_2226_0206);

    #[test]
    fn qemu_defaults_decode() {
        assert_eq!(QEMU.domain_count(), 65536);
        assert!(!QEMU.required_write_buffer_flushing());
        assert!(!QEMU.caching_mode());
        assert_eq!(QEMU.supported_agaw(), 0b00010);
        assert_eq!(QEMU.maximum_guest_address_width(), 39);
        assert_eq!(QEMU.fault_recording_offset(), 0x220);
        assert_eq!(QEMU.fault_recording_count(), 1);
        assert!(QEMU.supports_2m_pages() && QEMU.supports_1g_pages());
        assert!(QEMU.page_selective_invalidation());
        assert_eq!(QEMU.maximum_address_mask(), 18);
    }

    #[test]
    fn levels_follow_sagaw() {
        assert_eq!(
            QEMU.choose_levels(PagingLevels::Three),
            Ok(PagingLevels::Three)
        );
        assert_eq!(
            QEMU.choose_levels(PagingLevels::Four),
            Ok(PagingLevels::Three)
        );
        let both = Capability(QEMU.0 | (0b110 << 8));
        assert_eq!(
            both.choose_levels(PagingLevels::Four),
            Ok(PagingLevels::Four)
        );
        let only_48 = Capability(QEMU.0 & !(0x1f << 8) | (0b100 << 8));
        assert_eq!(
            only_48.choose_levels(PagingLevels::Three),
            Ok(PagingLevels::Four)
        );
        let none = Capability(QEMU.0 & !(0x1f << 8));
        assert_eq!(
            none.choose_levels(PagingLevels::Three),
            Err(IommuError::UnsupportedHardware)
        );
        assert_eq!(Capability(0b11 | (1 << 4) | (1 << 7)).domain_count(), 1024);
        assert!(Capability(1 << 4).required_write_buffer_flushing());
        assert!(Capability(1 << 7).caching_mode());
    }
}
