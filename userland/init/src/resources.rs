//! What init hands out: RAM carved from the RAM boot capabilities (a bump allocator per
//! capability, so carved ranges never overlap), device MMIO carved from the DeviceMmio boot
//! capabilities, and free selectors of init's own table.

use sluice_abi::boot::{selector, BootCapabilityKind, BootInfo, MAX_BOOT_CAPABILITIES};
use sluice_abi::syscall::{Selector, MAX_SELECTORS};

use crate::error::{Action, InitError};
use crate::kernel::Kernel;
use crate::layout::PAGE;

/// One listed boot capability init carves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    selector: Selector,
    base: u64,
    size: u64,
    /// Bytes carved so far (RAM only; device ranges may be carved more than once).
    used: u64,
}

/// RAM, device memory and selectors still free.
#[derive(Clone, Debug)]
pub struct Resources {
    ram: heapless::Vec<Region, MAX_BOOT_CAPABILITIES>,
    devices: heapless::Vec<Region, MAX_BOOT_CAPABILITIES>,
    next_selector: u32,
}

fn regions(
    boot: &BootInfo,
    kind: BootCapabilityKind,
) -> heapless::Vec<Region, MAX_BOOT_CAPABILITIES> {
    boot.listed()
        .iter()
        .filter(|c| c.kind == kind as u32)
        .map(|c| Region {
            selector: Selector(c.selector),
            base: c.base,
            size: c.size - c.size % PAGE,
            used: 0,
        })
        .collect()
}

impl Resources {
    /// The free resources listed in `boot`.
    pub fn from_boot(boot: &BootInfo) -> Resources {
        Resources {
            ram: regions(boot, BootCapabilityKind::Ram),
            devices: regions(boot, BootCapabilityKind::DeviceMmio),
            next_selector: selector::FIRST_FREE,
        }
    }

    /// Total bytes of the RAM boot capabilities.
    pub fn ram_total(&self) -> u64 {
        self.ram
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }

    /// Bytes of RAM carved so far.
    pub fn ram_used(&self) -> u64 {
        self.ram
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.used))
    }

    /// A free selector of init's table.
    pub fn selector(&mut self) -> Result<Selector, InitError> {
        if self.next_selector >= MAX_SELECTORS {
            return Err(InitError::OutOfSelectors);
        }
        let selector = Selector(self.next_selector);
        self.next_selector += 1;
        Ok(selector)
    }

    /// Carves `size` bytes (a page multiple) of RAM into a new memory object at a fresh
    /// selector. The allocator advances only when the kernel accepted the carve.
    pub fn carve_ram<K: Kernel>(
        &mut self,
        kernel: &mut K,
        program: &'static str,
        size: u64,
        action: Action,
    ) -> Result<Selector, InitError> {
        let index = self
            .ram
            .iter()
            .position(|r| r.size.saturating_sub(r.used) >= size)
            .ok_or(InitError::OutOfRam {
                program,
                bytes: size,
            })?;
        let destination = self.selector()?;
        let region = self.ram.get_mut(index).ok_or(InitError::OutOfRam {
            program,
            bytes: size,
        })?;
        kernel
            .create_memory(region.selector, destination, region.used, size)
            .map_err(|status| InitError::Kernel {
                program,
                action,
                status,
            })?;
        region.used += size;
        Ok(destination)
    }

    /// Carves the device range `address .. address + size` (page-aligned) out of the
    /// DeviceMmio boot capability that covers it.
    pub fn carve_device<K: Kernel>(
        &mut self,
        kernel: &mut K,
        program: &'static str,
        address: u64,
        size: u64,
    ) -> Result<Selector, InitError> {
        let not_covered = InitError::DeviceNotCovered { program, address };
        let end = address.checked_add(size).ok_or(not_covered)?;
        if !address.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) || size == 0 {
            return Err(not_covered);
        }
        let region = self
            .devices
            .iter()
            .find(|r| r.base <= address && r.base.checked_add(r.size).is_some_and(|top| end <= top))
            .copied()
            .ok_or(not_covered)?;
        let destination = self.selector()?;
        kernel
            .create_memory(region.selector, destination, address - region.base, size)
            .map_err(|status| InitError::Kernel {
                program,
                action: Action::CarveDevice { address },
                status,
            })?;
        Ok(destination)
    }
}
