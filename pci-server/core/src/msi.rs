//! MSI and MSI-X programming in remappable format (VT-d spec rev 4.1 section 5.1.5.2): the
//! address is 0xFEE_xxxxx with Interrupt Format (bit 4) set, handle[14:0] in bits 19:5,
//! handle[15] in bit 2 and SHV in bit 3; with SHV the data register holds the subhandle, and
//! the IRTE used is handle + subhandle (for multi-vector MSI the function ORs the vector
//! number into the low data bits). Vectors are masked while they are programmed.

use crate::capability::{MsiCapability, MsixCapability};
use crate::function::FunctionInfo;
use crate::registers::{header, msi, msix, Command};
use crate::ConfigSpace;
use core::fmt;
use pci_api::{Bdf, PciError};

/// An interrupt remapping table entry handle, allocated by the iommu-server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrteHandle(pub u16);

/// An MSI address/data pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// MSI address window base (VT-d spec section 5.1.5.2: bits 31:20 = 0xFEE).
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;
/// Interrupt Format bit: 1 = remappable.
const INTERRUPT_FORMAT_REMAPPABLE: u64 = 1 << 4;
/// SubHandle Valid bit.
const SUBHANDLE_VALID: u64 = 1 << 3;

/// The remappable-format message for `handle`, with a subhandle when given.
pub fn remappable_message(handle: IrteHandle, subhandle: Option<u16>) -> MsiMessage {
    let handle_low = u64::from(handle.0 & 0x7fff) << 5;
    let handle_high = u64::from(handle.0 >> 15) << 2;
    let mut address = MSI_ADDRESS_BASE | handle_low | handle_high | INTERRUPT_FORMAT_REMAPPABLE;
    let data = match subhandle {
        Some(sub) => {
            address |= SUBHANDLE_VALID;
            u32::from(sub)
        }
        None => 0,
    };
    MsiMessage { address, data }
}

/// The IRTE index a remappable message selects for vector `vector` (handle + subhandle, the
/// subhandle being data with the vector number ORed into its low bits).
pub fn irte_index(message: MsiMessage, vector: u16) -> u32 {
    let handle =
        ((message.address >> 5) & 0x7fff) as u32 | ((((message.address >> 2) & 1) as u32) << 15);
    if message.address & SUBHANDLE_VALID != 0 {
        handle + ((message.data & 0xffff) | u32::from(vector))
    } else {
        handle
    }
}

/// Why programming failed. Nothing was written when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// The function has no MSI capability.
    NoMsi(Bdf),
    /// The function has no MSI-X capability.
    NoMsix(Bdf),
    /// Vector count not a power of two or above Multiple Message Capable.
    BadVectorCount {
        /// Requested.
        requested: u16,
        /// Capable of.
        capable: u8,
    },
    /// Memory Space Enable is clear: the MSI-X table (BAR memory) does not answer.
    MemoryDecodingDisabled(Bdf),
    /// MSI-X entry beyond the table.
    EntryOutOfRange {
        /// Requested entry.
        entry: u16,
        /// Table size.
        table_size: u16,
    },
}

impl fmt::Display for MsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsiError::NoMsi(bdf) => write!(f, "{bdf}: no MSI capability"),
            MsiError::NoMsix(bdf) => write!(f, "{bdf}: no MSI-X capability"),
            MsiError::BadVectorCount { requested, capable } => {
                write!(f, "{requested} MSI vectors requested, {capable} possible")
            }
            MsiError::MemoryDecodingDisabled(bdf) => write!(
                f,
                "{bdf}: memory decoding is off (Command.Memory Space Enable), the MSI-X table \
                 does not answer"
            ),
            MsiError::EntryOutOfRange { entry, table_size } => {
                write!(f, "MSI-X entry {entry} beyond a table of {table_size}")
            }
        }
    }
}

impl From<MsiError> for PciError {
    fn from(error: MsiError) -> PciError {
        match error {
            MsiError::NoMsi(_) => PciError::NoMsiCapability,
            MsiError::NoMsix(_) => PciError::NoMsixCapability,
            MsiError::MemoryDecodingDisabled(_) => PciError::MemoryDecodingDisabled,
            MsiError::BadVectorCount { .. } | MsiError::EntryOutOfRange { .. } => {
                PciError::VectorOutOfRange
            }
        }
    }
}

