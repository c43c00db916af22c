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

/// A PCI requester ID (bus, device, function; the VT-d source-id, VT-d spec 3.4.1): the type
/// the pci-server's interface shares, from `sluice-pci-address`.
pub use pci_address::Bdf;

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
    fn bdf_is_the_shared_requester_id_type() {
        let bdf = Bdf::new(0xff, 0x1f, 7).unwrap();
        assert_eq!(bdf.0, 0xffff);
        assert_eq!(std::format!("{}", Bdf::new(0, 2, 1).unwrap()), "00:02.1");
        assert!(Bdf::new(0, 32, 0).is_err());
    }

    #[test]
    fn addresses_display_in_hex() {
        assert_eq!(std::format!("{}", HostPhys(0xfee0_0000)), "0xfee00000");
        assert_eq!(IoVirt(0x1000).checked_add(u64::MAX), None);
    }
}
