//! The few registers of QEMU's `e1000e` (Intel 82574L, 8086:10d3) the MSI-X checks use
//! (82574 datasheet section 10.2.4, and QEMU's `hw/net/e1000e_core.c`): the interrupt cause
//! set register raises a cause, the interrupt mask lets it through, and IVAR routes a cause to
//! an MSI-X table entry. No DMA, no queues: only the interrupt path.

use sluice_rt::mmio::Window;

/// Intel's vendor ID.
pub const VENDOR_ID: u16 = 0x8086;
/// The 82574L's device ID.
pub const DEVICE_ID: u16 = 0x10d3;
/// Interrupt Cause Read (write 1s: clear those causes).
pub const ICR: u64 = 0xc0;
/// Interrupt Cause Set: the value written is ORed into ICR, as if those events happened.
pub const ICS: u64 = 0xc8;
/// Interrupt Mask Set/Read: causes that raise an interrupt.
pub const IMS: u64 = 0xd0;
/// Interrupt Mask Clear.
pub const IMC: u64 = 0xd8;
/// Interrupt Vector Allocation: for each cause group a 4-bit field, bit 3 valid, bits 2:0 the
/// MSI-X entry (RXQ0 in bits 3:0, RXQ1 7:4, TXQ0 11:8, TXQ1 15:12, other 19:16).
pub const IVAR: u64 = 0xe4;
/// Cause: receive queue 0 (ICR bit 20).
pub const CAUSE_RXQ0: u32 = 1 << 20;
/// IVAR field bit: the entry number is valid.
pub const IVAR_VALID: u32 = 0x8;
/// MSI-X entries the 82574 has (IVAR can only name these).
pub const MSIX_ENTRIES: u16 = 5;

/// The IVAR value that routes receive queue 0 to MSI-X entry `entry` and nothing else
/// anywhere; `None` for an entry the device does not have.
pub const fn ivar_rxq0(entry: u16) -> Option<u32> {
    if entry < MSIX_ENTRIES {
        Some(IVAR_VALID | entry as u32)
    } else {
        None
    }
}

/// The device through its mapped BAR 0.
pub struct E1000e {
    /// BAR 0 (128 KiB of registers), mapped uncached.
    pub registers: Window,
}

impl E1000e {
    /// Masks and clears every cause (nothing pending, nothing can fire).
    pub fn quiesce(&self) {
        self.registers.write32(IMC, u32::MAX);
        self.registers.write32(ICR, u32::MAX);
    }

    /// Routes receive queue 0 to MSI-X entry `entry` and unmasks it; `false` for an entry the
    /// device does not have (nothing written).
    pub fn route_rxq0(&self, entry: u16) -> bool {
        let Some(ivar) = ivar_rxq0(entry) else {
            return false;
        };
        self.registers.write32(IVAR, ivar);
        self.registers.write32(IMS, CAUSE_RXQ0);
        true
    }

    /// Raises the receive queue 0 cause (the device sends the MSI-X message of its entry).
    pub fn raise_rxq0(&self) {
        self.registers.write32(ICS, CAUSE_RXQ0);
    }

    /// The pending causes (all-ones if unreadable). Reading ICR may clear it.
    pub fn causes(&self) -> u32 {
        self.registers.read32(ICR).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivar_names_only_entries_the_device_has() {
        assert_eq!(ivar_rxq0(0), Some(0x8));
        assert_eq!(ivar_rxq0(2), Some(0xa));
        assert_eq!(ivar_rxq0(4), Some(0xc));
        assert_eq!(ivar_rxq0(5), None);
        assert_eq!(ivar_rxq0(u16::MAX), None);
    }

    #[test]
    fn the_interrupt_path_is_driven_through_its_registers() {
        let mut backing = [0u32; 64];
        // SAFETY: the array outlives the window and is only accessed through it.
        let registers = unsafe { Window::new(backing.as_mut_ptr() as u64, 256) };
        let nic = E1000e { registers };
        assert!(!nic.route_rxq0(5), "entry 5 does not exist");
        assert_eq!(registers.read32(IVAR), Some(0));
        assert_eq!(registers.read32(IMS), Some(0));
        assert!(nic.route_rxq0(2));
        assert_eq!(registers.read32(IVAR), Some(0xa));
        assert_eq!(registers.read32(IMS), Some(CAUSE_RXQ0));
        nic.raise_rxq0();
        assert_eq!(registers.read32(ICS), Some(CAUSE_RXQ0));
        nic.quiesce();
        assert_eq!(registers.read32(IMC), Some(u32::MAX));
        assert_eq!(nic.causes(), u32::MAX);
        assert_eq!(backing.len(), 64);
    }
}
