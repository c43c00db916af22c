//! What the MSI-X checks accept, decided from raw register values so it can be host-tested:
//! the capability found by walking the list (PCI Local Bus 3.0 section 6.7), its Table
//! BIR/offset and size (PCIe Base spec 6.0 section 7.7.2), the config-space state after the
//! pci-server programmed an entry (MSI-X Enable on, Function Mask off, MSI off, INTx disabled)
//! and one table entry read back against the remappable-format message the iommu-server gave.

use core::fmt;

/// Capability ID of MSI.
pub const CAPABILITY_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
pub const CAPABILITY_MSIX: u8 = 0x11;
/// Capabilities pointer in the type 0 header.
pub const CAPABILITIES_POINTER: u16 = 0x34;
/// Most capabilities followed before the list is declared looped.
const MAX_CAPABILITIES: usize = 48;
/// Command register: Interrupt Disable (INTx off).
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// MSI-X Message Control: MSI-X Enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: Function Mask.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI Message Control: MSI Enable.
pub const MSI_ENABLE: u16 = 1 << 0;
/// Bytes of one table entry.
pub const ENTRY_BYTES: u64 = 16;
/// Vector Control: Mask Bit.
pub const ENTRY_MASKED: u32 = 1;

/// Walks the capability list with `read` (a config byte at an offset; `None` if the read
/// failed) and returns the offset of the first capability with ID `id`. A pointer below 0x40,
/// a failed read or a list longer than 48 entries ends the walk.
pub fn find_capability(mut read: impl FnMut(u16) -> Option<u8>, id: u8) -> Option<u16> {
    let mut pointer = read(CAPABILITIES_POINTER)? & 0xfc;
    for _ in 0..MAX_CAPABILITIES {
        if pointer < 0x40 {
            return None;
        }
        let offset = u16::from(pointer);
        if read(offset)? == id {
            return Some(offset);
        }
        pointer = read(offset + 1)? & 0xfc;
    }
    None
}

/// Where the table is, from the capability's Message Control and Table Offset/BIR dwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Entries (Table Size + 1).
    pub entries: u16,
    /// BAR holding the table.
    pub bir: u8,
    /// Offset of entry 0 in that BAR.
    pub offset: u32,
}

impl TableInfo {
    /// Decodes the capability's registers.
    pub fn decode(control: u16, table: u32) -> TableInfo {
        TableInfo {
            entries: (control & 0x7ff) + 1,
            bir: (table & 0x7) as u8,
            offset: table & !0x7,
        }
    }

    /// Byte offset of `entry` in the BAR, `None` beyond the table.
    pub fn entry_offset(&self, entry: u16) -> Option<u64> {
        (entry < self.entries).then(|| u64::from(self.offset) + u64::from(entry) * ENTRY_BYTES)
    }
}

/// What is wrong with the configuration state after programming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateMismatch {
    /// MSI-X Enable is clear.
    MsixDisabled,
    /// Function Mask is still set.
    FunctionMasked,
    /// MSI is still enabled next to MSI-X.
    MsiEnabled,
    /// Command.Interrupt Disable is clear (INTx still on).
    IntxEnabled,
}

impl fmt::Display for StateMismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::MsixDisabled => "MSI-X Enable is clear",
            Self::FunctionMasked => "Function Mask is still set",
            Self::MsiEnabled => "MSI is still enabled",
            Self::IntxEnabled => "Interrupt Disable is clear (INTx on)",
        })
    }
}

/// Checks MSI-X Message Control, MSI Message Control (if the function has MSI) and Command.
pub fn state_matches(
    msix_control: u16,
    msi_control: Option<u16>,
    command: u16,
) -> Result<(), StateMismatch> {
    if msix_control & MSIX_ENABLE == 0 {
        return Err(StateMismatch::MsixDisabled);
    }
    if msix_control & MSIX_FUNCTION_MASK != 0 {
        return Err(StateMismatch::FunctionMasked);
    }
    if msi_control.is_some_and(|control| control & MSI_ENABLE != 0) {
        return Err(StateMismatch::MsiEnabled);
    }
    if command & COMMAND_INTX_DISABLE == 0 {
        return Err(StateMismatch::IntxEnabled);
    }
    Ok(())
}

/// One table entry as read: address low, address high, data, vector control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub address_low: u32,
    pub address_high: u32,
    pub data: u32,
    pub vector_control: u32,
}

impl fmt::Display for Entry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "address {:#x}:{:08x} data {:#x} control {:#x}",
            self.address_high, self.address_low, self.data, self.vector_control
        )
    }
}

/// What is wrong with an entry read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMismatch {
    /// The address is not the message's.
    Address { found: u64 },
    /// The data is not the message's.
    Data { found: u32 },
    /// The entry is still masked.
    Masked,
    /// The address is not in remappable format (bit 4) in the interrupt window.
    NotRemappable,
}

impl fmt::Display for EntryMismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address { found } => write!(formatter, "address {found:#x}"),
            Self::Data { found } => write!(formatter, "data {found:#x}"),
            Self::Masked => write!(formatter, "entry still masked"),
            Self::NotRemappable => write!(formatter, "address not in remappable format"),
        }
    }
}

