//! The one seam to hardware: 8/16/32-bit reads and writes of a function's 4 KiB config space.
//!
//! The server binary implements [`ConfigSpace`] over ECAM MMIO (see [`crate::ecam`]); tests use
//! [`crate::fake::FakeConfigSpace`]. Everything else in this crate talks to devices only
//! through this trait.

use pci_api::Bdf;

/// Size of one function's config space with ECAM (PCIe Base spec 6.0 section 7.2.2).
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// Width of one config access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessWidth {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Word,
    /// 32 bits.
    Dword,
}

impl AccessWidth {
    /// Number of bytes.
    pub const fn bytes(self) -> u16 {
        match self {
            AccessWidth::Byte => 1,
            AccessWidth::Word => 2,
            AccessWidth::Dword => 4,
        }
    }

    /// Mask of the value bits an access of this width carries.
    pub const fn value_mask(self) -> u32 {
        match self {
            AccessWidth::Byte => 0xff,
            AccessWidth::Word => 0xffff,
            AccessWidth::Dword => 0xffff_ffff,
        }
    }

    /// True when `offset` is naturally aligned for this width and the access ends inside
    /// config space.
    pub const fn fits(self, offset: u16) -> bool {
        offset.is_multiple_of(self.bytes())
            && (offset as u32 + self.bytes() as u32) <= CONFIG_SPACE_SIZE as u32
    }
}

impl From<pci_api::AccessWidthCode> for AccessWidth {
    fn from(code: pci_api::AccessWidthCode) -> Self {
        match code {
            pci_api::AccessWidthCode::Byte => AccessWidth::Byte,
            pci_api::AccessWidthCode::Word => AccessWidth::Word,
            pci_api::AccessWidthCode::Dword => AccessWidth::Dword,
        }
    }
}

/// Config-space access for every function of one PCI segment.
///
/// Contract for implementations: a read of a function that does not exist returns all-ones (as
/// a master abort does, PCIe Base spec 6.0 section 2.3.2); a misaligned access or one that ends
/// past 4 KiB reads all-ones and writes nothing. Callers in this crate only issue aligned,
/// in-range accesses.
pub trait ConfigSpace {
    /// Reads `width` bytes at `offset`, zero-extended.
    fn read(&self, bdf: Bdf, offset: u16, width: AccessWidth) -> u32;

    /// Writes the low `width` bytes of `value` at `offset`.
    fn write(&mut self, bdf: Bdf, offset: u16, width: AccessWidth, value: u32);

    /// Reads one byte.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read(bdf, offset, AccessWidth::Byte) & 0xff) as u8
    }

    /// Reads two bytes.
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read(bdf, offset, AccessWidth::Word) & 0xffff) as u16
    }

    /// Reads four bytes.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.read(bdf, offset, AccessWidth::Dword)
    }

    /// Writes one byte.
    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) {
        self.write(bdf, offset, AccessWidth::Byte, u32::from(value));
    }

    /// Writes two bytes.
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) {
        self.write(bdf, offset, AccessWidth::Word, u32::from(value));
    }

    /// Writes four bytes.
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        self.write(bdf, offset, AccessWidth::Dword, value);
    }
}

/// Something that can wait: the executor of resets and SR-IOV enabling waits only through
/// this, so tests run instantly and record what was waited for.
pub trait Delay {
    /// Waits at least `microseconds`.
    fn delay_us(&mut self, microseconds: u32);

    /// Waits at least `milliseconds`.
    fn delay_ms(&mut self, milliseconds: u32) {
        self.delay_us(milliseconds.saturating_mul(1000));
    }
}
