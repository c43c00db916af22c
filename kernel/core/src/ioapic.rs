//! IOAPIC redirection table entries, encoded bit-exactly: the compatibility format the kernel
//! uses without interrupt remapping (82093AA IOAPIC datasheet, section 3.2.4) and the
//! remappable format that sends a pin through an interrupt remapping table entry (Intel VT-d
//! spec rev 4.x, section 5.1.5.1, "I/OxAPIC Programming"). The kernel writes the two 32-bit
//! halves ([`RedirectionEntry::low`], [`RedirectionEntry::high`]) through IOREGSEL/IOWIN.

/// Bit 16: interrupt mask (datasheet 3.2.4).
pub const MASK: u64 = 1 << 16;
/// Bit 15: trigger mode, 1 = level (datasheet 3.2.4).
pub const LEVEL_TRIGGERED: u64 = 1 << 15;
/// Bit 13: interrupt input pin polarity, 1 = active low (datasheet 3.2.4).
pub const ACTIVE_LOW: u64 = 1 << 13;
/// Bit 48: interrupt format, 1 = remappable (VT-d 5.1.5.1).
pub const REMAPPABLE_FORMAT: u64 = 1 << 48;
/// Bits 63:49 hold interrupt_index[14:0] in remappable format (VT-d 5.1.5.1).
const INDEX_LOW_SHIFT: u32 = 49;
/// Bit 11 holds interrupt_index[15] in remappable format (the destination-mode bit of the
/// compatibility format; VT-d 5.1.5.1).
const INDEX_HIGH_SHIFT: u32 = 11;
/// Bits 63:56: destination APIC id in compatibility format, physical mode (datasheet 3.2.4).
const DESTINATION_SHIFT: u32 = 56;

/// How a pin signals, by the MP specification's defaults the kernel applies: ISA pins (GSI
/// below 16) edge-triggered and active high, PCI pins (16 and up) level-triggered and active
/// low (PCI Local Bus spec 3.0, 2.2.6: INTx# is level-sensitive, asserted low).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinSignal {
    /// Level-triggered (else edge).
    pub level_triggered: bool,
    /// Active low (else active high).
    pub active_low: bool,
}

impl PinSignal {
    /// The default signalling of GSI `pin`.
    pub const fn of_pin(pin: u32) -> PinSignal {
        let pci = pin >= 16;
        PinSignal {
            level_triggered: pci,
            active_low: pci,
        }
    }

    const fn bits(self) -> u64 {
        (if self.level_triggered {
            LEVEL_TRIGGERED
        } else {
            0
        }) | (if self.active_low { ACTIVE_LOW } else { 0 })
    }
}

/// One 64-bit redirection table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectionEntry(pub u64);

impl RedirectionEntry {
    /// Compatibility format: fixed delivery of `vector` to physical APIC id `destination`.
    pub const fn compatibility(
        vector: u8,
        signal: PinSignal,
        destination: u8,
        masked: bool,
    ) -> RedirectionEntry {
        RedirectionEntry(
            vector as u64
                | signal.bits()
                | ((destination as u64) << DESTINATION_SHIFT)
                | if masked { MASK } else { 0 },
        )
    }

    /// Remappable format through interrupt remapping table entry `handle`. Delivery mode bits
    /// 10:8 are 000 and the vector field is `vector`, which must equal the IRTE's vector: a
    /// level-triggered pin's Remote IRR is cleared by the EOI broadcast that names the vector
    /// (VT-d 5.1.5.1).
    pub const fn remappable(
        handle: u16,
        vector: u8,
        signal: PinSignal,
        masked: bool,
    ) -> RedirectionEntry {
        let handle = handle as u64;
        RedirectionEntry(
            ((handle & 0x7fff) << INDEX_LOW_SHIFT)
                | REMAPPABLE_FORMAT
                | ((handle >> 15) << INDEX_HIGH_SHIFT)
                | signal.bits()
                | vector as u64
                | if masked { MASK } else { 0 },
        )
    }

    /// Bits 31:0 (register 0x10 + 2 x pin).
    pub const fn low(self) -> u32 {
        self.0 as u32
    }