/// Checks an entry against the message (`address`, `data`) the iommu-server computed for the
/// IRTE: same address and data, in the interrupt window with the remappable-format bit, and
/// unmasked.
pub fn entry_matches(entry: &Entry, address: u64, data: u32) -> Result<(), EntryMismatch> {
    let found = u64::from(entry.address_high) << 32 | u64::from(entry.address_low);
    if found & 0xffff_ffff_fff0_0000 != 0xfee0_0000 || found & (1 << 4) == 0 {
        return Err(EntryMismatch::NotRemappable);
    }
    if found != address {
        return Err(EntryMismatch::Address { found });
    }
    if entry.data != data {
        return Err(EntryMismatch::Data { found: entry.data });
    }
    if entry.vector_control & ENTRY_MASKED != 0 {
        return Err(EntryMismatch::Masked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An e1000e-like config space: PM at 0xc8, MSI at 0xd0, PCIe at 0xe0, MSI-X at 0xa0.
    fn config(offset: u16) -> Option<u8> {
        Some(match offset {
            0x34 => 0xc8,
            0xc8 => 0x01,
            0xc9 => 0xd0,
            0xd0 => 0x05,
            0xd1 => 0xe0,
            0xe0 => 0x10,
            0xe1 => 0xa0,
            0xa0 => 0x11,
            0xa1 => 0x00,
            _ => 0xff,
        })
    }

    #[test]
    fn capabilities_are_found_by_walking_the_list() {
        assert_eq!(find_capability(config, CAPABILITY_MSIX), Some(0xa0));
        assert_eq!(find_capability(config, CAPABILITY_MSI), Some(0xd0));
        assert_eq!(find_capability(config, 0x09), None);
        // A looped list ends: the capability at 0x40 (ID 1) names itself as the next.
        let looped = |offset: u16| Some(if offset == 0x40 { 0x01 } else { 0x40 });
        assert_eq!(find_capability(looped, CAPABILITY_MSIX), None);
        // A failed read ends the walk.
        assert_eq!(find_capability(|_| None, CAPABILITY_MSIX), None);
        // A pointer into the header is no capability.
        assert_eq!(find_capability(|_| Some(0x10), 0x10), None);
    }

    #[test]
    fn the_table_is_located_from_the_capability() {
        let table = TableInfo::decode(0x0004, 0x0000_0003);
        assert_eq!(
            table,
            TableInfo {
                entries: 5,
                bir: 3,
                offset: 0
            }
        );
        assert_eq!(table.entry_offset(2), Some(32));
        assert_eq!(table.entry_offset(5), None);
        let table = TableInfo::decode(0xc7ff, 0x2004);
        assert_eq!((table.entries, table.bir, table.offset), (2048, 4, 0x2000));
        assert_eq!(table.entry_offset(2047), Some(0x2000 + 2047 * 16));
    }

    #[test]
    fn the_state_must_be_msix_on_unmasked_msi_and_intx_off() {
        assert_eq!(state_matches(0x8004, Some(0x0080), 0x0406), Ok(()));
        assert_eq!(state_matches(0x8004, None, 0x0406), Ok(()));
        assert_eq!(
            state_matches(0x0004, None, 0x0406),
            Err(StateMismatch::MsixDisabled)
        );
        assert_eq!(
            state_matches(0xc004, None, 0x0406),
            Err(StateMismatch::FunctionMasked)
        );
        assert_eq!(
            state_matches(0x8004, Some(0x0081), 0x0406),
            Err(StateMismatch::MsiEnabled)
        );
        assert_eq!(
            state_matches(0x8004, None, 0x0006),
            Err(StateMismatch::IntxEnabled)
        );
    }

    #[test]
    fn an_entry_must_carry_the_irte_message_unmasked() {
        let entry = Entry {
            address_low: 0xfee0_0030,
            address_high: 0,
            data: 0,
            vector_control: 0,
        };
        assert_eq!(entry_matches(&entry, 0xfee0_0030, 0), Ok(()));
        assert_eq!(
            entry_matches(&entry, 0xfee0_0050, 0),
            Err(EntryMismatch::Address { found: 0xfee0_0030 })
        );
        assert_eq!(
            entry_matches(&entry, 0xfee0_0030, 1),
            Err(EntryMismatch::Data { found: 0 })
        );
        let masked = Entry {
            vector_control: 1,
            ..entry
        };
        assert_eq!(
            entry_matches(&masked, 0xfee0_0030, 0),
            Err(EntryMismatch::Masked)
        );
        let compatibility = Entry {
            address_low: 0xfee0_0000,
            ..entry
        };
        assert_eq!(
            entry_matches(&compatibility, 0xfee0_0000, 0),
            Err(EntryMismatch::NotRemappable)
        );
        let high = Entry {
            address_high: 1,
            ..entry
        };
        assert_eq!(
            entry_matches(&high, 0x1_fee0_0030, 0),
            Err(EntryMismatch::NotRemappable)
        );
        assert!(format!("{}", EntryMismatch::Masked).contains("masked"));
    }
}
