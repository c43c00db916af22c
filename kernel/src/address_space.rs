//! User address spaces (Intel SDM Vol. 3A, 4.5): a PML4 per protection domain that shares the
//! kernel's upper half (direct map) and its supervisor-only first GiB, with 4 KiB user pages from
//! [`USER_START`] up to the end of the lower half.

use crate::frames;
use crate::paging::{
    self, phys_to_virt, ADDRESS_MASK, NO_EXECUTE, PAGE_4K, PRESENT, USER, WRITABLE,
};

/// The lowest user address (the first GiB belongs to the kernel).
pub const USER_START: u64 = 0x4000_0000;
/// One past the highest user address (the end of the canonical lower half).
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Why a mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Out of physical frames for page tables.
    OutOfMemory,
    /// The address is outside user space or not page-aligned.
    BadAddress,
    /// Something is already mapped there.
    AlreadyMapped,
}

/// Page permissions and caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub writable: bool,
    pub executable: bool,
    /// Device memory: mapped uncached (PCD|PWT).
    pub uncached: bool,
}

/// One address space, owned by a protection domain.
pub struct AddressSpace {
    pml4: u64,
    /// Frames this space's page tables use (the PML4 and low PDPT included).
    table_frames: u64,
}

fn table(phys: u64) -> *mut u64 {
    phys_to_virt(phys) as *mut u64
}

impl AddressSpace {
    /// A fresh space with only the kernel's shared parts.
    pub fn new() -> Result<Self, MapError> {
        let pml4 = frames::allocate().ok_or(MapError::OutOfMemory)?;
        let low_pdpt = match frames::allocate() {
            Some(frame) => frame,
            None => {
                frames::free(pml4);
                return Err(MapError::OutOfMemory);
            }
        };
        // SAFETY: both frames are fresh and zeroed; the kernel PML4 is only read.
        unsafe {
            let kernel = table(paging::kernel_pml4());
            for slot in 256..512 {
                *table(pml4).add(slot) = *kernel.add(slot);
            }
            *table(low_pdpt) = paging::low_directory_entry();
            *table(pml4) = low_pdpt | PRESENT | WRITABLE | USER;
        }
        Ok(AddressSpace {
            pml4,
            table_frames: 2,
        })
    }

    /// Frames its page tables use: kernel memory the domain's quota pays for.
    pub fn table_frames(&self) -> u64 {
        self.table_frames
    }

    /// The physical address to load into CR3.
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// Walks to the page-table entry for `address`, creating tables on the way.
    fn entry(&mut self, address: u64) -> Result<*mut u64, MapError> {
        let mut current = self.pml4;
        for shift in [39u32, 30, 21] {
            let index = ((address >> shift) & 511) as usize;
            // SAFETY: `current` is a page-table frame of this space (the PML4 or one created
            // below), reachable through the direct map.
            let slot = unsafe { table(current).add(index) };
            // SAFETY: reading/writing one entry of a table this space owns.
            let value = unsafe { *slot };
            if value & PRESENT == 0 {
                let frame = frames::allocate().ok_or(MapError::OutOfMemory)?;
                // SAFETY: as above; the new table is zeroed.
                unsafe { *slot = frame | PRESENT | WRITABLE | USER };
                self.table_frames += 1;
                current = frame;
            } else if value & paging::LARGE != 0 || value & USER == 0 {
                // A kernel or large mapping sits here: user pages may not go below it.
                return Err(MapError::BadAddress);
            } else {
                current = value & ADDRESS_MASK;
            }
        }
        // SAFETY: `current` is now the page table covering `address`.
        Ok(unsafe { table(current).add(((address >> 12) & 511) as usize) })
    }

    /// Maps the 4 KiB frame `frame` at `address` with `access`.
    pub fn map(&mut self, address: u64, frame: u64, access: Access) -> Result<(), MapError> {
        if !address.is_multiple_of(PAGE_4K) || !(USER_START..USER_END).contains(&address) {
            return Err(MapError::BadAddress);
        }
        let entry = self.entry(address)?;
        // SAFETY: `entry` points into a page table this space owns.
        unsafe {
            if *entry & PRESENT != 0 {
                return Err(MapError::AlreadyMapped);
            }
            let mut flags = PRESENT | USER;
            if access.writable {
                flags |= WRITABLE;
            }
            if !access.executable {
                flags |= NO_EXECUTE;
            }
            if access.uncached {
                flags |= paging::CACHE_DISABLE | paging::WRITE_THROUGH;
            }
            *entry = frame | flags;
        }
        Ok(())
    }

