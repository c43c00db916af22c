//! QEMU's `edu` device (1234:11e8), as QEMU documents it in `docs/specs/edu.rst`: a 1 MiB
//! memory BAR 0 with an identification register, an interrupt raise/acknowledge pair, and a
//! DMA engine that copies between host memory (a bus address, translated by the IOMMU) and a
//! 4 KiB buffer inside the device at 0x40000.

use sluice_rt::mmio::Window;

/// Identification register: 0xRRrr00ed (major, minor version, 0x00, 0xed).
pub const IDENTIFICATION: u64 = 0x00;
/// Interrupt status (read) and raise (write: ORed into the status, raises the interrupt).
pub const INTERRUPT_STATUS: u64 = 0x24;
/// Interrupt raise: the value written is ORed into the status and the interrupt is raised.
pub const INTERRUPT_RAISE: u64 = 0x60;
/// Interrupt acknowledge: the value written clears those status bits.
pub const INTERRUPT_ACKNOWLEDGE: u64 = 0x64;
/// DMA source address (64-bit).
pub const DMA_SOURCE: u64 = 0x80;
/// DMA destination address (64-bit).
pub const DMA_DESTINATION: u64 = 0x88;
/// DMA transfer count in bytes (64-bit).
pub const DMA_COUNT: u64 = 0x90;
/// DMA command (64-bit): bit 0 start/running, bit 1 direction, bit 2 raise an interrupt when
/// done.
pub const DMA_COMMAND: u64 = 0x98;
/// Command bit: start the transfer; reads as 1 while it runs.
pub const COMMAND_RUN: u64 = 1 << 0;
/// Command bit: direction from the device's buffer to host memory (clear: host to device).
pub const COMMAND_TO_HOST: u64 = 1 << 1;
/// The device's internal DMA buffer, as the DMA engine addresses it.
pub const DEVICE_BUFFER: u64 = 0x4_0000;
/// Size of that buffer.
pub const DEVICE_BUFFER_SIZE: u64 = 4096;
/// The low byte every edu identification register has.
pub const IDENTIFICATION_MAGIC: u32 = 0xed;

/// One DMA transfer as the engine's registers take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Source address (a bus address, or in the device buffer).
    pub source: u64,
    /// Destination address.
    pub destination: u64,
    /// Bytes.
    pub count: u64,
    /// The command word that starts it.
    pub command: u64,
}

impl Transfer {
    /// Host memory at bus address `from` into the device buffer at `offset`; `None` if the
    /// device side leaves its buffer (the device would stop the emulator).
    pub fn into_device(from: u64, offset: u64, count: u64) -> Option<Transfer> {
        Self::fits(offset, count)?;
        Some(Transfer {
            source: from,
            destination: DEVICE_BUFFER + offset,
            count,
            command: COMMAND_RUN,
        })
    }

    /// The device buffer at `offset` out to host memory at bus address `to`.
    pub fn to_host(offset: u64, to: u64, count: u64) -> Option<Transfer> {
        Self::fits(offset, count)?;
        Some(Transfer {
            source: DEVICE_BUFFER + offset,
            destination: to,
            count,
            command: COMMAND_RUN | COMMAND_TO_HOST,
        })
    }

    fn fits(offset: u64, count: u64) -> Option<()> {
        let end = offset.checked_add(count)?;
        (count > 0 && end <= DEVICE_BUFFER_SIZE).then_some(())
    }
}

/// The device through its mapped BAR 0.
pub struct Edu {
    /// BAR 0, mapped uncached.
    pub registers: Window,
}

impl Edu {
    /// The identification register (all-ones if unreadable).
    pub fn identification(&self) -> u32 {
        self.registers.read32(IDENTIFICATION).unwrap_or(u32::MAX)
    }

    /// Programs and starts `transfer`.
    pub fn start(&self, transfer: &Transfer) {
        self.registers.write64(DMA_SOURCE, transfer.source);
        self.registers
            .write64(DMA_DESTINATION, transfer.destination);
        self.registers.write64(DMA_COUNT, transfer.count);
        self.registers.write64(DMA_COMMAND, transfer.command);
    }

    /// Whether the engine still runs.
    pub fn busy(&self) -> bool {
        self.registers
            .read64(DMA_COMMAND)
            .is_none_or(|command| command & COMMAND_RUN != 0)
    }

    /// Raises the device's interrupt with status bits `bits`.
    pub fn raise_interrupt(&self, bits: u32) {
        self.registers.write32(INTERRUPT_RAISE, bits);
    }

    /// Acknowledges every pending interrupt status bit.
    pub fn acknowledge_interrupts(&self) {
        let status = self.registers.read32(INTERRUPT_STATUS).unwrap_or(0);
        self.registers.write32(INTERRUPT_ACKNOWLEDGE, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_stay_inside_the_device_buffer() {
        let inward = Transfer::into_device(0x10_0000, 0, 64).unwrap();
        assert_eq!(inward.destination, 0x4_0000);
        assert_eq!(inward.command, 1);
        let outward = Transfer::to_host(0xff0, 0x20_0000, 16).unwrap();
        assert_eq!((outward.source, outward.command), (0x4_0ff0, 3));
        assert_eq!(Transfer::to_host(0xff0, 0, 17), None);
        assert_eq!(Transfer::into_device(0, 0, 0), None);
        assert_eq!(Transfer::into_device(0, u64::MAX, 2), None);
    }

    #[test]
    fn the_engine_is_driven_through_its_registers() {
        let mut backing = [0u64; 32];
        // SAFETY: the array outlives the window and is only accessed through it.
        let registers = unsafe { Window::new(backing.as_mut_ptr() as u64, 256) };
        let edu = Edu { registers };
        edu.start(&Transfer::to_host(0, 0x1234_5000, 8).unwrap());
        assert!(
            edu.busy(),
            "the run bit reads back until the device clears it"
        );
        assert_eq!(registers.read64(DMA_DESTINATION), Some(0x1234_5000));
        assert_eq!(registers.read64(DMA_COUNT), Some(8));
        // The device clears the run bit when the transfer is done.
        registers.write64(DMA_COMMAND, COMMAND_TO_HOST);
        assert!(!edu.busy());
        edu.raise_interrupt(0x100);
        assert_eq!(registers.read32(INTERRUPT_RAISE), Some(0x100));
        assert_eq!(backing.len(), 32);
    }
}
