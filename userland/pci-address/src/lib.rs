//! The PCI bus/device/function triple, stored as the 16-bit requester id every server and
//! the IOMMU hardware speak (PCIe Base spec 6.0 section 2.2.6.2: bus in bits 15:8, device in
//! 7:3, function in 2:0). One type for the iommu-server's and the pci-server's interfaces
//! (`iommu_api::Bdf` and `pci_api::Bdf` re-export it), so a requester id passes between them
//! unchanged.
//!
//! Every `u16` is a valid `Bdf`: decoding one from message bytes cannot fail, and the raw field
//! is public. [`Bdf::new`] checks the device and function ranges when the parts come apart.
#![no_std]

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A PCI bus/device/function triple as its 16-bit requester id.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
)]
#[repr(transparent)]
pub struct Bdf(pub u16);

/// Why a bus/device/function triple was rejected by [`Bdf::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdfError {
    /// The device number is above 31 (it has 5 bits).
    DeviceOutOfRange(u8),
    /// The function number is above 7 (it has 3 bits).
    FunctionOutOfRange(u8),
}

impl fmt::Display for BdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BdfError::DeviceOutOfRange(d) => write!(f, "device number {d} is above 31"),
            BdfError::FunctionOutOfRange(n) => write!(f, "function number {n} is above 7"),
        }
    }
}

impl core::error::Error for BdfError {}

impl Bdf {
    /// Builds a `Bdf`, rejecting a device above 31 or a function above 7.
    pub const fn new(bus: u8, device: u8, function: u8) -> Result<Bdf, BdfError> {
        if device > 31 {
            return Err(BdfError::DeviceOutOfRange(device));
        }
        if function > 7 {
            return Err(BdfError::FunctionOutOfRange(function));
        }
        Ok(Bdf(((bus as u16) << 8)
            | ((device as u16) << 3)
            | function as u16))
    }

    /// The `Bdf` for a bus and an 8-bit device/function number (also an ARI function number).
    pub const fn from_bus_devfn(bus: u8, devfn: u8) -> Bdf {
        Bdf(((bus as u16) << 8) | devfn as u16)
    }

    /// The `Bdf` whose requester id is `id`.
    pub const fn from_requester_id(id: u16) -> Bdf {
        Bdf(id)
    }

    /// The 16-bit requester id the IOMMU sees.
    pub const fn requester_id(self) -> u16 {
        self.0
    }

    /// Bus number (bits 15:8).
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device number (bits 7:3, 0..=31).
    pub const fn device(self) -> u8 {
        ((self.0 >> 3) & 0x1f) as u8
    }

    /// Function number (bits 2:0, 0..=7).
    pub const fn function(self) -> u8 {
        (self.0 & 0x7) as u8
    }

    /// Device and function together (bits 7:0): the index into a VT-d context table.
    pub const fn devfn(self) -> u8 {
        (self.0 & 0xff) as u8
    }

    /// The same device with another function number (masked to 3 bits).
    pub const fn with_function(self, function: u8) -> Bdf {
        Bdf((self.0 & !0x7) | (function & 0x7) as u16)
    }
}

impl fmt::Display for Bdf {
    /// `BB:DD.F` in lower-case hex, as `lspci` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

impl fmt::Debug for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn packs_like_a_requester_id() {
        let bdf = Bdf::new(0x12, 0x1f, 7).unwrap();
        assert_eq!(bdf.requester_id(), 0x12ff);
        assert_eq!(bdf, Bdf(0x12ff));
        assert_eq!((bdf.bus(), bdf.device(), bdf.function()), (0x12, 31, 7));
        assert_eq!(bdf.devfn(), 0xff);
        assert_eq!(format!("{bdf}"), "12:1f.7");
        assert_eq!(format!("{:?}", Bdf::new(0, 2, 1).unwrap()), "00:02.1");
        assert_eq!(bdf.with_function(2).function(), 2);
        assert_eq!(Bdf::from_bus_devfn(3, 0x10), Bdf::new(3, 2, 0).unwrap());
    }

    #[test]
    fn rejects_out_of_range_parts() {
        assert_eq!(Bdf::new(0, 32, 0), Err(BdfError::DeviceOutOfRange(32)));
        assert_eq!(Bdf::new(0, 0, 8), Err(BdfError::FunctionOutOfRange(8)));
        assert_eq!(
            format!("{}", BdfError::DeviceOutOfRange(32)),
            "device number 32 is above 31"
        );
    }

    #[test]
    fn every_requester_id_round_trips() {
        for id in 0..=u16::MAX {
            let bdf = Bdf::from_requester_id(id);
            assert_eq!(Bdf::new(bdf.bus(), bdf.device(), bdf.function()), Ok(bdf));
            assert_eq!(bdf.as_bytes(), id.to_le_bytes());
        }
    }
}
