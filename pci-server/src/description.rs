//! The system description init delegated (boot module `sysdesc`, read-only): mapped into the
//! server's space for good, parsed with `sluice-sysdesc`, and turned into the assignment
//! records [`crate::assignments`] checks.

use pci_api::Bdf;
use sluice_rt::abi::boot::selector::SELF_DOMAIN;
use sluice_rt::abi::syscall::{MemoryRights, Selector, Status};
use sluice_sysdesc::{Description, DEVICE_FLAG_VIRTUAL_FUNCTION};

use crate::assignments::Record;

/// Where the description is mapped.
pub const SYSDESC_VIRTUAL: u64 = 0x20_0000_0000;
/// Offset of `total_len` in the description header (`sluice_sysdesc::layout::Header`).
const TOTAL_LENGTH_OFFSET: usize = 16;
/// Largest description accepted (the writer's limits keep it far smaller).
const MAX_LENGTH: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Why the description could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptionError {
    /// The kernel refused a mapping.
    Map(Status),
    /// The header's length is absurd.
    Length(u64),
    /// `sluice-sysdesc` refused it.
    Parse(sluice_sysdesc::SysdescError),
}

impl core::fmt::Display for DescriptionError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(status) => write!(formatter, "mapping it was refused: {status:?}"),
            Self::Length(length) => write!(formatter, "its header declares {length} bytes"),
            Self::Parse(error) => write!(formatter, "{error}"),
        }
    }
}

/// The declared length in the header's first bytes.
pub fn declared_length(header: &[u8]) -> Option<u64> {
    header
        .get(TOTAL_LENGTH_OFFSET..TOTAL_LENGTH_OFFSET + 4)
        .and_then(|bytes| bytes.try_into().ok())
        .map(|bytes| u64::from(u32::from_le_bytes(bytes)))
}

/// Maps the description (capability `module`) and parses it; the mapping stays for the
/// program's life, so the returned description may borrow it.
pub fn map_and_parse(module: Selector) -> Result<Description<'static>, DescriptionError> {
    let own = Selector(SELF_DOMAIN);
    sluice_rt::sys::map(module, own, SYSDESC_VIRTUAL, 0, PAGE, MemoryRights::READ)
        .map_err(DescriptionError::Map)?;
    // SAFETY: one page is mapped readable at SYSDESC_VIRTUAL; the slice ends before the read
    // below changes the mapping.
    let header = unsafe { core::slice::from_raw_parts(SYSDESC_VIRTUAL as *const u8, 64) };
    let length = declared_length(header).unwrap_or(0);
    if length == 0 || length > MAX_LENGTH {
        return Err(DescriptionError::Length(length));
    }
    let pages = length.div_ceil(PAGE) * PAGE;
    if pages > PAGE {
        sluice_rt::sys::unmap(own, SYSDESC_VIRTUAL, PAGE).map_err(DescriptionError::Map)?;
        sluice_rt::sys::map(module, own, SYSDESC_VIRTUAL, 0, pages, MemoryRights::READ)
            .map_err(DescriptionError::Map)?;
    }
    // SAFETY: `pages` >= `length` bytes are mapped readable at SYSDESC_VIRTUAL and never
    // unmapped or written (the module is read-only), so a 'static shared slice is sound.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(SYSDESC_VIRTUAL as *const u8, length as usize) };
    sluice_sysdesc::parse(bytes).map_err(DescriptionError::Parse)
}

/// The assignment records of a description.
pub fn records<'a>(description: &Description<'a>) -> impl Iterator<Item = Record> + 'a {
    description.devices().iter().map(|device| Record {
        host_bdf: Bdf::from_requester_id(device.host_bdf.get()),
        guest: device.guest_index.get(),
        virtual_function: device.flags.get() & DEVICE_FLAG_VIRTUAL_FUNCTION != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_length_is_read_from_the_header() {
        let mut header = [0u8; 32];
        header[16..20].copy_from_slice(&301u32.to_le_bytes());
        assert_eq!(declared_length(&header), Some(301));
        assert_eq!(declared_length(&header[..18]), None);
    }
}
