//! The built guest image is well-formed and matches the layout README.md documents: parses the
//! ELF64 headers with plain std code. The image is built by this test (a nested
//! `cargo build --release --target x86_64-unknown-none` into a directory of its own), or taken
//! from `GUEST_PROBE_ELF` when that is set.
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use guest_probe::layout::{BOOT_END, IMAGE_BASE, IMAGE_LIMIT, PARAMETERS_ADDRESS, REAL_MODE_ENTRY};
use guest_probe::parameters::{self, Mode, BLOCK_BYTES};

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const CLI: u8 = 0xfa;

/// One PT_LOAD program header.
#[derive(Clone, Copy, Debug)]
struct Segment {
    flags: u32,
    offset: u64,
    virtual_address: u64,
    physical_address: u64,
    file_size: u64,
    memory_size: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.physical_address + self.memory_size
    }

    fn contains(&self, address: u64) -> bool {
        (self.physical_address..self.end()).contains(&address)
    }
}

/// What a VMM's loader needs from the image.
#[derive(Debug)]
struct Image {
    entry: u64,
    segments: Vec<Segment>,
}

fn bytes_at<const N: usize>(image: &[u8], offset: u64) -> Result<[u8; N], String> {
    let start = usize::try_from(offset).map_err(|_| format!("offset {offset:#x} too large"))?;
    image
        .get(start..start + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("file ends before {N} bytes at {offset:#x}"))
}

fn u16_at(image: &[u8], offset: u64) -> Result<u16, String> {
    bytes_at(image, offset).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], offset: u64) -> Result<u32, String> {
    bytes_at(image, offset).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], offset: u64) -> Result<u64, String> {
    bytes_at(image, offset).map(u64::from_le_bytes)
}

/// Parses the ELF header and PT_LOAD program headers (ELF-64 Object File Format 1.5, and the
/// System V ABI AMD64 supplement for the machine number).
fn parse(image: &[u8]) -> Result<Image, String> {
    let ident: [u8; 7] = bytes_at(image, 0)?;
    if ident != [0x7f, b'E', b'L', b'F', 2, 1, 1] {
        return Err(format!("not a little-endian ELF64 (ident {ident:02x?})"));
    }
    let kind = u16_at(image, 16)?;
    if kind != ET_EXEC {
        return Err(format!("e_type is {kind}, expected ET_EXEC"));
    }
    let machine = u16_at(image, 18)?;
    if machine != EM_X86_64 {
        return Err(format!("e_machine is {machine}, expected EM_X86_64"));
    }
    let entry = u64_at(image, 24)?;
    let program_headers = u64_at(image, 32)?;
    let entry_size = u64::from(u16_at(image, 54)?);
    let count = u64::from(u16_at(image, 56)?);
    if entry_size != 56 {
        return Err(format!("e_phentsize is {entry_size}, expected 56"));
    }
    let mut segments = Vec::new();
    for index in 0..count {
        let header = program_headers + index * entry_size;
        if u32_at(image, header)? != PT_LOAD {
            continue;
        }
        segments.push(Segment {
            flags: u32_at(image, header + 4)?,
            offset: u64_at(image, header + 8)?,
            virtual_address: u64_at(image, header + 16)?,
            physical_address: u64_at(image, header + 24)?,
            file_size: u64_at(image, header + 32)?,
            memory_size: u64_at(image, header + 40)?,
        });
    }
    Ok(Image { entry, segments })
}

fn file_bytes<'a>(image: &'a [u8], segment: &Segment) -> Result<&'a [u8], String> {
    let start = usize::try_from(segment.offset).map_err(|e| e.to_string())?;
    let length = usize::try_from(segment.file_size).map_err(|e| e.to_string())?;
    image.get(start..start + length).ok_or_else(|| {
        format!(
            "segment at {:#x} extends past the file",
            segment.physical_address
        )
    })
}

