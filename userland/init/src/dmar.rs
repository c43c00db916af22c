//! The register page of every DRHD unit the ACPI DMAR lists (VT-d spec rev 4.1, 8.3), so init
//! can hand the iommu-server one page per unit. The kernel reports only the first unit's base
//! (`BootInfo::dmar_unit`) and lists the whole table as the firmware capability `acpi-dmar`;
//! init maps that read-only for a moment, reads the DRHD bases in table order
//! (`kernel_core::acpi::dmar_unit_bases`, the parser the kernel uses) and unmaps it.
//!
//! Unit n of the list is the iommu-server's unit n. A page is 0 (not handed out, the server logs
//! the unit as not brought up) when no DeviceMmio boot capability covers it, it lies in the ECAM
//! window, or it repeats an earlier unit's page. Whenever the table cannot be read, or its first unit is not the one
//! the kernel reported, only the kernel's unit is handed out, as before.

use sluice_abi::boot::selector::SELF_DOMAIN;
use sluice_abi::boot::{BootCapabilityKind, BootInfo};
use sluice_abi::syscall::{MemoryRights, Selector};

use crate::kernel::Kernel;
use crate::layout::{DMAR_WINDOW, PAGE};

/// Most DRHD units handed out (the iommu-server's `MAX_UNITS`).
pub const MAX_DRHD_UNITS: usize = 8;

/// The register page of each unit in DMAR order; 0 = not handed out.
pub type DrhdPages = heapless::Vec<u64, MAX_DRHD_UNITS>;

fn page_of(address: u64) -> u64 {
    address - address % PAGE
}

/// Whether a DeviceMmio boot capability covers the page at `page`.
fn in_device_memory(boot: &BootInfo, page: u64) -> bool {
    boot.listed().iter().any(|capability| {
        capability.kind == BootCapabilityKind::DeviceMmio as u32
            && capability.base <= page
            && page
                .checked_add(PAGE)
                .is_some_and(|end| end <= capability.base.saturating_add(capability.size))
    })
}

/// The DRHD bases of the table behind the `acpi-dmar` capability, if it can be read.
fn read_bases<K: Kernel>(kernel: &mut K, boot: &BootInfo) -> Option<heapless::Vec<u64, 8>> {
    let table = boot.listed().iter().find(|capability| {
        capability.kind == BootCapabilityKind::Firmware as u32 && capability.name() == "acpi-dmar"
    })?;
    let offset = boot.dmar_table.checked_sub(table.base)?;
    let end = offset.checked_add(boot.dmar_length)?;
    if boot.dmar_length == 0 || end > table.size {
        return None;
    }
    let own = Selector(SELF_DOMAIN);
    kernel
        .map(
            Selector(table.selector),
            own,
            DMAR_WINDOW,
            0,
            table.size,
            MemoryRights::READ,
        )
        .ok()?;
    let bases = kernel
        .read_own(DMAR_WINDOW + offset, boot.dmar_length)
        .ok()
        .map(kernel_core::acpi::dmar_unit_bases);
    if kernel.unmap(own, DMAR_WINDOW, table.size).is_err() {
        sluice_rt::log!("init: unmapping the DMAR table failed");
    }
    bases
}

/// Every unit's register page (see the module documentation); empty without VT-d.
pub fn drhd_pages<K: Kernel>(kernel: &mut K, boot: &BootInfo) -> DrhdPages {
    let mut pages = DrhdPages::new();
    if boot.dmar_unit == 0 {
        return pages;
    }
    let bases = read_bases(kernel, boot)
        .filter(|bases| bases.first().copied() == Some(boot.dmar_unit))
        .unwrap_or_else(|| {
            let mut only = heapless::Vec::new();
            let _ = only.push(boot.dmar_unit);
            only
        });
    for (index, base) in bases.iter().enumerate() {
        let page = page_of(*base);
        let in_ecam = crate::programs::ecam_window(boot)
            .is_some_and(|(start, size)| page >= start && page - start < size);
        let usable =
            index == 0 || (in_device_memory(boot, page) && !in_ecam && !pages.contains(&page));
        if !usable {
            sluice_rt::log!(
                "init: DRHD unit {index} at {base:#x} is not in device memory (or lies in the ECAM \
                 window, or repeats a unit): not handed to the iommu-server"
            );
        }
        if pages.push(if usable { page } else { 0 }).is_err() {
            break;
        }
    }
    pages
}
