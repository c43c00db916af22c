//! Address and identifier newtypes shared by the iommu-server and its clients.
//!
//! Mixing a host-physical address with an I/O virtual address is a type error. All types are
//! `#[repr(transparent)]` and zerocopy, so they can sit inside IPC messages.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A host-physical address (what the CPU and the IOMMU's page-table walker see).
#[derive(
    Clone,
    Copy,
    Debug,
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
pub struct HostPhys(pub u64);

/// An I/O virtual address: what a device puts on the bus, translated by a DMA domain.
#[derive(
    Clone,
    Copy,
    Debug,
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
pub struct IoVirt(pub u64);

/// A PCI requester ID: bus (8 bits), device (5 bits), function (3 bits) as in PCIe Base 5.0
/// section 2.2.6.2 (and the VT-d source-id, VT-d spec 3.4.1).
#[derive(
    Clone,
    Copy,
    Debug,
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

impl HostPhys {
    /// The raw address.
    pub const fn value(self) -> u64 {
        self.0
    }
    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Self> {
        self.0.checked_add(bytes).map(Self)
    }
}

impl IoVirt {
    /// The raw address.
    pub const fn value(self) -> u64 {
        self.0
    }
    /// `self + bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Self> {
        self.0.checked_add(bytes).map(Self)
    }
}

impl Bdf {
    /// Builds a BDF; `None` when the device (0..32) or function (0..8) is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device >= 32 || function >= 8 {
            return None;
        }
        Some(Self(
            ((bus as u16) << 8) | ((device as u16) << 3) | function as u16,
        ))
    }
    /// The bus number (bits 15:8).
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// The device number (bits 7:3).
    pub const fn device(self) -> u8 {
        ((self.0 >> 3) & 0x1f) as u8
    }
    /// The function number (bits 2:0).
    pub const fn function(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// Device and function together (bits 7:0), the index into a context table.
    pub const fn devfn(self) -> u8 {
        (self.0 & 0xff) as u8
    }
}

impl fmt::Display for Bdf {
    /// `BB:DD.F` in lower-case hex, as `lspci` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

impl fmt::Display for HostPhys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for IoVirt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_fields_and_display() {
        let bdf = Bdf::new(0xff, 0x1f, 7).unwrap();
        assert_eq!(bdf.0, 0xffff);
        assert_eq!((bdf.bus(), bdf.device(), bdf.function()), (0xff, 0x1f, 7));
        assert_eq!(std::format!("{}", Bdf::new(0, 2, 1).unwrap()), "00:02.1");
        assert_eq!(Bdf::new(0, 32, 0), None);
        assert_eq!(Bdf::new(0, 0, 8), None);
    }
}
