//! The root table (VT-d spec 9.1, legacy mode): 256 root entries, one per bus, each pointing at
//! that bus's context table. RTADDR_REG holds its address (TTM = 00b, legacy).

use super::context_table::ContextEntry;
use crate::memory::{allocate_zeroed, FrameAllocator, PhysMemory};
use iommu_api::{Bdf, HostPhys, IommuError};

/// P, bit 0 of a root entry: the context table pointer is valid.
pub const ROOT_PRESENT: u64 = 1 << 0;
/// CTP, bits 63:12: context table pointer.
pub const ROOT_CONTEXT_TABLE_POINTER: u64 = 0xffff_ffff_ffff_f000;

/// The root table and, through it, every context table of one unit.
#[derive(Debug)]
pub struct RootTable {
    frame: HostPhys,
}

/// Address of the 16-byte entry `index` in the table at `table`.
fn entry_address(table: HostPhys, index: u8) -> HostPhys {
    HostPhys(table.0 + u64::from(index) * 16)
}

impl RootTable {
    /// An empty root table (no bus has a context table: every request faults with reason 1).
    pub fn new<M: PhysMemory, A: FrameAllocator>(
        memory: &mut M,
        frames: &mut A,
    ) -> Result<Self, IommuError> {
        let frame = allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory)?;
        Ok(Self { frame })
    }

    /// What to write into RTADDR_REG (TTM bits 11:10 = 00b, legacy mode).
    pub fn address(&self) -> HostPhys {
        self.frame
    }

    /// The context table of `bus`, if the root entry is present.
    pub fn context_table<M: PhysMemory>(&self, memory: &M, bus: u8) -> Option<HostPhys> {
        let entry = memory.read_u64(entry_address(self.frame, bus));
        (entry & ROOT_PRESENT != 0).then_some(HostPhys(entry & ROOT_CONTEXT_TABLE_POINTER))
    }

    /// The present context entry of `device`, if any.
    pub fn context<M: PhysMemory>(&self, memory: &M, device: Bdf) -> Option<ContextEntry> {
        let table = self.context_table(memory, device.bus())?;
        let address = entry_address(table, device.devfn());
        ContextEntry::decode(
            memory.read_u64(address),
            memory.read_u64(HostPhys(address.0 + 8)),
        )
    }

    /// Makes sure `bus` has a context table (allocating a zeroed one), so a later
    /// [`Self::set_context`] cannot fail.
    pub fn prepare_bus<M: PhysMemory, A: FrameAllocator>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        bus: u8,
    ) -> Result<HostPhys, IommuError> {
        if let Some(table) = self.context_table(memory, bus) {
            return Ok(table);
        }
        let table = allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory)?;
        memory.write_u64(HostPhys(entry_address(self.frame, bus).0 + 8), 0);
        memory.write_u64(entry_address(self.frame, bus), table.0 | ROOT_PRESENT);
        Ok(table)
    }

    /// Writes the context entry of `device` (its bus must be prepared). The high qword is
    /// written first so the entry becomes present only when complete. Replacing a present entry
    /// must go through [`Self::clear_context`] and a context-cache invalidation first.
    pub fn set_context<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        device: Bdf,
        entry: &ContextEntry,
    ) -> Result<(), IommuError> {
        let table = self
            .context_table(memory, device.bus())
            .ok_or(IommuError::OutOfTableMemory)?;
        let address = entry_address(table, device.devfn());
        let (low, high) = entry.encode();
        memory.write_u64(address, 0);
        memory.write_u64(HostPhys(address.0 + 8), high);
        memory.write_u64(address, low);
        Ok(())
    }

    /// Makes the context entry of `device` not present; returns what it was.
    pub fn clear_context<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        device: Bdf,
    ) -> Option<ContextEntry> {
        let previous = self.context(memory, device);
        if let Some(table) = self.context_table(memory, device.bus()) {
            let address = entry_address(table, device.devfn());
            memory.write_u64(address, 0);
            memory.write_u64(HostPhys(address.0 + 8), 0);
        }
        previous
    }
}
