//! Remappable-format interrupt requests: what to program into a device's MSI/MSI-X registers
//! (VT-d spec 5.1.5.2) and into an IOAPIC redirection entry (5.1.5.1) so its interrupts use an
//! IRTE.

/// An MSI address/data pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (bits 63:32 are zero).
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// Remappable MSI for IRTE `handle` (5.1.2.2): address bits 31:20 = 0xFEE, bits 19:5 =
/// handle[14:0], bit 4 = interrupt format (1 = remappable), bit 3 = SHV (0: no subhandle),
/// bit 2 = handle[15]; data is 0.
pub fn remappable_msi(handle: u16) -> MsiMessage {
    let handle = u64::from(handle);
    MsiMessage {
        address: 0xfee0_0000 | ((handle & 0x7fff) << 5) | (1 << 4) | ((handle >> 15) << 2),
        data: 0,
    }
}

/// Remappable IOAPIC redirection table entry (5.1.5.1): bits 63:49 = handle[14:0], bit 48 =
/// interrupt format 1, bit 11 = handle[15], bits 10:8 = 000, bit 15 = trigger mode, bit 13 =
/// polarity, bits 7:0 = vector (must equal the IRTE's vector for level-triggered EOI).
pub fn ioapic_redirection_entry(
    handle: u16,
    vector: u8,
    level_triggered: bool,
    active_low: bool,
) -> u64 {
    let handle = u64::from(handle);
    ((handle & 0x7fff) << 49)
        | (1 << 48)
        | ((handle >> 15) << 11)
        | (u64::from(level_triggered) << 15)
        | (u64::from(active_low) << 13)
        | u64::from(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bit_exact() {
        assert_eq!(
            remappable_msi(0),
            MsiMessage {
                address: 0xfee0_0010,
                data: 0
            }
        );
        assert_eq!(remappable_msi(5).address, 0xfee0_00b0);
        assert_eq!(remappable_msi(0x8001).address, 0xfee0_0034);
        assert_eq!(
            ioapic_redirection_entry(3, 0x31, true, true),
            (3 << 49) | (1 << 48) | (1 << 15) | (1 << 13) | 0x31
        );
        assert_eq!(
            ioapic_redirection_entry(0x8000, 0x20, false, false),
            (1 << 48) | (1 << 11) | 0x20
        );
    }
}