/// Programs MSI for `vector_count` vectors (a power of two) starting at IRTE `handle`:
/// masks (per-vector mask bits, or MSI Enable off), writes address and data, sets Multiple
/// Message Enable, enables, unmasks. With more than one vector, SHV is set with subhandle 0 so
/// that vector n selects IRTE handle + n.
pub fn program_msi<C: ConfigSpace + ?Sized>(
    config: &mut C,
    function: &FunctionInfo,
    handle: IrteHandle,
    vector_count: u16,
) -> Result<MsiMessage, MsiError> {
    let bdf = function.bdf;
    let capability: MsiCapability = function.capabilities.msi.ok_or(MsiError::NoMsi(bdf))?;
    let capable = capability.max_vectors();
    if !vector_count.is_power_of_two() || vector_count > u16::from(capable) {
        return Err(MsiError::BadVectorCount {
            requested: vector_count,
            capable,
        });
    }
    let message = if vector_count > 1 {
        remappable_message(handle, Some(0))
    } else {
        remappable_message(handle, None)
    };
    let control_offset = capability.offset + msi::CONTROL;
    let control = config.read16(bdf, control_offset);
    if let Some(mask) = capability.mask_offset() {
        config.write32(bdf, mask, 0xffff_ffff);
    }
    config.write16(bdf, control_offset, control & !msi::ENABLE);
    config.write32(
        bdf,
        capability.offset + msi::ADDRESS_LOW,
        message.address as u32,
    );
    if capability.address_64 {
        config.write32(
            bdf,
            capability.offset + msi::ADDRESS_HIGH,
            (message.address >> 32) as u32,
        );
    }
    config.write16(bdf, capability.data_offset(), message.data as u16);
    let log2 = vector_count.trailing_zeros() as u16;
    let enabled = (control & !(0x7 << msi::MULTIPLE_MESSAGE_ENABLE_SHIFT))
        | (log2 << msi::MULTIPLE_MESSAGE_ENABLE_SHIFT)
        | msi::ENABLE;
    config.write16(bdf, control_offset, enabled);
    if let Some(mask) = capability.mask_offset() {
        let used = if vector_count >= 32 {
            u32::MAX
        } else {
            (1u32 << vector_count) - 1
        };
        config.write32(bdf, mask, !used);
    }
    Ok(message)
}

/// Registers of one MSI-X table entry (PCIe Base spec 6.0 section 7.7.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixEntryRegister {
    /// Message Address (low).
    AddressLow = 0,
    /// Message Upper Address.
    AddressHigh = 4,
    /// Message Data.
    Data = 8,
    /// Vector Control (bit 0: Mask).
    VectorControl = 12,
}

/// Vector Control: Mask Bit.
pub const MSIX_VECTOR_MASKED: u32 = 1;

/// Access to MSI-X tables (in BAR memory, mapped by the server binary).
pub trait MsixTable {
    /// Reads a register of entry `entry` of `bdf`'s table.
    fn read_entry(&self, bdf: Bdf, entry: u16, register: MsixEntryRegister) -> u32;
    /// Writes a register of entry `entry` of `bdf`'s table.
    fn write_entry(&mut self, bdf: Bdf, entry: u16, register: MsixEntryRegister, value: u32);
}