/// Checks everything README.md promises about the image; returns the parsed image.
fn validate(bytes: &[u8]) -> Result<Image, String> {
    let image = parse(bytes)?;
    if image.entry != REAL_MODE_ENTRY.0 {
        return Err(format!(
            "entry point is {:#x}, README.md documents {:#x}",
            image.entry, REAL_MODE_ENTRY.0
        ));
    }
    if image.segments.is_empty() {
        return Err("no PT_LOAD segments".into());
    }
    let mut sorted = image.segments.clone();
    sorted.sort_by_key(|segment| segment.physical_address);
    for segment in &sorted {
        let at = segment.physical_address;
        if segment.virtual_address != at {
            return Err(format!(
                "segment at {at:#x} has p_vaddr {:#x} != p_paddr",
                segment.virtual_address
            ));
        }
        if segment.file_size > segment.memory_size {
            return Err(format!("segment at {at:#x} has p_filesz > p_memsz"));
        }
        if at < PARAMETERS_ADDRESS.0 || segment.end() > IMAGE_LIMIT.0 {
            return Err(format!(
                "segment [{at:#x}, {:#x}) lies outside [{:#x}, {:#x})",
                segment.end(),
                PARAMETERS_ADDRESS.0,
                IMAGE_LIMIT.0
            ));
        }
        if at < IMAGE_BASE.0 && segment.end() > BOOT_END.0 {
            return Err(format!(
                "low segment [{at:#x}, {:#x}) extends past {:#x}",
                segment.end(),
                BOOT_END.0
            ));
        }
        file_bytes(bytes, segment)?;
    }
    for pair in sorted.windows(2) {
        if pair[0].end() > pair[1].physical_address {
            return Err(format!(
                "segments at {:#x} and {:#x} overlap",
                pair[0].physical_address, pair[1].physical_address
            ));
        }
    }

    let parameters_segment = sorted
        .iter()
        .find(|segment| segment.physical_address == PARAMETERS_ADDRESS.0)
        .ok_or("no segment starts at the parameter block's address")?;
    if parameters_segment.file_size != BLOCK_BYTES as u64 || parameters_segment.flags & PF_W == 0 {
        return Err("the parameter block segment is not one writable page of file data".into());
    }
    let block = file_bytes(bytes, parameters_segment)?;
    let defaults =
        parameters::decode(block).map_err(|error| format!("default parameter block: {error}"))?;
    if defaults.mode != Mode::Checks || !defaults.command_line.is_empty() {
        return Err(format!(
            "default parameters are {defaults:?}, expected an empty command line"
        ));
    }

    let boot = sorted
        .iter()
        .find(|segment| segment.contains(image.entry))
        .ok_or("no segment holds the entry point")?;
    if boot.physical_address != REAL_MODE_ENTRY.0 || boot.flags & PF_X == 0 {
        return Err("the entry point is not the start of an executable segment".into());
    }
    let first = file_bytes(bytes, boot)?.first().copied();
    if first != Some(CLI) {
        return Err(format!(
            "first instruction byte is {first:02x?}, expected CLI (fa)"
        ));
    }
    if !sorted
        .iter()
        .any(|segment| segment.physical_address == IMAGE_BASE.0 && segment.flags & PF_X != 0)
    {
        return Err(format!(
            "no executable segment starts at {:#x}",
            IMAGE_BASE.0
        ));
    }
    Ok(image)
}

fn built_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = match std::env::var_os("GUEST_PROBE_ELF") {
            Some(path) => PathBuf::from(path),
            None => {
                let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-image");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args([
                        "build",
                        "--release",
                        "--target",
                        "x86_64-unknown-none",
                        "--bin",
                        "guest-probe",
                    ])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .env("CARGO_TARGET_DIR", &target_dir)
                    .status()
                    .expect("cargo runs");
                assert!(
                    status.success(),
                    "building the guest image failed: {status}"
                );
                target_dir.join("x86_64-unknown-none/release/guest-probe")
            }
        };
        std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    })
}

fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn program_header_offset(bytes: &[u8], physical_address: u64) -> usize {
    let table = u64_at(bytes, 32).unwrap() as usize;
    let count = u16_at(bytes, 56).unwrap() as usize;
    (0..count)
        .map(|index| table + index * 56)
        .find(|&header| u64_at(bytes, header as u64 + 24).unwrap() == physical_address)
        .expect("segment present")
}

#[test]
fn built_image_matches_the_documented_layout() {
    let image = validate(built_image()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(image.entry, 0x8000);
    let starts: Vec<u64> = image
        .segments
        .iter()
        .map(|segment| segment.physical_address)
        .collect();
    assert!(starts.contains(&0x7000), "{starts:x?}");
    assert!(starts.contains(&0x10_0000), "{starts:x?}");
}

#[test]
fn validation_rejects_a_moved_entry_point() {
    let mut bytes = built_image().to_vec();
    put_u64(&mut bytes, 24, 0x7c00);
    let error = validate(&bytes).unwrap_err();
    assert!(error.contains("entry point is 0x7c00"), "{error}");
}

#[test]
fn validation_rejects_a_segment_loaded_elsewhere() {
    let mut bytes = built_image().to_vec();
    let header = program_header_offset(&bytes, IMAGE_BASE.0);
    put_u64(&mut bytes, header + 24, 0x20_0000);
    let error = validate(&bytes).unwrap_err();
    assert!(error.contains("p_vaddr"), "{error}");
    put_u64(&mut bytes, header + 16, 0x20_0000);
    let error = validate(&bytes).unwrap_err();
    assert!(error.contains("outside"), "{error}");
}

#[test]
fn validation_rejects_a_bad_parameter_block_and_non_elf_files() {
    let mut bytes = built_image().to_vec();
    let header = program_header_offset(&bytes, PARAMETERS_ADDRESS.0);
    let block = u64_at(&bytes, header as u64 + 8).unwrap() as usize;
    bytes[block] ^= 0xff;
    let error = validate(&bytes).unwrap_err();
    assert!(error.contains("magic"), "{error}");
    assert!(validate(b"\x7fELF").is_err());
    assert!(validate(&[]).is_err());
}
