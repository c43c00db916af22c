//! Address newtypes used by the nested-paging builders and the VMCS / VMCB helpers.

pub use sluice_abi::vcpu::GuestPhys;

/// A host-physical address (RAM frame, table frame or device MMIO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPhys(pub u64);

impl HostPhys {
    /// The raw address.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Size of the smallest page and of every paging-structure table (SDM Vol. 3A section 4.5).
pub const PAGE_SIZE: u64 = 4096;

/// Largest physical-address width the architecture defines (MAXPHYADDR <= 52, SDM Vol. 3A
/// section 4.1.4; APM Vol. 2 section 5.3.3).
pub const MAX_PHYSICAL_ADDRESS_BITS: u32 = 52;
