//! ECAM address computation (PCIe Base spec 6.0 section 7.2.2) for one MCFG entry.

use core::fmt;
use pci_api::Bdf;

/// A host-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPhys(pub u64);

impl fmt::Display for HostPhys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One MCFG allocation entry (PCI Firmware spec 3.2 section 4.1.2): the ECAM window of a PCI
/// segment for buses `start_bus..=end_bus`. As the firmware spec defines it, `base` is the
/// address of bus 0's config space even when `start_bus` is not 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    base: HostPhys,
    segment: u16,
    start_bus: u8,
    end_bus: u8,
}

/// Why an MCFG entry or an ECAM address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcamError {
    /// The end bus is below the start bus.
    EmptyBusRange {
        /// Start bus.
        start: u8,
        /// End bus.
        end: u8,
    },
    /// The base is not 1 MiB aligned (each bus takes 1 MiB: 32 devices x 8 functions x 4 KiB).
    MisalignedBase(HostPhys),
    /// The window would wrap past the top of the 64-bit address space.
    WindowOverflows,
    /// The bus is outside the entry's bus range.
    BusOutOfRange(u8),
    /// The offset is 4 KiB or more.
    OffsetOutOfRange(u16),
}

impl fmt::Display for EcamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcamError::EmptyBusRange { start, end } => {
                write!(f, "MCFG bus range {start:#04x}-{end:#04x} is empty")
            }
            EcamError::MisalignedBase(base) => write!(f, "ECAM base {base} is not 1 MiB aligned"),
            EcamError::WindowOverflows => f.write_str("ECAM window wraps the address space"),
            EcamError::BusOutOfRange(bus) => write!(f, "bus {bus:#04x} outside the MCFG bus range"),
            EcamError::OffsetOutOfRange(offset) => {
                write!(f, "config offset {offset:#x} is beyond 4 KiB")
            }
        }
    }
}

/// ECAM address bits (PCIe Base spec 6.0 section 7.2.2, table 7-1): bus at bit 20, device at
/// bit 15, function at bit 12, register offset in bits 11:0.
const BUS_SHIFT: u32 = 20;
const DEVFN_SHIFT: u32 = 12;

impl EcamRegion {
    /// Validates an MCFG entry.
    pub fn new(
        base: HostPhys,
        segment: u16,
        start_bus: u8,
        end_bus: u8,
    ) -> Result<EcamRegion, EcamError> {
        if end_bus < start_bus {
            return Err(EcamError::EmptyBusRange {
                start: start_bus,
                end: end_bus,
            });
        }
        if base.0 & ((1 << BUS_SHIFT) - 1) != 0 {
            return Err(EcamError::MisalignedBase(base));
        }
        let end = (u64::from(end_bus) + 1) << BUS_SHIFT;
        base.0.checked_add(end).ok_or(EcamError::WindowOverflows)?;
        Ok(EcamRegion {
            base,
            segment,
            start_bus,
            end_bus,
        })
    }

    /// The PCI segment group number.
    pub const fn segment(&self) -> u16 {
        self.segment
    }

    /// First bus decoded.
    pub const fn start_bus(&self) -> u8 {
        self.start_bus
    }

    /// Last bus decoded.
    pub const fn end_bus(&self) -> u8 {
        self.end_bus
    }

    /// True when `bus` is decoded by this window.
    pub const fn contains_bus(&self, bus: u8) -> bool {
        bus >= self.start_bus && bus <= self.end_bus
    }

    /// The address of (`bdf`, `offset`) in the window.
    pub fn address(&self, bdf: Bdf, offset: u16) -> Result<HostPhys, EcamError> {
        if !self.contains_bus(bdf.bus()) {
            return Err(EcamError::BusOutOfRange(bdf.bus()));
        }
        if offset >= crate::CONFIG_SPACE_SIZE {
            return Err(EcamError::OffsetOutOfRange(offset));
        }
        let within = (u64::from(bdf.bus()) << BUS_SHIFT)
            | (u64::from(bdf.devfn()) << DEVFN_SHIFT)
            | u64::from(offset);
        // Cannot overflow: `new` checked base + (end_bus + 1) MiB.
        Ok(HostPhys(self.base.0.wrapping_add(within)))
    }

    /// The first address and length of the part of the window that decodes the bus range
    /// (what the server maps).
    pub fn mapped_window(&self) -> (HostPhys, u64) {
        let first = self.base.0 + (u64::from(self.start_bus) << BUS_SHIFT);
        let length = (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) << BUS_SHIFT;
        (HostPhys(first), length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q35() -> EcamRegion {
        EcamRegion::new(HostPhys(0xb000_0000), 0, 0, 255).unwrap()
    }

    #[test]
    fn computes_ecam_addresses() {
        let region = q35();
        let bdf = Bdf::new(1, 2, 3).unwrap();
        assert_eq!(
            region.address(bdf, 0x104),
            Ok(HostPhys(
                0xb000_0000 + (1 << 20) + (2 << 15) + (3 << 12) + 0x104
            ))
        );
        assert_eq!(
            region.address(Bdf::new(255, 31, 7).unwrap(), 0xffc),
            Ok(HostPhys(0xb000_0000 + 0x0fff_fffc))
        );
        assert_eq!(
            region.address(bdf, 4096),
            Err(EcamError::OffsetOutOfRange(4096))
        );
    }

    #[test]
    fn honours_the_bus_range_with_base_at_bus_zero() {
        let region = EcamRegion::new(HostPhys(0xe000_0000), 1, 0x80, 0x8f).unwrap();
        assert_eq!(
            region.address(Bdf::new(0x7f, 0, 0).unwrap(), 0),
            Err(EcamError::BusOutOfRange(0x7f))
        );
        assert_eq!(
            region.address(Bdf::new(0x80, 0, 0).unwrap(), 0),
            Ok(HostPhys(0xe000_0000 + (0x80 << 20)))
        );
        assert_eq!(
            region.mapped_window(),
            (HostPhys(0xe000_0000 + (0x80 << 20)), 16 << 20)
        );
    }

    #[test]
    fn rejects_bad_entries() {
        assert_eq!(
            EcamRegion::new(HostPhys(0xb000_0000), 0, 5, 4),
            Err(EcamError::EmptyBusRange { start: 5, end: 4 })
        );
        assert_eq!(
            EcamRegion::new(HostPhys(0xb000_1000), 0, 0, 4),
            Err(EcamError::MisalignedBase(HostPhys(0xb000_1000)))
        );
        assert_eq!(
            EcamRegion::new(HostPhys(u64::MAX - 0xfffff), 0, 0, 0),
            Err(EcamError::WindowOverflows)
        );
    }
}
