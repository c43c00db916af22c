//! Recording fakes of the other seams: a delay that only adds up, an IOMMU binding that
//! records (and can refuse) attachments, and an MSI-X table in memory.

use crate::msi::{MsixEntryRegister, MsixTable};
use crate::ownership::{DmaIdentity, IommuBinding, IommuRefusal};
use crate::{Bdf, Delay, OwnerId};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A delay that returns at once and records every wait.
#[derive(Clone, Debug, Default)]
pub struct RecordingDelay {
    /// Every wait, in microseconds.
    pub waits: Vec<u32>,
}

impl RecordingDelay {
    /// Total time waited, in microseconds.
    pub fn total_us(&self) -> u64 {
        self.waits.iter().map(|w| u64::from(*w)).sum()
    }
}

impl Delay for RecordingDelay {
    fn delay_us(&mut self, microseconds: u32) {
        self.waits.push(microseconds);
    }
}

/// One recorded attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IommuCall {
    /// To the quarantine domain.
    Quarantine(DmaIdentity),
    /// To an owner's domain.
    Owner(OwnerId, DmaIdentity),
}

/// An IOMMU binding that records calls, refusing them when `refuse` is set.
#[derive(Clone, Debug, Default)]
pub struct RecordingIommu {
    /// Calls that succeeded.
    pub calls: Vec<IommuCall>,
    /// When set, every call fails with this code.
    pub refuse: Option<u32>,
}

impl IommuBinding for RecordingIommu {
    fn attach_quarantine(&mut self, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        if let Some(code) = self.refuse {
            return Err(IommuRefusal(code));
        }
        self.calls.push(IommuCall::Quarantine(device.clone()));
        Ok(())
    }

    fn attach_owner(&mut self, owner: OwnerId, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        if let Some(code) = self.refuse {
            return Err(IommuRefusal(code));
        }
        self.calls.push(IommuCall::Owner(owner, device.clone()));
        Ok(())
    }
}

/// MSI-X tables in memory, every entry masked at reset as the spec requires.
#[derive(Clone, Debug, Default)]
pub struct FakeMsixTable {
    entries: BTreeMap<(u16, u16, u8), u32>,
    /// Every write: (bdf, entry, register, value).
    pub writes: Vec<(Bdf, u16, MsixEntryRegister, u32)>,
}

impl MsixTable for FakeMsixTable {
    fn read_entry(&self, bdf: Bdf, entry: u16, register: MsixEntryRegister) -> u32 {
        let default = if register == MsixEntryRegister::VectorControl {
            1
        } else {
            0
        };
        self.entries
            .get(&(bdf.requester_id(), entry, register as u8))
            .copied()
            .unwrap_or(default)
    }

    fn write_entry(&mut self, bdf: Bdf, entry: u16, register: MsixEntryRegister, value: u32) {
        self.writes.push((bdf, entry, register, value));
        self.entries
            .insert((bdf.requester_id(), entry, register as u8), value);
    }
}
