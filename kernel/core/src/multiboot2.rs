//! Multiboot2 boot information (Multiboot2 specification 1.0, section 3.6): the tags GRUB hands
//! the kernel. The kernel copies the structure out of physical memory and decodes it here; every
//! length is checked against the buffer, so a malformed structure is an error, never a panic.

use crate::bytes::{c_str, u32_at, u64_at};

/// EAX value a Multiboot2 loader passes to the entry point (spec 3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// Most modules the kernel keeps track of.
pub const MAX_MODULES: usize = 16;
/// Most memory-map regions the kernel keeps track of.
pub const MAX_REGIONS: usize = 64;

// Tag types (spec 3.6.1 onwards).
const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_BOOTLOADER: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

/// Why a boot information structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The loader did not pass the Multiboot2 magic value.
    BadMagic(u32),
    /// The structure is shorter than its header or than it claims.
    Truncated,
    /// A tag's size runs past the end of the structure or is below the tag header size.
    BadTagSize { tag: u32, size: u32 },
    /// The structure has no end tag.
    MissingEndTag,
    /// More modules than [`MAX_MODULES`].
    TooManyModules,
    /// More memory regions than [`MAX_REGIONS`].
    TooManyRegions,
    /// A module's end lies before its start.
    BadModule,
    /// A string is not UTF-8.
    BadString,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BadMagic(m) => write!(
                f,
                "bad multiboot2 magic {m:#x} (expected {BOOTLOADER_MAGIC:#x})"
            ),
            Error::Truncated => write!(f, "boot information truncated"),
            Error::BadTagSize { tag, size } => write!(f, "tag {tag} has bad size {size}"),
            Error::MissingEndTag => write!(f, "boot information has no end tag"),
            Error::TooManyModules => write!(f, "more than {MAX_MODULES} modules"),
            Error::TooManyRegions => write!(f, "more than {MAX_REGIONS} memory regions"),
            Error::BadModule => write!(f, "module ends before it starts"),
            Error::BadString => write!(f, "string is not UTF-8"),
        }
    }
}

/// The kind of a memory-map region (spec 3.6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Available,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

impl RegionKind {
    fn from_raw(raw: u32) -> Self {
        match raw {
            1 => RegionKind::Available,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Defective,
            _ => RegionKind::Reserved,
        }
    }
}

/// One memory-map region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub length: u64,
    pub kind: RegionKind,
}

impl Region {
    /// One past the last byte, saturating.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// One boot module: a physical range and its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub start: u64,
    pub end: u64,
    pub cmdline: &'a str,
}

impl Module<'_> {
    /// The module's first word of command line: its name by the convention xtask uses.
    pub fn name(&self) -> &str {
        self.cmdline.split_whitespace().next().unwrap_or("")
    }
}

/// Which RSDP the loader handed over (ACPI 6.4, 5.2.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rsdp<'a> {
    /// The ACPI 1.0 RSDP (tag 14): RSDT only.
    V1(&'a [u8]),
    /// The ACPI 2.0+ RSDP (tag 15): XSDT available.
    V2(&'a [u8]),
}

impl<'a> Rsdp<'a> {
    /// The raw RSDP bytes.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Rsdp::V1(b) | Rsdp::V2(b) => b,
        }
    }
}

/// The decoded boot information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo<'a> {
    pub cmdline: &'a str,
    pub bootloader: &'a str,
    pub modules: heapless::Vec<Module<'a>, MAX_MODULES>,
    pub regions: heapless::Vec<Region, MAX_REGIONS>,
    pub rsdp: Option<Rsdp<'a>>,
}

impl<'a> BootInfo<'a> {
    /// Total bytes of available RAM.
    pub fn available_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Available)
            .fold(0u64, |sum, r| sum.saturating_add(r.length))
    }

    /// One past the highest byte of any available region.
    pub fn highest_available(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Available)
            .map(Region::end)
            .max()
            .unwrap_or(0)
    }

    /// The total size the structure declares in its first word, if readable.
    pub fn declared_size(bytes: &[u8]) -> Option<u32> {
        u32_at(bytes, 0)
    }

    /// Decodes the structure in `bytes` (which must hold at least the declared total size).
    pub fn parse(magic: u32, bytes: &'a [u8]) -> Result<Self, Error> {
        if magic != BOOTLOADER_MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let total = u32_at(bytes, 0).ok_or(Error::Truncated)? as usize;
        if total < 16 || total > bytes.len() {
            return Err(Error::Truncated);
        }
        let bytes = &bytes[..total];
        let mut info = BootInfo {
            cmdline: "",
            bootloader: "",
            modules: heapless::Vec::new(),
            regions: heapless::Vec::new(),
            rsdp: None,
        };
        let mut offset = 8usize;
        loop {
            let tag = u32_at(bytes, offset).ok_or(Error::MissingEndTag)?;
            let size = u32_at(bytes, offset + 4).ok_or(Error::MissingEndTag)?;
            let end = offset
                .checked_add(size as usize)
                .ok_or(Error::BadTagSize { tag, size })?;
            if size < 8 || end > bytes.len() {
                return Err(Error::BadTagSize { tag, size });
            }
            let body = &bytes[offset + 8..end];
            match tag {
                TAG_END => return Ok(info),
                TAG_CMDLINE => info.cmdline = c_str(body).ok_or(Error::BadString)?,
                TAG_BOOTLOADER => info.bootloader = c_str(body).ok_or(Error::BadString)?,
                TAG_MODULE => {
                    let start = u32_at(body, 0).ok_or(Error::BadTagSize { tag, size })?;
                    let module_end = u32_at(body, 4).ok_or(Error::BadTagSize { tag, size })?;
                    if module_end < start {
                        return Err(Error::BadModule);
                    }
                    let cmdline = c_str(body.get(8..).unwrap_or(&[])).ok_or(Error::BadString)?;
                    let module = Module {
                        start: start.into(),
                        end: module_end.into(),
                        cmdline,
                    };
                    info.modules
                        .push(module)
                        .map_err(|_| Error::TooManyModules)?;
                }
                TAG_MEMORY_MAP => parse_memory_map(body, &mut info.regions, size)?,
                TAG_ACPI_OLD => info.rsdp = Some(Rsdp::V1(body)),
                // A new RSDP wins over an old one whatever the tag order.
                TAG_ACPI_NEW => info.rsdp = Some(Rsdp::V2(body)),
                _ => {}
            }
            // Tags are padded to 8-byte alignment (spec 3.6.1).
            offset = end.checked_add(7).ok_or(Error::Truncated)? & !7;
        }
    }
}

