//! MSI-X tables and Pending Bit Arrays mapped into the pci-server: both live in BAR memory
//! (PCIe Base spec 6.0 section 7.7.2), which the server reaches through the device windows
//! init delegated. The pages holding a function's table (and its PBA) are mapped (device
//! memory: uncached) while the function is owned, in a slot of their own at
//! `MSIX_VIRTUAL + n * SLOT_BYTES` (the table at the slot's start, the PBA at
//! [`PBA_SLOT_OFFSET`]); they are unmapped when the function is released or a claim fails, and
//! the slot is reused. [`TableSlots`] is the host-tested bookkeeping; [`KernelTables`] maps
//! with the `map` system call and accesses entries with volatile 32-bit reads and writes.

use pci_api::{Bdf, PciError};
use pci_core::msi::{MsixEntryRegister, MsixTable};
use pci_core::msix::{MsixPbaLocation, MsixTableLocation};
use pci_core::registers::msix::ENTRY_SIZE;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::mmio::Window;

use crate::bars::DeviceWindows;

/// Where the first table slot is mapped (clear of ECAM at 0x10_0000_0000 and the system
/// description at 0x20_0000_0000).
pub const MSIX_VIRTUAL: u64 = 0x30_0000_0000;
/// Virtual bytes per slot: the largest table (2048 entries, 32 KiB) plus a page of offset,
/// then the PBA.
pub const SLOT_BYTES: u64 = 64 << 10;
/// Where in a slot the PBA's pages are mapped (the largest PBA, 256 bytes, spans two pages).
pub const PBA_SLOT_OFFSET: u64 = 48 << 10;
/// Most functions whose tables are mapped at once.
pub const MAX_TABLES: usize = 32;
/// The page size.
const PAGE: u64 = 4096;

/// How the server reaches MSI-X tables: map one, read and write its entries, read its PBA,
/// unmap it.
pub trait TableAccess: MsixTable {
    /// Makes `location`'s table (and `pba`, when located) reachable; a no-op when they are.
    /// Errors: `MsixTableUnavailable` (no window covers it, no slot left, the kernel refused).
    fn map_table(
        &mut self,
        location: &MsixTableLocation,
        pba: Option<&MsixPbaLocation>,
        windows: &DeviceWindows,
    ) -> Result<(), PciError>;
    /// Unmaps and forgets `bdf`'s table and PBA (nothing happens when none is mapped).
    fn unmap_table(&mut self, bdf: Bdf);
    /// DWORD `dword` of `bdf`'s PBA (bit n = entry 32 x dword + n pending), if it is mapped.
    fn read_pba(&self, bdf: Bdf, dword: u32) -> Option<u32>;
}

/// Pages mapped for one structure: `size` bytes at `offset` of `window`, at `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// The device window capability.
    pub window: Selector,
    /// Offset of the first page in the window.
    pub offset: u64,
    /// Bytes to map (whole pages).
    pub size: u64,
    /// Virtual address of the first page.
    pub address: u64,
}

/// What mapping a table (and its PBA) takes, in slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The slot.
    pub slot: usize,
    /// The table's pages.
    pub table: PageRun,
    /// Virtual address of entry 0.
    pub entry0: u64,
    /// The PBA's pages, with the virtual address of its first byte and its length.
    pub pba: Option<(PageRun, u64, u64)>,
}

/// A mapped table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MappedTable {
    location: MsixTableLocation,
    placement: Placement,
}

/// The mapped tables and the slots they use.
#[derive(Clone, Debug, Default)]
pub struct TableSlots {
    tables: heapless::Vec<MappedTable, MAX_TABLES>,
}

