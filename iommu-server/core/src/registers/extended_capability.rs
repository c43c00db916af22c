//! ECAP_REG decoding (VT-d spec 10.4.3).

/// The extended capability register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability(pub u64);

fn bit(value: u64, index: u32) -> bool {
    (value >> index) & 1 == 1
}

impl ExtendedCapability {
    /// C, bit 0: page-walk coherency (if clear, table writes must be flushed from CPU caches).
    pub fn page_walk_coherency(self) -> bool {
        bit(self.0, 0)
    }
    /// QI, bit 1: queued invalidation supported.
    pub fn queued_invalidation(self) -> bool {
        bit(self.0, 1)
    }
    /// DT, bit 2: device-TLB (ATS) supported.
    pub fn device_tlb(self) -> bool {
        bit(self.0, 2)
    }
    /// IR, bit 3: interrupt remapping supported.
    pub fn interrupt_remapping(self) -> bool {
        bit(self.0, 3)
    }
    /// EIM, bit 4: extended interrupt mode (x2APIC, 32-bit destination ids).
    pub fn extended_interrupt_mode(self) -> bool {
        bit(self.0, 4)
    }
    /// PT, bit 6: pass-through translation type supported.
    pub fn pass_through(self) -> bool {
        bit(self.0, 6)
    }
    /// SC, bit 7: snoop control.
    pub fn snoop_control(self) -> bool {
        bit(self.0, 7)
    }
    /// IRO, bits 17:8: IOTLB register offset in 16-byte units.
    pub fn iotlb_register_offset(self) -> u16 {
        (((self.0 >> 8) & 0x3ff) * 16) as u16
    }
    /// MHMV, bits 23:20: maximum handle mask value for interrupt entry cache invalidation.
    pub fn maximum_handle_mask(self) -> u8 {
        ((self.0 >> 20) & 0xf) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_defaults_decode() {
        let ecap = ExtendedCapability(0x0f0_0f4a);
        assert!(!ecap.page_walk_coherency());
        assert!(ecap.queued_invalidation());
        assert!(!ecap.device_tlb());
        assert!(ecap.interrupt_remapping());
        assert!(!ecap.extended_interrupt_mode());
        assert!(ecap.pass_through());
        assert!(!ecap.snoop_control());
        assert_eq!(ecap.iotlb_register_offset(), 0xf0);
        assert_eq!(ecap.maximum_handle_mask(), 0xf);
    }
}
