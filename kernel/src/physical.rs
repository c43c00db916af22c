//! Reading physical memory through the kernel's direct map, bounded by what is mapped.

use kernel_core::acpi::{AcpiError, PhysRead};

/// Physical memory as the kernel sees it through its direct map.
pub struct IdentityMap;

impl PhysRead for IdentityMap {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        let end = phys
            .checked_add(buf.len() as u64)
            .ok_or(AcpiError::Unreadable(phys))?;
        if phys == 0 || end > crate::paging::mapped_end() {
            return Err(AcpiError::Unreadable(phys));
        }
        // SAFETY: [phys, end) lies inside the direct map built by `paging::init`, and firmware
        // tables are plain memory; the copy reads bytes and creates no references into it.
        unsafe {
            core::ptr::copy_nonoverlapping(
                crate::paging::phys_to_virt(phys),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }
}