/// The pages of `bytes` at physical `address`, placed at virtual `virtual_page` when a window
/// covers them and they fit in `room` bytes; with the virtual address of `address`.
fn page_run(
    address: u64,
    bytes: u64,
    virtual_page: u64,
    room: u64,
    windows: &DeviceWindows,
) -> Result<(PageRun, u64), PciError> {
    let first = address - address % PAGE;
    let end = address
        .checked_add(bytes)
        .and_then(|end| end.checked_next_multiple_of(PAGE))
        .ok_or(PciError::MsixTableUnavailable)?;
    let size = end - first;
    if size > room {
        return Err(PciError::MsixTableUnavailable);
    }
    let (window, offset) = windows
        .covering(first, end)
        .ok_or(PciError::MsixTableUnavailable)?;
    let run = PageRun {
        window,
        offset,
        size,
        address: virtual_page,
    };
    Ok((run, virtual_page + (address - first)))
}

impl TableSlots {
    /// Whether `location`'s table is mapped already (same function, same place).
    pub fn is_mapped(&self, location: &MsixTableLocation) -> bool {
        self.tables.iter().any(|table| table.location == *location)
    }

    /// Plans the mapping of `location`'s table (and `pba`) into the lowest free slot.
    pub fn place(
        &self,
        location: &MsixTableLocation,
        pba: Option<&MsixPbaLocation>,
        windows: &DeviceWindows,
    ) -> Result<Placement, PciError> {
        let slot = (0..MAX_TABLES)
            .find(|slot| {
                self.tables
                    .iter()
                    .all(|table| table.placement.slot != *slot)
            })
            .ok_or(PciError::MsixTableUnavailable)?;
        let base = MSIX_VIRTUAL + slot as u64 * SLOT_BYTES;
        let (table, entry0) = page_run(
            location.address.0,
            location.bytes,
            base,
            PBA_SLOT_OFFSET,
            windows,
        )?;
        let pba = match pba {
            Some(pba) => {
                let (run, first) = page_run(
                    pba.address.0,
                    pba.bytes,
                    base + PBA_SLOT_OFFSET,
                    SLOT_BYTES - PBA_SLOT_OFFSET,
                    windows,
                )?;
                Some((run, first, pba.bytes))
            }
            None => None,
        };
        Ok(Placement {
            slot,
            table,
            entry0,
            pba,
        })
    }

    /// Records `location` as mapped per `placement` (from [`Self::place`]; the function must
    /// have no other mapping). `false` when no slot is left or it has one.
    pub fn record(&mut self, location: &MsixTableLocation, placement: &Placement) -> bool {
        let taken = self.tables.iter().any(|table| {
            table.location.bdf == location.bdf || table.placement.slot == placement.slot
        });
        !taken
            && self
                .tables
                .push(MappedTable {
                    location: *location,
                    placement: *placement,
                })
                .is_ok()
    }

    /// Forgets `bdf`'s mapping and returns what was mapped (to unmap it).
    pub fn forget(&mut self, bdf: Bdf) -> Option<Placement> {
        let position = self
            .tables
            .iter()
            .position(|table| table.location.bdf == bdf)?;
        Some(self.tables.swap_remove(position).placement)
    }

    /// The mapped table of `bdf`, if any.
    #[cfg(test)]
    pub fn mapped(&self, bdf: Bdf) -> Option<MsixTableLocation> {
        self.tables
            .iter()
            .find(|table| table.location.bdf == bdf)
            .map(|table| table.location)
    }

    /// The virtual address of `register` of entry `entry` of `bdf`'s mapped table.
    pub fn register_address(
        &self,
        bdf: Bdf,
        entry: u16,
        register: MsixEntryRegister,
    ) -> Option<u64> {
        let table = self.tables.iter().find(|table| table.location.bdf == bdf)?;
        if entry >= table.location.entries {
            return None;
        }
        Some(table.placement.entry0 + u64::from(entry) * u64::from(ENTRY_SIZE) + register as u64)
    }

    /// The virtual address of DWORD `dword` of `bdf`'s mapped PBA.
    pub fn pba_address(&self, bdf: Bdf, dword: u32) -> Option<u64> {
        let table = self.tables.iter().find(|table| table.location.bdf == bdf)?;
        let (_, first, bytes) = table.placement.pba?;
        let offset = u64::from(dword) * 4;
        (offset < bytes).then_some(first + offset)
    }
}

