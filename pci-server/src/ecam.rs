//! Config space over the ECAM window init delegated (PCIe Base spec 6.0 section 7.2.2): the
//! window is a DeviceMmio capability, which the kernel maps uncached. Each bus's 1 MiB is mapped
//! into the server's space the first time the bus is touched, so the server pays page tables
//! only for buses it scans. Every access is a naturally aligned volatile read or write.

use core::cell::Cell;

use pci_core::{AccessWidth, Bdf, ConfigSpace, EcamRegion};
use sluice_rt::abi::boot::selector::SELF_DOMAIN;
use sluice_rt::abi::syscall::{MemoryRights, Selector};
use sluice_rt::mmio::Window;

/// Bytes of one bus in the ECAM window (32 devices x 8 functions x 4 KiB).
pub const BUS_BYTES: u64 = 1 << 20;
/// Bytes of one function's config space.
const FUNCTION_BYTES: u64 = 4096;

/// Where the server maps bus `start_bus + n` of the window: `ECAM_VIRTUAL + n MiB`.
pub const ECAM_VIRTUAL: u64 = 0x10_0000_0000;

/// A 256-bit set of bus numbers.
#[derive(Clone, Copy, Default)]
struct BusSet([u64; 4]);

impl BusSet {
    fn contains(&self, bus: u8) -> bool {
        self.0
            .get(usize::from(bus / 64))
            .is_some_and(|word| word & (1 << (bus % 64)) != 0)
    }

    fn insert(&mut self, bus: u8) {
        if let Some(word) = self.0.get_mut(usize::from(bus / 64)) {
            *word |= 1 << (bus % 64);
        }
    }
}

/// How a bus's slice of the window gets into the server's address space.
pub trait BusMapper {
    /// Maps `BUS_BYTES` at `offset` of the window capability at `address`; `false` if refused.
    fn map_bus(&self, offset: u64, address: u64) -> bool;
}

/// Maps through the `map` system call.
pub struct KernelMapper {
    /// The ECAM window capability.
    pub window: Selector,
}

impl BusMapper for KernelMapper {
    fn map_bus(&self, offset: u64, address: u64) -> bool {
        let rights = MemoryRights::READ | MemoryRights::WRITE;
        sluice_rt::sys::map(
            self.window,
            Selector(SELF_DOMAIN),
            address,
            offset,
            BUS_BYTES,
            rights,
        )
        .is_ok()
    }
}

/// Config space of one PCI segment through ECAM.
pub struct EcamSpace<M: BusMapper> {
    region: EcamRegion,
    mapper: M,
    mapped: Cell<BusSet>,
    refused: Cell<BusSet>,
}

impl<M: BusMapper> EcamSpace<M> {
    /// Config space for `region`, whose decoded buses the window capability covers from its
    /// first byte on.
    pub fn new(region: EcamRegion, mapper: M) -> Self {
        EcamSpace {
            region,
            mapper,
            mapped: Cell::new(BusSet::default()),
            refused: Cell::new(BusSet::default()),
        }
    }

    /// The mapped window of `bdf`'s function, mapping its bus first if needed.
    fn function_window(&self, bdf: Bdf) -> Option<Window> {
        let bus = bdf.bus();
        if !self.region.contains_bus(bus) {
            return None;
        }
        let index = u64::from(bus - self.region.start_bus());
        let bus_address = ECAM_VIRTUAL.checked_add(index.checked_mul(BUS_BYTES)?)?;
        if !self.mapped.get().contains(bus) {
            if self.refused.get().contains(bus) {
                return None;
            }
            let (cell, mapped) = if self.mapper.map_bus(index * BUS_BYTES, bus_address) {
                (&self.mapped, true)
            } else {
                (&self.refused, false)
            };
            let mut set = cell.get();
            set.insert(bus);
            cell.set(set);
            if !mapped {
                return None;
            }
        }
        let address = bus_address + u64::from(bdf.devfn()) * FUNCTION_BYTES;
        // SAFETY: the bus's whole 1 MiB was mapped (read/write, uncached device memory) at
        // `bus_address` and is never unmapped; no Rust reference covers it.
        Some(unsafe { Window::new(address, FUNCTION_BYTES) })
    }
}

impl<M: BusMapper> ConfigSpace for EcamSpace<M> {
    fn read(&self, bdf: Bdf, offset: u16, width: AccessWidth) -> u32 {
        if !width.fits(offset) {
            return width.value_mask();
        }
        let Some(window) = self.function_window(bdf) else {
            return width.value_mask();
        };
        let offset = u64::from(offset);
        let value = match width {
            AccessWidth::Byte => window.read8(offset).map(u32::from),
            AccessWidth::Word => window.read16(offset).map(u32::from),
            AccessWidth::Dword => window.read32(offset),
        };
        value.unwrap_or(width.value_mask())
    }

    fn write(&mut self, bdf: Bdf, offset: u16, width: AccessWidth, value: u32) {
        if !width.fits(offset) {
            return;
        }
        let Some(window) = self.function_window(bdf) else {
            return;
        };
        let offset = u64::from(offset);
        let _ = match width {
            AccessWidth::Byte => window.write8(offset, (value & 0xff) as u8),
            AccessWidth::Word => window.write16(offset, (value & 0xffff) as u16),
            AccessWidth::Dword => window.write32(offset, value),
        };
    }
}
