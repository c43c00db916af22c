//! ACPI table discovery (ACPI 6.4, chapter 5.2): the RSDP, the RSDT/XSDT, and the few tables the
//! kernel itself reads: MADT (CPUs and IOAPICs), MCFG (ECAM windows, PCI Firmware spec 3.2,
//! 4.1.2) and the presence of DMAR (Intel VT-d spec, chapter 8). Physical memory is reached
//! through [`PhysRead`], so every table is parsed from a copy whose length and checksum were
//! checked, and tests feed synthetic firmware.

use crate::bytes::{checksum, u16_at, u32_at, u64_at, u8_at};

/// Reads physical memory into a buffer (the kernel: through its direct map; tests: a fake).
pub trait PhysRead {
    /// Fills `buf` from `phys`; fails if any byte is outside readable memory.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), AcpiError>;
}

/// Why ACPI discovery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// The RSDP signature or checksum is wrong.
    BadRsdp,
    /// A table's signature, length or checksum is wrong.
    BadTable { signature: [u8; 4], phys: u64 },
    /// A table is larger than the buffer offered for it.
    TableTooLarge { signature: [u8; 4], length: u32 },
    /// Physical memory could not be read.
    Unreadable(u64),
    /// The root table lists more tables than the kernel keeps.
    TooManyTables,
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::BadRsdp => write!(f, "RSDP signature or checksum is wrong"),
            AcpiError::BadTable { signature, phys } => {
                write!(
                    f,
                    "table {} at {phys:#x} is malformed",
                    Signature(*signature)
                )
            }
            AcpiError::TableTooLarge { signature, length } => {
                write!(
                    f,
                    "table {} is too large ({length} bytes)",
                    Signature(*signature)
                )
            }
            AcpiError::Unreadable(phys) => write!(f, "physical address {phys:#x} is not readable"),
            AcpiError::TooManyTables => write!(f, "root table lists more than {MAX_TABLES} tables"),
        }
    }
}

/// A four-byte table signature, printed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 4]);

impl core::fmt::Display for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Most tables the kernel remembers from the root table.
pub const MAX_TABLES: usize = 32;
/// The size of the common table header (ACPI 6.4, 5.2.6).
pub const HEADER_LEN: usize = 36;

/// One table listed in the RSDT/XSDT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRef {
    pub signature: [u8; 4],
    pub phys: u64,
    pub length: u32,
}

/// The tables found through the RSDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// RSDP revision: 0 for ACPI 1.0 (RSDT), 2 or more for XSDT.
    pub revision: u8,
    pub tables: heapless::Vec<TableRef, MAX_TABLES>,
}

/// The RSDP signature (ACPI 6.4, 5.2.5.3).
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";

/// Checks an RSDP and returns (revision, root table address, whether it is an XSDT).
pub fn check_rsdp(rsdp: &[u8]) -> Result<(u8, u64, bool), AcpiError> {
    if rsdp.get(..8) != Some(RSDP_SIGNATURE.as_slice())
        || checksum(rsdp.get(..20).ok_or(AcpiError::BadRsdp)?) != 0
    {
        return Err(AcpiError::BadRsdp);
    }
    let revision = u8_at(rsdp, 15).ok_or(AcpiError::BadRsdp)?;
    if revision >= 2 {
        let length = u32_at(rsdp, 20).ok_or(AcpiError::BadRsdp)? as usize;
        let extended = rsdp.get(..length).ok_or(AcpiError::BadRsdp)?;
        if length < 36 || checksum(extended) != 0 {
            return Err(AcpiError::BadRsdp);
        }
        let xsdt = u64_at(rsdp, 24).ok_or(AcpiError::BadRsdp)?;
        if xsdt != 0 {
            return Ok((revision, xsdt, true));
        }
    }
    let rsdt = u32_at(rsdp, 16).ok_or(AcpiError::BadRsdp)?;
    Ok((revision, rsdt.into(), false))
}

/// Scans the legacy BIOS areas (the first KiB of the EBDA, then 0xE0000-0xFFFFF) for the RSDP,
/// on 16-byte boundaries (ACPI 6.4, 5.2.5.1). Returns its physical address.
pub fn scan_bios_for_rsdp(mem: &impl PhysRead) -> Option<u64> {
    let mut ebda_segment = [0u8; 2];
    let ebda = mem
        .read(0x40e, &mut ebda_segment)
        .ok()
        .map(|_| u64::from(u16::from_le_bytes(ebda_segment)) << 4);
    let areas = [ebda.map(|e| (e, e + 1024)), Some((0xe_0000, 0x10_0000))];
    for (start, end) in areas.into_iter().flatten() {
        let mut phys = start & !15;
        while phys + 20 <= end {
            let mut candidate = [0u8; 20];
            if mem.read(phys, &mut candidate).is_ok() && check_rsdp(&candidate).is_ok() {
                return Some(phys);
            }
            phys += 16;
        }
    }
    None
}

/// Reads the table header at `phys` and returns its signature and length.
fn header(mem: &impl PhysRead, phys: u64) -> Result<([u8; 4], u32), AcpiError> {
    let mut head = [0u8; HEADER_LEN];
    mem.read(phys, &mut head)
        .map_err(|_| AcpiError::Unreadable(phys))?;
    let signature = [head[0], head[1], head[2], head[3]];
    let length = u32_at(&head, 4).unwrap_or(0);
    if (length as usize) < HEADER_LEN {
        return Err(AcpiError::BadTable { signature, phys });
    }
    Ok((signature, length))
}

