//! MSI-X tables mapped into the pci-server: a table lives in BAR memory (PCIe Base spec 6.0
//! section 7.7.2), which the server reaches through the device windows init delegated. The
//! pages holding a function's table are mapped (device memory: uncached) the first time an
//! owner programs one of its entries, each table in a slot of its own at
//! `MSIX_VIRTUAL + n * SLOT_BYTES`, and stay mapped (BAR addresses never change under an
//! owner: the filter keeps BARs virtual). [`TableSlots`] is the host-tested bookkeeping;
//! [`KernelTables`] maps with the `map` system call and accesses entries with volatile 32-bit
//! reads and writes.

use pci_api::{Bdf, PciError};
use pci_core::msi::{MsixEntryRegister, MsixTable};
use pci_core::msix::MsixTableLocation;
use pci_core::registers::msix::ENTRY_SIZE;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::mmio::Window;

use crate::bars::DeviceWindows;

/// Where the first table slot is mapped (clear of ECAM at 0x10_0000_0000 and the system
/// description at 0x20_0000_0000).
pub const MSIX_VIRTUAL: u64 = 0x30_0000_0000;
/// Virtual bytes per slot: the largest table (2048 entries, 32 KiB) plus a page of offset.
pub const SLOT_BYTES: u64 = 64 << 10;
/// Most functions whose tables are mapped.
pub const MAX_TABLES: usize = 32;
/// The page size.
const PAGE: u64 = 4096;

/// How the server reaches MSI-X tables: map one, then read and write its entries.
pub trait TableAccess: MsixTable {
    /// Makes `location`'s table reachable (a no-op when it already is). Errors:
    /// `MsixTableUnavailable` (no window covers it, no slot left, the kernel refused).
    fn map_table(
        &mut self,
        location: &MsixTableLocation,
        windows: &DeviceWindows,
    ) -> Result<(), PciError>;
}

/// A mapped table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MappedTable {
    location: MsixTableLocation,
    /// Virtual address of entry 0.
    entry0: u64,
}

/// What mapping a table takes: `size` bytes at `offset` of `window`, at `address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The device window capability.
    pub window: Selector,
    /// Offset of the table's first page in the window.
    pub offset: u64,
    /// Bytes to map (whole pages).
    pub size: u64,
    /// Virtual address of the first page.
    pub address: u64,
    /// Virtual address of entry 0.
    pub entry0: u64,
}

/// The mapped tables and the slots they use (a slot is never reused: its pages stay mapped).
#[derive(Clone, Debug, Default)]
pub struct TableSlots {
    tables: heapless::Vec<MappedTable, MAX_TABLES>,
    next_slot: usize,
}

impl TableSlots {
    /// Whether `location`'s table is mapped already (same function, same place).
    pub fn is_mapped(&self, location: &MsixTableLocation) -> bool {
        self.tables.iter().any(|table| table.location == *location)
    }

    /// Plans the mapping of `location`'s table into the next free slot.
    pub fn place(
        &self,
        location: &MsixTableLocation,
        windows: &DeviceWindows,
    ) -> Result<Placement, PciError> {
        let slot = self.next_slot;
        if slot >= MAX_TABLES {
            return Err(PciError::MsixTableUnavailable);
        }
        let address = location.address.0;
        let first = address - address % PAGE;
        let end = address
            .checked_add(location.bytes)
            .and_then(|end| end.checked_next_multiple_of(PAGE))
            .ok_or(PciError::MsixTableUnavailable)?;
        let size = end - first;
        if size > SLOT_BYTES {
            return Err(PciError::MsixTableUnavailable);
        }
        let (window, offset) = windows
            .covering(first, end)
            .ok_or(PciError::MsixTableUnavailable)?;
        let virtual_page = MSIX_VIRTUAL + slot as u64 * SLOT_BYTES;
        Ok(Placement {
            window,
            offset,
            size,
            address: virtual_page,
            entry0: virtual_page + (address - first),
        })
    }

    /// Records `location` as mapped per `placement` (the slot [`Self::place`] chose; an older
    /// mapping of the same function is replaced). `false` when no slot is left.
    pub fn record(&mut self, location: &MsixTableLocation, placement: &Placement) -> bool {
        if self.next_slot >= MAX_TABLES {
            return false;
        }
        let table = MappedTable {
            location: *location,
            entry0: placement.entry0,
        };
        let recorded = match self
            .tables
            .iter_mut()
            .find(|mapped| mapped.location.bdf == location.bdf)
        {
            Some(mapped) => {
                *mapped = table;
                true
            }
            None => self.tables.push(table).is_ok(),
        };
        if recorded {
            self.next_slot += 1;
        }
        recorded
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
        Some(table.entry0 + u64::from(entry) * u64::from(ENTRY_SIZE) + register as u64)
    }
}

/// Tables mapped with the kernel's `map` call into the server's own space.
#[derive(Clone, Debug, Default)]
pub struct KernelTables {
    slots: TableSlots,
}

impl KernelTables {
    /// A one-register window, if `bdf`'s table is mapped and has `entry`.
    fn register(&self, bdf: Bdf, entry: u16, register: MsixEntryRegister) -> Option<Window> {
        let address = self.slots.register_address(bdf, entry, register)?;
        // SAFETY: `register_address` only answers for a table `map_table` mapped (read/write,
        // device memory) and never unmaps; the address is inside it (entry < entries) and
        // 4-byte aligned (tables are 8-byte aligned, registers at 0/4/8/12); no Rust reference
        // covers device memory.
        Some(unsafe { Window::new(address, 4) })
    }
}

impl MsixTable for KernelTables {
    fn read_entry(&self, bdf: Bdf, entry: u16, register: MsixEntryRegister) -> u32 {
        self.register(bdf, entry, register)
            .and_then(|window| window.read32(0))
            .unwrap_or(u32::MAX)
    }

    fn write_entry(&mut self, bdf: Bdf, entry: u16, register: MsixEntryRegister, value: u32) {
        if let Some(window) = self.register(bdf, entry, register) {
            let _ = window.write32(0, value);
        }
    }
}

impl TableAccess for KernelTables {
    fn map_table(
        &mut self,
        location: &MsixTableLocation,
        windows: &DeviceWindows,
    ) -> Result<(), PciError> {
        if self.slots.is_mapped(location) {
            return Ok(());
        }
        let placement = self.slots.place(location, windows)?;
        let rights = sluice_rt::abi::syscall::MemoryRights::READ
            | sluice_rt::abi::syscall::MemoryRights::WRITE;
        sluice_rt::sys::map(
            placement.window,
            Selector(sluice_rt::abi::boot::selector::SELF_DOMAIN),
            placement.address,
            placement.offset,
            placement.size,
            rights,
        )
        .map_err(|status| {
            sluice_rt::log!(
                "pci-server: {}: mapping its MSI-X table refused: {status:?}",
                location.bdf
            );
            PciError::MsixTableUnavailable
        })?;
        if !self.slots.record(location, &placement) {
            return Err(PciError::MsixTableUnavailable);
        }
        Ok(())
    }
}
