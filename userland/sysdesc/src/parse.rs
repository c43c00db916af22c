//! The validating parser: bytes in, a checked [`Description`] out, never a panic.

use crate::error::SysdescError;
use crate::layout::*;
use zerocopy::FromBytes;

/// A description whose every field was checked; views borrow the original bytes.
#[derive(Debug, Clone, Copy)]
pub struct Description<'a> {
    header: &'a Header,
    guests: &'a [GuestRecord],
    devices: &'a [DeviceRecord],
    strings: &'a [u8],
}

/// One checked guest record with its strings resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestView<'a> {
    pub name: &'a str,
    pub memory_bytes: u64,
    pub cpu_mask: u64,
    pub vcpus: u32,
    pub kernel: Kernel,
    pub cmdline: &'a str,
}

impl<'a> Description<'a> {
    /// The system name.
    pub fn name(&self) -> &'a str {
        // Checked by `parse`; an empty string cannot be reached.
        string_at(
            self.strings,
            self.header.name_offset.get(),
            self.header.name_len.get(),
        )
        .unwrap_or("")
    }
    /// Machine memory in bytes.
    pub fn machine_memory(&self) -> u64 {
        self.header.machine_memory.get()
    }
    /// Host CPUs of the machine.
    pub fn machine_cpus(&self) -> u32 {
        self.header.machine_cpus.get()
    }
    /// Header flags ([`FLAG_IOMMU`], [`FLAG_INSECURE_NO_IRQ_REMAP`]).
    pub fn flags(&self) -> u32 {
        self.header.flags.get()
    }
    /// Number of guests.
    pub fn guest_count(&self) -> usize {
        self.guests.len()
    }
    /// The guest at `index`, if any.
    pub fn guest(&self, index: usize) -> Option<GuestView<'a>> {
        let record = self.guests.get(index)?;
        view_guest(record, self.strings).ok()
    }
    /// All guests in order.
    pub fn guests(&self) -> impl Iterator<Item = GuestView<'a>> + 'a {
        let strings = self.strings;
        self.guests
            .iter()
            .filter_map(move |g| view_guest(g, strings).ok())
    }
    /// All device assignment records.
    pub fn devices(&self) -> &'a [DeviceRecord] {
        self.devices
    }
    /// The devices assigned to guest `index`.
    pub fn devices_of(&self, index: usize) -> impl Iterator<Item = &'a DeviceRecord> + 'a {
        self.devices
            .iter()
            .filter(move |d| usize::from(d.guest_index.get()) == index)
    }
}

fn string_at(strings: &[u8], offset: u32, len: u32) -> Option<&str> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    core::str::from_utf8(strings.get(start..end)?).ok()
}

fn guest_name(record: &GuestRecord) -> Option<&str> {
    let used = record
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(GUEST_NAME_LEN);
    let (name, padding) = record.name.split_at(used);
    if name.is_empty() || padding.iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(name).ok()
}

fn view_guest<'a>(
    record: &'a GuestRecord,
    strings: &'a [u8],
) -> Result<GuestView<'a>, SysdescError> {
    let name = guest_name(record).ok_or(SysdescError::BadString)?;
    let cmdline = string_at(
        strings,
        record.cmdline_offset.get(),
        record.cmdline_len.get(),
    )
    .ok_or(SysdescError::BadString)?;
    let kernel = match record.kernel_kind.get() {
        KERNEL_KIND_BUILTIN => Kernel::Builtin(
            BuiltinGuest::from_id(record.kernel_id.get()).ok_or(SysdescError::BadString)?,
        ),
        KERNEL_KIND_MODULE => Kernel::Module(record.kernel_id.get()),
        _ => return Err(SysdescError::BadString),
    };
    Ok(GuestView {
        name,
        memory_bytes: record.memory_bytes.get(),
        cpu_mask: record.cpu_mask.get(),
        vcpus: record.vcpus.get(),
        kernel,
        cmdline,
    })
}

fn table_end(offset: u32, count: u32, record_len: usize) -> Result<usize, SysdescError> {
    let count = usize::try_from(count).map_err(|_| SysdescError::BadLayout)?;
    let offset = usize::try_from(offset).map_err(|_| SysdescError::BadLayout)?;
    count
        .checked_mul(record_len)
        .and_then(|len| len.checked_add(offset))
        .ok_or(SysdescError::BadLayout)
}

fn region(bytes: &[u8], start: usize, end: usize) -> Result<&[u8], SysdescError> {
    bytes.get(start..end).ok_or(SysdescError::BadLayout)
}