/// Reads the whole table at `phys` into `buf`, checking its length and checksum.
pub fn read_table<'b>(
    mem: &impl PhysRead,
    phys: u64,
    buf: &'b mut [u8],
) -> Result<&'b [u8], AcpiError> {
    let (signature, length) = header(mem, phys)?;
    let table = buf
        .get_mut(..length as usize)
        .ok_or(AcpiError::TableTooLarge { signature, length })?;
    mem.read(phys, table)
        .map_err(|_| AcpiError::Unreadable(phys))?;
    if checksum(table) != 0 {
        return Err(AcpiError::BadTable { signature, phys });
    }
    Ok(table)
}

impl Tables {
    /// Follows the RSDP to the RSDT/XSDT and lists its tables. `scratch` holds the root table.
    pub fn discover(
        rsdp: &[u8],
        mem: &impl PhysRead,
        scratch: &mut [u8],
    ) -> Result<Self, AcpiError> {
        let (revision, root, extended) = check_rsdp(rsdp)?;
        let root_table = read_table(mem, root, scratch)?;
        let entry = if extended { 8 } else { 4 };
        let mut tables = heapless::Vec::new();
        let mut offset = HEADER_LEN;
        while offset + entry <= root_table.len() {
            let phys = if extended {
                u64_at(root_table, offset).unwrap_or(0)
            } else {
                u32_at(root_table, offset).unwrap_or(0).into()
            };
            offset += entry;
            // A bad entry is skipped: one broken table must not hide the others.
            if let Ok((signature, length)) = header(mem, phys) {
                tables
                    .push(TableRef {
                        signature,
                        phys,
                        length,
                    })
                    .map_err(|_| AcpiError::TooManyTables)?;
            }
        }
        Ok(Tables { revision, tables })
    }

    /// The first table with this signature.
    pub fn find(&self, signature: &[u8; 4]) -> Option<TableRef> {
        self.tables
            .iter()
            .copied()
            .find(|t| &t.signature == signature)
    }
}

/// One ECAM window from MCFG (PCI Firmware spec 3.2, Table 4-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// The ECAM windows in an MCFG table (entries of 16 bytes after 8 reserved bytes).
pub fn parse_mcfg(table: &[u8]) -> heapless::Vec<EcamWindow, 8> {
    let mut windows = heapless::Vec::new();
    let mut offset = HEADER_LEN + 8;
    while offset + 16 <= table.len() {
        let window = EcamWindow {
            base: u64_at(table, offset).unwrap_or(0),
            segment: u16_at(table, offset + 8).unwrap_or(0),
            start_bus: u8_at(table, offset + 10).unwrap_or(0),
            end_bus: u8_at(table, offset + 11).unwrap_or(0),
        };
        if window.end_bus >= window.start_bus && windows.push(window).is_err() {
            break;
        }
        offset += 16;
    }
    windows
}

/// A processor's local APIC from MADT (ACPI 6.4, 5.2.12.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalApic {
    pub processor_uid: u8,
    pub apic_id: u8,
    /// Enabled, or online-capable (may be brought up).
    pub usable: bool,
}

/// An I/O APIC from MADT (ACPI 6.4, 5.2.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An interrupt source override from MADT (ACPI 6.4, 5.2.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOverride {
    pub irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// The decoded MADT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Madt {
    pub local_apic_address: u32,
    pub cpus: heapless::Vec<LocalApic, 64>,
    pub ioapics: heapless::Vec<IoApic, 8>,
    pub overrides: heapless::Vec<SourceOverride, 16>,
}

/// Decodes an MADT; malformed entries end the walk, what came before is kept.
pub fn parse_madt(table: &[u8]) -> Madt {
    let mut madt = Madt {
        local_apic_address: u32_at(table, HEADER_LEN).unwrap_or(0),
        ..Default::default()
    };
    let mut offset = HEADER_LEN + 8;
    while let (Some(kind), Some(length)) = (u8_at(table, offset), u8_at(table, offset + 1)) {
        let length = usize::from(length);
        let Some(entry) = table.get(offset..offset + length) else {
            break;
        };
        if length < 2 {
            break;
        }
        match (kind, length) {
            (0, 8..) => {
                let flags = u32_at(entry, 4).unwrap_or(0);
                let cpu = LocalApic {
                    processor_uid: entry[2],
                    apic_id: entry[3],
                    usable: flags & 0b11 != 0,
                };
                let _ = madt.cpus.push(cpu);
            }
            (1, 12..) => {
                let ioapic = IoApic {
                    id: entry[2],
                    address: u32_at(entry, 4).unwrap_or(0),
                    gsi_base: u32_at(entry, 8).unwrap_or(0),
                };
                let _ = madt.ioapics.push(ioapic);
            }
            (2, 10..) => {
                let over = SourceOverride {
                    irq: entry[3],
                    gsi: u32_at(entry, 4).unwrap_or(0),
                    flags: u16_at(entry, 8).unwrap_or(0),
                };
                let _ = madt.overrides.push(over);
            }
            _ => {}
        }
        offset += length;
    }
    madt
}

/// Register base addresses of the DMA remapping units (DRHD structures, VT-d spec 8.3) in a
/// DMAR table; the iommu-server parses the rest.
pub fn dmar_unit_bases(table: &[u8]) -> heapless::Vec<u64, 8> {
    let mut bases = heapless::Vec::new();
    // DMAR: header, host address width (1), flags (1), reserved (10), then remapping structures.
    let mut offset = HEADER_LEN + 12;
    while let (Some(kind), Some(length)) = (u16_at(table, offset), u16_at(table, offset + 2)) {
        let length = usize::from(length);
        if length < 4 || offset + length > table.len() {
            break;
        }
        if kind == 0 {
            if let Some(base) = u64_at(table, offset + 8) {
                let _ = bases.push(base);
            }
        }
        offset += length;
    }
    bases
}

#[cfg(test)]
mod tests;