fn parse_memory_map(
    body: &[u8],
    regions: &mut heapless::Vec<Region, MAX_REGIONS>,
    size: u32,
) -> Result<(), Error> {
    let tag = TAG_MEMORY_MAP;
    let entry_size = u32_at(body, 0).ok_or(Error::BadTagSize { tag, size })? as usize;
    if entry_size < 24 {
        return Err(Error::BadTagSize { tag, size });
    }
    let entries = body.get(8..).unwrap_or(&[]);
    for entry in entries.chunks_exact(entry_size) {
        let base = u64_at(entry, 0).ok_or(Error::Truncated)?;
        let length = u64_at(entry, 8).ok_or(Error::Truncated)?;
        let kind = RegionKind::from_raw(u32_at(entry, 16).ok_or(Error::Truncated)?);
        regions
            .push(Region { base, length, kind })
            .map_err(|_| Error::TooManyRegions)?;
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a Multiboot2 information structure from (type, body) tags, padded per spec.
    pub fn build(tags: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        for (tag, body) in tags {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&((body.len() + 8) as u32).to_le_bytes());
            out.extend_from_slice(body);
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
        let total = out.len() as u32;
        out[..4].copy_from_slice(&total.to_le_bytes());
        out
    }

    fn module(start: u32, end: u32, cmdline: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.extend_from_slice(cmdline.as_bytes());
        b.push(0);
        b
    }

    fn memory_map(regions: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (base, len, kind) in regions {
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    #[test]
    fn decodes_a_grub_like_structure() {
        let bytes = build(&[
            (TAG_CMDLINE, b"serial test-fault=pf\0".to_vec()),
            (TAG_BOOTLOADER, b"GRUB 2.06\0".to_vec()),
            (TAG_MODULE, module(0x20_0000, 0x20_8000, "init extra")),
            (TAG_MODULE, module(0x20_8000, 0x21_0000, "pci-server")),
            (
                TAG_MEMORY_MAP,
                memory_map(&[
                    (0, 0x9fc00, 1),
                    (0x9fc00, 0x400, 2),
                    (0x10_0000, 0xfee_0000, 1),
                ]),
            ),
            (TAG_ACPI_OLD, b"RSD PTR \x00".to_vec()),
        ]);
        let info = BootInfo::parse(BOOTLOADER_MAGIC, &bytes).expect("valid");
        assert_eq!(info.cmdline, "serial test-fault=pf");
        assert_eq!(info.bootloader, "GRUB 2.06");
        assert_eq!(info.modules.len(), 2);
        assert_eq!(info.modules[0].name(), "init");
        assert_eq!(info.modules[1].end, 0x21_0000);
        assert_eq!(info.regions.len(), 3);
        assert_eq!(info.regions[1].kind, RegionKind::Reserved);
        assert_eq!(info.available_bytes(), 0x9fc00 + 0xfee_0000);
        assert_eq!(info.highest_available(), 0x0ffe_0000);
        assert!(matches!(info.rsdp, Some(Rsdp::V1(_))));
    }

    #[test]
    fn refuses_bad_magic_truncation_and_overlong_tags() {
        let good = build(&[(TAG_CMDLINE, b"x\0".to_vec())]);
        assert_eq!(
            BootInfo::parse(0x2bad_b002, &good),
            Err(Error::BadMagic(0x2bad_b002))
        );
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &good[..good.len() - 1]),
            Err(Error::Truncated)
        );
        let mut long_tag = good.clone();
        long_tag[12..16].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(matches!(
            BootInfo::parse(BOOTLOADER_MAGIC, &long_tag),
            Err(Error::BadTagSize { .. })
        ));
        let mut no_end = good.clone();
        let n = no_end.len();
        no_end[n - 8..n - 4].copy_from_slice(&77u32.to_le_bytes());
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &no_end),
            Err(Error::MissingEndTag)
        );
        let backwards = build(&[(TAG_MODULE, module(0x3000, 0x2000, "m"))]);
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &backwards),
            Err(Error::BadModule)
        );
    }

    #[test]
    fn too_many_modules_is_an_error() {
        let tags: Vec<_> = (0..=MAX_MODULES as u32)
            .map(|i| (TAG_MODULE, module(i, i + 1, "m")))
            .collect();
        assert_eq!(
            BootInfo::parse(BOOTLOADER_MAGIC, &build(&tags)),
            Err(Error::TooManyModules)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = BootInfo::parse(BOOTLOADER_MAGIC, &bytes);
        }

        #[test]
        fn random_tags_never_panic(tags in proptest::collection::vec((0u32..20, proptest::collection::vec(proptest::num::u8::ANY, 0..64)), 0..8)) {
            let _ = BootInfo::parse(BOOTLOADER_MAGIC, &build(&tags));
        }
    }
}