/// Parse and validate a description. See the crate docs for what is checked.
pub fn parse(bytes: &[u8]) -> Result<Description<'_>, SysdescError> {
    let (header, _) = Header::ref_from_prefix(bytes).map_err(|_| SysdescError::TooShort)?;
    if header.magic != MAGIC {
        return Err(SysdescError::BadMagic);
    }
    if header.version.get() != VERSION {
        return Err(SysdescError::UnsupportedVersion(header.version.get()));
    }
    let sizes_ok = usize::try_from(header.header_len.get()) == Ok(HEADER_LEN)
        && usize::try_from(header.guest_record_len.get()) == Ok(GUEST_RECORD_LEN)
        && usize::try_from(header.device_record_len.get()) == Ok(DEVICE_RECORD_LEN);
    if !sizes_ok {
        return Err(SysdescError::BadRecordSize);
    }
    if usize::try_from(header.total_len.get()) != Ok(bytes.len()) {
        return Err(SysdescError::LengthMismatch {
            declared: header.total_len.get(),
            actual: bytes.len(),
        });
    }
    if header.reserved.get() != 0 {
        return Err(SysdescError::ReservedNotZero);
    }
    if header.flags.get() & !FLAG_KNOWN != 0 {
        return Err(SysdescError::UnknownFlags);
    }
    let guest_count = header.guest_count.get();
    let device_count = header.device_count.get();
    if usize::try_from(guest_count).map_or(true, |c| c > MAX_GUESTS)
        || usize::try_from(device_count).map_or(true, |c| c > MAX_DEVICES)
    {
        return Err(SysdescError::TooMany);
    }
    // Canonical layout: header, guests, devices, strings, end.
    if usize::try_from(header.guest_offset.get()) != Ok(HEADER_LEN) {
        return Err(SysdescError::BadLayout);
    }
    let guests_end = table_end(header.guest_offset.get(), guest_count, GUEST_RECORD_LEN)?;
    if usize::try_from(header.device_offset.get()) != Ok(guests_end) {
        return Err(SysdescError::BadLayout);
    }
    let devices_end = table_end(header.device_offset.get(), device_count, DEVICE_RECORD_LEN)?;
    if usize::try_from(header.strings_offset.get()) != Ok(devices_end) {
        return Err(SysdescError::BadLayout);
    }
    let strings_end = table_end(header.strings_offset.get(), header.strings_len.get(), 1)?;
    if strings_end != bytes.len() {
        return Err(SysdescError::BadLayout);
    }
    let guests = <[GuestRecord]>::ref_from_bytes(region(bytes, HEADER_LEN, guests_end)?)
        .map_err(|_| SysdescError::BadLayout)?;
    let devices = <[DeviceRecord]>::ref_from_bytes(region(bytes, guests_end, devices_end)?)
        .map_err(|_| SysdescError::BadLayout)?;
    let strings = region(bytes, devices_end, strings_end)?;

    let name = string_at(strings, header.name_offset.get(), header.name_len.get())
        .ok_or(SysdescError::BadString)?;
    if name.is_empty() {
        return Err(SysdescError::BadString);
    }
    let machine_cpus = header.machine_cpus.get();
    if machine_cpus == 0 || machine_cpus > MAX_CPUS {
        return Err(SysdescError::BadMachineCpus);
    }
    check_guests(guests, strings, machine_cpus, header.machine_memory.get())?;
    check_devices(devices, guests.len())?;
    Ok(Description {
        header,
        guests,
        devices,
        strings,
    })
}

fn check_guests(
    guests: &[GuestRecord],
    strings: &[u8],
    machine_cpus: u32,
    machine_memory: u64,
) -> Result<(), SysdescError> {
    const TWO_MIB: u64 = 2 * 1024 * 1024;
    let machine_mask = if machine_cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << machine_cpus) - 1
    };
    let mut owned = 0u64;
    let mut memory_total = 0u64;
    for (index, guest) in guests.iter().enumerate() {
        let name = guest_name(guest).ok_or(SysdescError::BadGuestName { guest: index })?;
        let earlier = guests.get(..index).unwrap_or(&[]);
        if earlier.iter().any(|other| guest_name(other) == Some(name)) {
            return Err(SysdescError::DuplicateGuestName { guest: index });
        }
        let memory = guest.memory_bytes.get();
        if memory == 0 || memory % TWO_MIB != 0 {
            return Err(SysdescError::BadGuestMemory { guest: index });
        }
        memory_total = memory_total
            .checked_add(memory)
            .ok_or(SysdescError::MemoryOvercommit)?;
        let mask = guest.cpu_mask.get();
        if mask == 0 || mask & !machine_mask != 0 {
            return Err(SysdescError::BadCpuMask { guest: index });
        }
        if mask & owned != 0 {
            return Err(SysdescError::CpuOwnedTwice { guest: index });
        }
        owned |= mask;
        let vcpus = guest.vcpus.get();
        if vcpus == 0 || vcpus > mask.count_ones() {
            return Err(SysdescError::BadVcpus { guest: index });
        }
        if guest.reserved.get() != 0 {
            return Err(SysdescError::ReservedNotZero);
        }
        view_guest(guest, strings).map_err(|e| match e {
            SysdescError::BadString
                if guest.kernel_kind.get() != KERNEL_KIND_BUILTIN
                    && guest.kernel_kind.get() != KERNEL_KIND_MODULE =>
            {
                SysdescError::BadKernel { guest: index }
            }
            SysdescError::BadString
                if guest.kernel_kind.get() == KERNEL_KIND_BUILTIN
                    && BuiltinGuest::from_id(guest.kernel_id.get()).is_none() =>
            {
                SysdescError::BadKernel { guest: index }
            }
            other => other,
        })?;
    }
    if memory_total > machine_memory {
        return Err(SysdescError::MemoryOvercommit);
    }
    Ok(())
}

fn check_devices(devices: &[DeviceRecord], guest_count: usize) -> Result<(), SysdescError> {
    for (index, device) in devices.iter().enumerate() {
        if usize::from(device.guest_index.get()) >= guest_count {
            return Err(SysdescError::BadGuestIndex { device: index });
        }
        if device.flags.get() & !DEVICE_FLAG_KNOWN != 0 {
            return Err(SysdescError::UnknownFlags);
        }
        if device.reserved.get() != 0 {
            return Err(SysdescError::ReservedNotZero);
        }
        let earlier = devices.get(..index).unwrap_or(&[]);
        if earlier
            .iter()
            .any(|d| d.host_bdf.get() == device.host_bdf.get())
        {
            return Err(SysdescError::DuplicateHostBdf { device: index });
        }
        if earlier.iter().any(|d| {
            d.guest_index.get() == device.guest_index.get()
                && d.guest_bdf.get() == device.guest_bdf.get()
        }) {
            return Err(SysdescError::DuplicateGuestBdf { device: index });
        }
    }
    Ok(())
}