/// Programs MSI-X entry `entry` with the remappable message for `handle`/`subhandle`
/// (PCIe Base spec 6.0 sections 6.1.4.2 and 7.7.2): checks the entry is in the table and
/// memory decoding is on (nothing is written otherwise); turns MSI off (a function must not
/// have both enabled, section 6.1.4) and INTx off (Command.Interrupt Disable, section
/// 7.5.1.1.3); enables MSI-X under Function Mask; masks the entry, writes address and data,
/// unmasks it; then clears Function Mask. Returns the message written.
pub fn program_msix_entry<C: ConfigSpace + ?Sized, T: MsixTable + ?Sized>(
    config: &mut C,
    table: &mut T,
    function: &FunctionInfo,
    entry: u16,
    handle: IrteHandle,
    subhandle: Option<u16>,
) -> Result<MsiMessage, MsiError> {
    let bdf = function.bdf;
    let capability: MsixCapability = function.capabilities.msix.ok_or(MsiError::NoMsix(bdf))?;
    if entry >= capability.table_size {
        return Err(MsiError::EntryOutOfRange {
            entry,
            table_size: capability.table_size,
        });
    }
    let command = Command::from_bits_retain(config.read16(bdf, header::COMMAND));
    if !command.contains(Command::MEMORY_SPACE) {
        return Err(MsiError::MemoryDecodingDisabled(bdf));
    }
    let message = remappable_message(handle, subhandle);
    if let Some(msi_capability) = function.capabilities.msi {
        let msi_control_offset = msi_capability.offset + msi::CONTROL;
        let msi_control = config.read16(bdf, msi_control_offset);
        if msi_control & msi::ENABLE != 0 {
            config.write16(bdf, msi_control_offset, msi_control & !msi::ENABLE);
        }
    }
    if !command.contains(Command::INTX_DISABLE) {
        config.write16(
            bdf,
            header::COMMAND,
            (command | Command::INTX_DISABLE).bits(),
        );
    }
    let control_offset = capability.offset + msix::CONTROL;
    let control = config.read16(bdf, control_offset);
    config.write16(
        bdf,
        control_offset,
        control | msix::ENABLE | msix::FUNCTION_MASK,
    );
    let vector_control = table.read_entry(bdf, entry, MsixEntryRegister::VectorControl);
    table.write_entry(
        bdf,
        entry,
        MsixEntryRegister::VectorControl,
        vector_control | MSIX_VECTOR_MASKED,
    );
    table.write_entry(
        bdf,
        entry,
        MsixEntryRegister::AddressLow,
        message.address as u32,
    );
    table.write_entry(
        bdf,
        entry,
        MsixEntryRegister::AddressHigh,
        (message.address >> 32) as u32,
    );
    table.write_entry(bdf, entry, MsixEntryRegister::Data, message.data);
    table.write_entry(
        bdf,
        entry,
        MsixEntryRegister::VectorControl,
        vector_control & !MSIX_VECTOR_MASKED,
    );
    config.write16(
        bdf,
        control_offset,
        (control | msix::ENABLE) & !msix::FUNCTION_MASK,
    );
    Ok(message)
}

/// Puts `function`'s MSI-X table back to its reset state before the function changes owners
/// (PCIe Base spec 6.0 section 7.7.2.5: Mask Bit defaults to 1; Message Address and Data are
/// cleared so that no earlier owner's IRTE handle stays in the table): Function Mask on and
/// MSI-X Enable off (section 7.7.2.2), then every entry masked and its address, upper
/// address and data zeroed. The table is in BAR memory, so Memory Space Enable is turned on
/// for the writes if it was off and put back afterwards (bus mastering is never turned on).
/// Returns the number of entries cleared; `NoMsix` (nothing written) without the capability.
pub fn clear_msix_table<C: ConfigSpace + ?Sized, T: MsixTable + ?Sized>(
    config: &mut C,
    table: &mut T,
    function: &FunctionInfo,
) -> Result<u16, MsiError> {
    let bdf = function.bdf;
    let capability: MsixCapability = function.capabilities.msix.ok_or(MsiError::NoMsix(bdf))?;
    let control_offset = capability.offset + msix::CONTROL;
    let control = config.read16(bdf, control_offset);
    config.write16(
        bdf,
        control_offset,
        (control | msix::FUNCTION_MASK) & !msix::ENABLE,
    );
    let command = Command::from_bits_retain(config.read16(bdf, header::COMMAND));
    let decoding_off = !command.contains(Command::MEMORY_SPACE);
    if decoding_off {
        config.write16(
            bdf,
            header::COMMAND,
            ((command | Command::MEMORY_SPACE) & !Command::BUS_MASTER).bits(),
        );
    }
    for entry in 0..capability.table_size {
        table.write_entry(
            bdf,
            entry,
            MsixEntryRegister::VectorControl,
            MSIX_VECTOR_MASKED,
        );
        table.write_entry(bdf, entry, MsixEntryRegister::AddressLow, 0);
        table.write_entry(bdf, entry, MsixEntryRegister::AddressHigh, 0);
        table.write_entry(bdf, entry, MsixEntryRegister::Data, 0);
    }
    if decoding_off {
        config.write16(bdf, header::COMMAND, command.bits());
    }
    Ok(capability.table_size)
}