/// Tables mapped with the kernel's `map` call into the server's own space.
#[derive(Clone, Debug, Default)]
pub struct KernelTables {
    slots: TableSlots,
}

/// Maps `run` read/write into the server's own space.
fn map_run(run: &PageRun, bdf: Bdf) -> Result<(), PciError> {
    let rights =
        sluice_rt::abi::syscall::MemoryRights::READ | sluice_rt::abi::syscall::MemoryRights::WRITE;
    sluice_rt::sys::map(
        run.window,
        Selector(sluice_rt::abi::boot::selector::SELF_DOMAIN),
        run.address,
        run.offset,
        run.size,
        rights,
    )
    .map_err(|status| {
        sluice_rt::log!("pci-server: {bdf}: mapping its MSI-X table/PBA refused: {status:?}");
        PciError::MsixTableUnavailable
    })
}

/// Unmaps what `placement` mapped.
fn unmap_placement(placement: &Placement) {
    let own = Selector(sluice_rt::abi::boot::selector::SELF_DOMAIN);
    let _ = sluice_rt::sys::unmap(own, placement.table.address, placement.table.size);
    if let Some((run, _, _)) = placement.pba {
        let _ = sluice_rt::sys::unmap(own, run.address, run.size);
    }
}

impl KernelTables {
    /// A one-register window at `address` from the slot bookkeeping.
    fn window(address: Option<u64>) -> Option<Window> {
        let address = address?;
        // SAFETY: `TableSlots` answers only for a table (or PBA) `map_table` mapped (read/write,
        // device memory) and not yet unmapped (`unmap_table` forgets before it unmaps); the
        // address is inside it (entry < entries, dword within the PBA) and 4-byte aligned
        // (tables are 8-byte aligned, registers at 0/4/8/12, PBA QWORD aligned); no Rust
        // reference covers device memory.
        Some(unsafe { Window::new(address, 4) })
    }
}

impl MsixTable for KernelTables {
    fn read_entry(&self, bdf: Bdf, entry: u16, register: MsixEntryRegister) -> u32 {
        Self::window(self.slots.register_address(bdf, entry, register))
            .and_then(|window| window.read32(0))
            .unwrap_or(u32::MAX)
    }

    fn write_entry(&mut self, bdf: Bdf, entry: u16, register: MsixEntryRegister, value: u32) {
        if let Some(window) = Self::window(self.slots.register_address(bdf, entry, register)) {
            let _ = window.write32(0, value);
        }
    }
}

impl TableAccess for KernelTables {
    fn map_table(
        &mut self,
        location: &MsixTableLocation,
        pba: Option<&MsixPbaLocation>,
        windows: &DeviceWindows,
    ) -> Result<(), PciError> {
        if self.slots.is_mapped(location) {
            return Ok(());
        }
        // A mapping of the same function elsewhere (its BAR moved) goes first.
        self.unmap_table(location.bdf);
        let placement = self.slots.place(location, pba, windows)?;
        map_run(&placement.table, location.bdf)?;
        if let Some((run, _, _)) = &placement.pba {
            if let Err(error) = map_run(run, location.bdf) {
                let own = Selector(sluice_rt::abi::boot::selector::SELF_DOMAIN);
                let _ = sluice_rt::sys::unmap(own, placement.table.address, placement.table.size);
                return Err(error);
            }
        }
        if !self.slots.record(location, &placement) {
            unmap_placement(&placement);
            return Err(PciError::MsixTableUnavailable);
        }
        Ok(())
    }

    fn unmap_table(&mut self, bdf: Bdf) {
        if let Some(placement) = self.slots.forget(bdf) {
            unmap_placement(&placement);
        }
    }

    fn read_pba(&self, bdf: Bdf, dword: u32) -> Option<u32> {
        Self::window(self.slots.pba_address(bdf, dword)).and_then(|window| window.read32(0))
    }
}
