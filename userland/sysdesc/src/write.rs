//! The writer: lays out a [`SystemSpec`] canonically into a caller-provided buffer.

use crate::error::SysdescError;
use crate::layout::*;
use crate::parse::parse;
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

/// One guest to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestSpec<'a> {
    pub name: &'a str,
    pub memory_bytes: u64,
    pub cpu_mask: u64,
    pub vcpus: u32,
    pub kernel: Kernel,
    pub cmdline: &'a str,
}

/// One device assignment to write (BDFs in requester-id encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSpec {
    pub host_bdf: u16,
    pub guest_bdf: u16,
    pub guest_index: u16,
    pub flags: u16,
    pub iommu_group: u32,
}

/// A whole system to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemSpec<'a> {
    pub name: &'a str,
    pub machine_memory: u64,
    pub machine_cpus: u32,
    pub flags: u32,
    pub guests: &'a [GuestSpec<'a>],
    pub devices: &'a [DeviceSpec],
}

fn strings_len(spec: &SystemSpec<'_>) -> Option<usize> {
    spec.guests.iter().try_fold(spec.name.len(), |total, g| {
        total.checked_add(g.cmdline.len())
    })
}

/// Bytes [`write`] needs for `spec`.
pub fn encoded_len(spec: &SystemSpec<'_>) -> Result<usize, SysdescError> {
    let guests = spec.guests.len().checked_mul(GUEST_RECORD_LEN);
    let devices = spec.devices.len().checked_mul(DEVICE_RECORD_LEN);
    let total = guests
        .zip(devices)
        .and_then(|(g, d)| HEADER_LEN.checked_add(g)?.checked_add(d))
        .and_then(|t| t.checked_add(strings_len(spec)?))
        .ok_or(SysdescError::Overflow)?;
    u32::try_from(total).map_err(|_| SysdescError::Overflow)?;
    Ok(total)
}

fn u32_of(value: usize) -> Result<U32, SysdescError> {
    u32::try_from(value)
        .map(U32::new)
        .map_err(|_| SysdescError::Overflow)
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> Result<(), SysdescError> {
    let end = at.checked_add(bytes.len()).ok_or(SysdescError::Overflow)?;
    let slot = out
        .get_mut(*at..end)
        .ok_or(SysdescError::BufferTooSmall { needed: end })?;
    slot.copy_from_slice(bytes);
    *at = end;
    Ok(())
}

/// Write `spec` into `out` and return the length used. The result is parsed back before
/// returning, so an accepted spec always yields a description [`parse`] accepts; on error
/// the contents of `out` are unspecified and must not be used.
pub fn write(spec: &SystemSpec<'_>, out: &mut [u8]) -> Result<usize, SysdescError> {
    let total = encoded_len(spec)?;
    if out.len() < total {
        return Err(SysdescError::BufferTooSmall { needed: total });
    }
    if spec.guests.len() > MAX_GUESTS || spec.devices.len() > MAX_DEVICES {
        return Err(SysdescError::TooMany);
    }
    let guest_offset = HEADER_LEN;
    let device_offset = guest_offset + spec.guests.len() * GUEST_RECORD_LEN;
    let strings_offset = device_offset + spec.devices.len() * DEVICE_RECORD_LEN;
    let header = Header {
        magic: MAGIC,
        version: U32::new(VERSION),
        header_len: u32_of(HEADER_LEN)?,
        total_len: u32_of(total)?,
        flags: U32::new(spec.flags),
        guest_count: u32_of(spec.guests.len())?,
        guest_offset: u32_of(guest_offset)?,
        guest_record_len: u32_of(GUEST_RECORD_LEN)?,
        device_count: u32_of(spec.devices.len())?,
        device_offset: u32_of(device_offset)?,
        device_record_len: u32_of(DEVICE_RECORD_LEN)?,
        strings_offset: u32_of(strings_offset)?,
        strings_len: u32_of(total - strings_offset)?,
        name_offset: U32::new(0),
        name_len: u32_of(spec.name.len())?,
        machine_memory: U64::new(spec.machine_memory),
        machine_cpus: U32::new(spec.machine_cpus),
        reserved: U32::new(0),
    };
    let mut at = 0;
    put(out, &mut at, header.as_bytes())?;
    let mut string_cursor = spec.name.len();
    for (index, guest) in spec.guests.iter().enumerate() {
        let mut name = [0u8; GUEST_NAME_LEN];
        let bytes = guest.name.as_bytes();
        if bytes.is_empty() || bytes.len() >= GUEST_NAME_LEN || bytes.contains(&0) {
            return Err(SysdescError::BadGuestName { guest: index });
        }
        name.get_mut(..bytes.len())
            .ok_or(SysdescError::BadGuestName { guest: index })?
            .copy_from_slice(bytes);
        let (kernel_kind, kernel_id) = match guest.kernel {
            Kernel::Builtin(builtin) => (KERNEL_KIND_BUILTIN, builtin.id()),
            Kernel::Module(index) => (KERNEL_KIND_MODULE, index),
        };
        let record = GuestRecord {
            name,
            memory_bytes: U64::new(guest.memory_bytes),
            cpu_mask: U64::new(guest.cpu_mask),
            vcpus: U32::new(guest.vcpus),
            kernel_kind: U32::new(kernel_kind),
            kernel_id: U32::new(kernel_id),
            cmdline_offset: u32_of(string_cursor)?,
            cmdline_len: u32_of(guest.cmdline.len())?,
            reserved: U32::new(0),
        };
        string_cursor = string_cursor
            .checked_add(guest.cmdline.len())
            .ok_or(SysdescError::Overflow)?;
        put(out, &mut at, record.as_bytes())?;
    }
    for device in spec.devices {
        let guest_index = device.guest_index;
        let record = DeviceRecord {
            host_bdf: U16::new(device.host_bdf),
            guest_bdf: U16::new(device.guest_bdf),
            guest_index: U16::new(guest_index),
            flags: U16::new(device.flags),
            iommu_group: U32::new(device.iommu_group),
            reserved: U32::new(0),
        };
        put(out, &mut at, record.as_bytes())?;
    }
    put(out, &mut at, spec.name.as_bytes())?;
    for guest in spec.guests {
        put(out, &mut at, guest.cmdline.as_bytes())?;
    }
    let written = out
        .get(..total)
        .ok_or(SysdescError::BufferTooSmall { needed: total })?;
    parse(written)?;
    Ok(total)
}