    /// Bits 63:32 (register 0x11 + 2 x pin).
    pub const fn high(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Whether the mask bit is set.
    pub const fn is_masked(self) -> bool {
        self.0 & MASK != 0
    }

    /// The interrupt remapping table entry a remappable-format entry names; `None` in
    /// compatibility format.
    pub const fn remapping_handle(self) -> Option<u16> {
        if self.0 & REMAPPABLE_FORMAT == 0 {
            return None;
        }
        let low = (self.0 >> INDEX_LOW_SHIFT) & 0x7fff;
        let high = (self.0 >> INDEX_HIGH_SHIFT) & 1;
        Some((low | (high << 15)) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCI: PinSignal = PinSignal::of_pin(21);

    #[test]
    fn pins_signal_by_the_mp_defaults() {
        assert_eq!(
            PinSignal::of_pin(4),
            PinSignal {
                level_triggered: false,
                active_low: false
            }
        );
        assert_eq!(
            PinSignal::of_pin(16),
            PinSignal {
                level_triggered: true,
                active_low: true
            }
        );
        assert_eq!(PinSignal::of_pin(15), PinSignal::of_pin(0));
    }

    #[test]
    fn compatibility_entries_are_bit_exact() {
        let entry = RedirectionEntry::compatibility(0x45, PCI, 0, false);
        assert_eq!(entry.0, 0x45 | (1 << 15) | (1 << 13));
        assert_eq!((entry.low(), entry.high()), (0xa045, 0));
        let isa = RedirectionEntry::compatibility(0x34, PinSignal::of_pin(4), 3, true);
        assert_eq!(isa.0, 0x34 | (1 << 16) | (3 << 56));
        assert_eq!(isa.high(), 0x0300_0000);
        assert_eq!(entry.remapping_handle(), None);
    }

    #[test]
    fn remappable_entries_put_the_handle_where_vt_d_reads_it() {
        // Handle 5: bits 63:49 = 5, bit 48 = 1, bit 11 = 0.
        let entry = RedirectionEntry::remappable(5, 0x45, PCI, false);
        assert_eq!(
            entry.0,
            (5 << 49) | (1 << 48) | (1 << 15) | (1 << 13) | 0x45
        );
        assert_eq!(entry.high(), (5 << 17) | (1 << 16));
        assert_eq!(entry.low(), 0xa045);
        // Handle bit 15 goes to bit 11, bits 14:0 to 63:49.
        let top = RedirectionEntry::remappable(0x8000, 0x30, PinSignal::of_pin(2), false);
        assert_eq!(top.0, (1 << 48) | (1 << 11) | 0x30);
        let all = RedirectionEntry::remappable(0xffff, 0xef, PCI, true);
        assert_eq!(all.high(), 0xffff_0000);
        assert_eq!(all.low(), 0x0001_a8ef);
        assert!(all.is_masked());
        // Delivery mode (10:8) stays fixed (000) and bit 12 (status) and 14 (IRR) clear.
        assert_eq!(all.0 & 0x5700, 0);
    }

    proptest::proptest! {
        #[test]
        fn remappable_entries_keep_every_field_in_its_place(
            handle in proptest::prelude::any::<u16>(),
            vector in 0x10u8..=0xff,
            pin in 0u32..24,
            masked in proptest::prelude::any::<bool>(),
        ) {
            let signal = PinSignal::of_pin(pin);
            let entry = RedirectionEntry::remappable(handle, vector, signal, masked);
            proptest::prop_assert_eq!(entry.remapping_handle(), Some(handle));
            proptest::prop_assert_eq!(entry.0 & 0xff, u64::from(vector));
            proptest::prop_assert_eq!(entry.0 & LEVEL_TRIGGERED != 0, signal.level_triggered);
            proptest::prop_assert_eq!(entry.0 & ACTIVE_LOW != 0, signal.active_low);
            proptest::prop_assert_eq!(entry.is_masked(), masked);
            // Nothing outside the defined fields: delivery mode, status, Remote IRR, 47:17.
            proptest::prop_assert_eq!(entry.0 & 0x0000_ffff_fffe_5700, 0);
        }
    }

    #[test]
    fn the_handle_round_trips_through_the_entry() {
        for handle in [0u16, 1, 0x7fff, 0x8000, 0x8001, 0xabcd, 0xffff] {
            for masked in [false, true] {
                let entry = RedirectionEntry::remappable(handle, 0x40, PCI, masked);
                assert_eq!(entry.remapping_handle(), Some(handle));
                assert_eq!(entry.is_masked(), masked);
                assert_eq!(entry.0 & 0xff, 0x40);
            }
        }
    }
}
