//! Saving and restoring a function's config state around a reset: the header (BARs, command,
//! interrupt line, bridge windows and bus numbers) and the control registers of its
//! capabilities (PCIe device/link control, MSI, MSI-X, ACS, AER masks). Bus mastering is never
//! restored: after a reset it stays off until the owner turns it on.

use crate::function::FunctionInfo;
use crate::registers::{acs, aer, header, msi, msix, pcie, Command};
use crate::{AccessWidth, ConfigSpace};
use pci_api::Bdf;

/// Most capability registers saved per function.
const MAX_SAVED: usize = 24;

/// A function's saved config state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedState {
    bdf: Bdf,
    /// Dwords 0x04..0x40 of the header (index 0 is offset 0x04).
    header: [u32; 15],
    registers: heapless::Vec<(u16, AccessWidth, u32), MAX_SAVED>,
    device_control: Option<u16>,
}

impl SavedState {
    /// Reads the state of `function`.
    pub fn save<C: ConfigSpace + ?Sized>(config: &C, function: &FunctionInfo) -> SavedState {
        let bdf = function.bdf;
        let mut header = [0u32; 15];
        for (index, slot) in header.iter_mut().enumerate() {
            *slot = config.read32(bdf, 0x04 + 4 * index as u16);
        }
        let mut registers = heapless::Vec::new();
        let mut keep = |offset: u16, width: AccessWidth| {
            let value = config.read(bdf, offset, width);
            let _ = registers.push((offset, width, value));
        };
        let capabilities = &function.capabilities;
        if let Some(cap) = capabilities.pcie {
            keep(cap.offset + pcie::DEVICE_CONTROL, AccessWidth::Word);
            keep(cap.offset + pcie::LINK_CONTROL, AccessWidth::Word);
            if cap.version >= 2 {
                keep(cap.offset + pcie::DEVICE_CONTROL_2, AccessWidth::Word);
                keep(cap.offset + pcie::LINK_CONTROL_2, AccessWidth::Word);
            }
        }
        if let Some(cap) = capabilities.msi {
            keep(cap.offset + msi::ADDRESS_LOW, AccessWidth::Dword);
            if cap.address_64 {
                keep(cap.offset + msi::ADDRESS_HIGH, AccessWidth::Dword);
            }
            keep(cap.data_offset(), AccessWidth::Word);
            if let Some(mask) = cap.mask_offset() {
                keep(mask, AccessWidth::Dword);
            }
            // Control last: enabling comes after address and data.
            keep(cap.offset + msi::CONTROL, AccessWidth::Word);
        }
        if let Some(cap) = capabilities.msix {
            keep(cap.offset + msix::CONTROL, AccessWidth::Word);
        }
        if let Some(cap) = capabilities.acs {
            keep(cap.offset + acs::CONTROL, AccessWidth::Word);
        }
        if let Some(offset) = capabilities.aer {
            keep(offset + aer::UNCORRECTABLE_MASK, AccessWidth::Dword);
            keep(offset + aer::UNCORRECTABLE_SEVERITY, AccessWidth::Dword);
            keep(offset + aer::CORRECTABLE_MASK, AccessWidth::Dword);
            keep(offset + aer::CAPABILITIES_CONTROL, AccessWidth::Dword);
        }
        SavedState {
            bdf,
            header,
            registers,
            device_control: capabilities
                .pcie
                .map(|cap| cap.offset + pcie::DEVICE_CONTROL),
        }
    }

    /// The function this state belongs to.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Writes the state back: header dwords from the top down (BARs before the command
    /// register, as Linux does), the command register with Bus Master Enable cleared, then the
    /// capability registers (PCIe Device Control without Initiate FLR).
    pub fn restore<C: ConfigSpace + ?Sized>(&self, config: &mut C) {
        let bdf = self.bdf;
        for index in (1..self.header.len()).rev() {
            let offset = 0x04 + 4 * index as u16;
            let Some(value) = self.header.get(index).copied() else {
                continue;
            };
            if config.read32(bdf, offset) != value {
                config.write32(bdf, offset, value);
            }
        }
        let command = (self.header.first().copied().unwrap_or(0) & 0xffff) as u16;
        let command = Command::from_bits_retain(command) - Command::BUS_MASTER;
        config.write16(bdf, header::COMMAND, command.bits());
        for (offset, width, value) in &self.registers {
            // Never re-trigger an FLR: bit 15 of Device Control.
            let value = if Some(*offset) == self.device_control {
                value & !u32::from(pcie::DEVICE_CONTROL_INITIATE_FLR)
            } else {
                *value
            };
            config.write(bdf, *offset, *width, value);
        }
    }
}
