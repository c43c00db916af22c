//! Bus/device/function numbers (the PCIe requester ID, from `sluice-pci-address`) and owner
//! identities, as they travel in messages.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A PCI bus/device/function triple as its 16-bit requester ID, shared with the iommu-server's
/// interface (`sluice-pci-address`).
pub use pci_address::{Bdf, BdfError};

/// Who owns an assigned device: the identity of a client of the pci-server (a guest's VMM or a
/// user-level driver), as named by the system description.
#[derive(
    Clone,
    Copy,
    Debug,
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
pub struct OwnerId(pub u32);

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_display_and_bdfs_are_the_iommu_servers_type() {
        assert_eq!(format!("{}", OwnerId(64)), "owner 64");
        // The same type the iommu-server's interface uses: no conversion between them.
        let shared: pci_address::Bdf = Bdf::new(0x12, 0x1f, 7).unwrap();
        assert_eq!(shared.requester_id(), 0x12ff);
        assert_eq!(Bdf::new(0, 32, 0), Err(BdfError::DeviceOutOfRange(32)));
    }
}