    /// Removes the page at `address` (if mapped) and returns its frame. The caller flushes
    /// the TLB (reloading CR3 everywhere the space is loaded) before the frame is reused.
    pub fn unmap(&mut self, address: u64) -> Option<u64> {
        if !(USER_START..USER_END).contains(&address) {
            return None;
        }
        let mut current = self.pml4;
        for shift in [39u32, 30, 21] {
            // SAFETY: reading one entry of a table this space owns.
            let value = unsafe { *table(current).add(((address >> shift) & 511) as usize) };
            if value & PRESENT == 0 || value & USER == 0 || value & paging::LARGE != 0 {
                return None;
            }
            current = value & ADDRESS_MASK;
        }
        // SAFETY: `current` is the page table covering `address`; clearing one entry.
        unsafe {
            let entry = table(current).add(((address >> 12) & 511) as usize);
            let old = *entry;
            *entry = 0;
            (old & PRESENT != 0).then_some(old & ADDRESS_MASK)
        }
    }

    /// Frees the space's page tables (not the pages they mapped: those belong to memory
    /// objects or to whoever allocated them). The space must not be loaded on any CPU.
    pub fn destroy(self) {
        fn free_level(table_phys: u64, level: u32) {
            for index in 0..512 {
                // SAFETY: reading an entry of a table owned by the space being destroyed.
                let value = unsafe { *table(table_phys).add(index) };
                if value & PRESENT != 0
                    && value & USER != 0
                    && value & paging::LARGE == 0
                    && level > 1
                {
                    free_level(value & ADDRESS_MASK, level - 1);
                    frames::free(value & ADDRESS_MASK);
                }
            }
        }
        // Slot 0 holds the space's own low PDPT whose entry 0 is the shared kernel directory
        // (supervisor, so skipped by the USER test); the upper half is the kernel's.
        for index in 0..256 {
            // SAFETY: as above.
            let value = unsafe { *table(self.pml4).add(index) };
            if value & PRESENT != 0 && value & USER != 0 {
                free_level(value & ADDRESS_MASK, 3);
                frames::free(value & ADDRESS_MASK);
            }
        }
        frames::free(self.pml4);
    }

    /// Translates a user address to its frame (and checks the access it needs).
    pub fn translate(&self, address: u64, write: bool) -> Option<u64> {
        if !(USER_START..USER_END).contains(&address) {
            return None;
        }
        let mut current = self.pml4;
        for shift in [39u32, 30, 21, 12] {
            let index = ((address >> shift) & 511) as usize;
            // SAFETY: reading one entry of a table this space owns.
            let value = unsafe { *table(current).add(index) };
            if value & PRESENT == 0 || value & USER == 0 || (write && value & WRITABLE == 0) {
                return None;
            }
            current = value & ADDRESS_MASK;
        }
        Some(current | (address & (PAGE_4K - 1)))
    }

    /// Copies bytes out of user memory into `buffer`, page by page, checking every page.
    pub fn read(&self, address: u64, buffer: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buffer.len() {
            let at = address + done as u64;
            let Some(phys) = self.translate(at, false) else {
                return false;
            };
            let in_page = (PAGE_4K - (at % PAGE_4K)) as usize;
            let take = in_page.min(buffer.len() - done);
            // SAFETY: `phys..phys+take` lies in one user page of this space, in the direct map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    phys_to_virt(phys),
                    buffer[done..].as_mut_ptr(),
                    take,
                )
            };
            done += take;
        }
        true
    }

    /// Copies `bytes` into user pages whatever their write permission (loading read-only
    /// program segments).
    pub fn write_any(&self, address: u64, bytes: &[u8]) -> bool {
        self.write_checked(address, bytes, false)
    }

    fn write_checked(&self, address: u64, bytes: &[u8], require_writable: bool) -> bool {
        let mut done = 0usize;
        while done < bytes.len() {
            let at = address + done as u64;
            let Some(phys) = self.translate(at, require_writable) else {
                return false;
            };
            let in_page = (PAGE_4K - (at % PAGE_4K)) as usize;
            let take = in_page.min(bytes.len() - done);
            // SAFETY: as in `read`, and the page is mapped writable for the user.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), phys_to_virt(phys), take)
            };
            done += take;
        }
        true
    }
}
