//! Volatile access to memory a program mapped into its own address space: device registers
//! (mapped uncached by the kernel), DMA buffers and table frames shared with hardware.
//!
//! A [`Window`] is created once, unsafely, for a range the program mapped; after that every
//! access is checked (naturally aligned, inside the window) and volatile, so the compiler never
//! merges, reorders or elides an access the hardware must see. A refused access returns `None`
//! (reads) or `false` (writes) instead of touching memory.

/// A mapped range of the program's own address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    base: u64,
    size: u64,
}

impl Window {
    /// A window over `base .. base + size`.
    ///
    /// # Safety
    /// The whole range must stay mapped (readable, and writable if any write is made) for as
    /// long as the window or a copy of it is used, and no Rust reference may cover it.
    pub const unsafe fn new(base: u64, size: u64) -> Window {
        Window { base, size }
    }

    /// First address.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The address of `width` bytes at `offset`, if aligned and inside the window.
    fn address(&self, offset: u64, width: u64) -> Option<u64> {
        let end = offset.checked_add(width)?;
        if end > self.size || !offset.is_multiple_of(width) {
            return None;
        }
        self.base.checked_add(offset)
    }

    /// Reads one byte.
    pub fn read8(&self, offset: u64) -> Option<u8> {
        let address = self.address(offset, 1)?;
        // SAFETY: inside the window, which `new`'s caller guarantees is mapped and unreferenced.
        Some(unsafe { core::ptr::read_volatile(address as *const u8) })
    }

    /// Reads two bytes.
    pub fn read16(&self, offset: u64) -> Option<u16> {
        let address = self.address(offset, 2)?;
        // SAFETY: as in `read8`; the address is 2-byte aligned.
        Some(unsafe { core::ptr::read_volatile(address as *const u16) })
    }

    /// Reads four bytes.
    pub fn read32(&self, offset: u64) -> Option<u32> {
        let address = self.address(offset, 4)?;
        // SAFETY: as in `read8`; the address is 4-byte aligned.
        Some(unsafe { core::ptr::read_volatile(address as *const u32) })
    }

    /// Reads eight bytes.
    pub fn read64(&self, offset: u64) -> Option<u64> {
        let address = self.address(offset, 8)?;
        // SAFETY: as in `read8`; the address is 8-byte aligned.
        Some(unsafe { core::ptr::read_volatile(address as *const u64) })
    }

    /// Writes one byte.
    pub fn write8(&self, offset: u64, value: u8) -> bool {
        let Some(address) = self.address(offset, 1) else {
            return false;
        };
        // SAFETY: inside the window, which `new`'s caller guarantees is mapped writable.
        unsafe { core::ptr::write_volatile(address as *mut u8, value) };
        true
    }

    /// Writes two bytes.
    pub fn write16(&self, offset: u64, value: u16) -> bool {
        let Some(address) = self.address(offset, 2) else {
            return false;
        };
        // SAFETY: as in `write8`; the address is 2-byte aligned.
        unsafe { core::ptr::write_volatile(address as *mut u16, value) };
        true
    }

    /// Writes four bytes.
    pub fn write32(&self, offset: u64, value: u32) -> bool {
        let Some(address) = self.address(offset, 4) else {
            return false;
        };
        // SAFETY: as in `write8`; the address is 4-byte aligned.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) };
        true
    }

    /// Writes eight bytes.
    pub fn write64(&self, offset: u64, value: u64) -> bool {
        let Some(address) = self.address(offset, 8) else {
            return false;
        };
        // SAFETY: as in `write8`; the address is 8-byte aligned.
        unsafe { core::ptr::write_volatile(address as *mut u64, value) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_checked_and_volatile_on_real_memory() {
        let mut backing = [0u64; 4];
        // SAFETY: the array lives for the whole test and no reference to it is used meanwhile.
        let window = unsafe { Window::new(backing.as_mut_ptr() as u64, 32) };
        assert!(window.write32(4, 0xdead_beef));
        assert_eq!(window.read32(4), Some(0xdead_beef));
        assert!(window.write64(24, 7));
        assert_eq!(window.read64(24), Some(7));
        assert!(window.write8(1, 0x12));
        assert_eq!(window.read16(0), Some(0x1200));
        assert_eq!(window.read32(2), None, "misaligned");
        assert_eq!(window.read64(32), None, "past the end");
        assert!(!window.write64(28, 1), "straddles the end");
        assert_eq!(window.read64(u64::MAX - 3), None, "overflow");
        assert_eq!(backing[3], 7);
    }
}
