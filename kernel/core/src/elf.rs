//! ELF64 executables (System V ABI, AMD64 supplement; ELF header and program headers, gABI
//! chapters 4 and 5): the loadable segments of a user program, checked against the file and
//! the user address range before anything is mapped.

use crate::bytes::{u16_at, u32_at, u64_at};

/// Most loadable segments a program may have.
pub const MAX_SEGMENTS: usize = 8;

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, or not 64-bit little-endian x86-64.
    NotElf64,
    /// Not an executable (ET_EXEC).
    NotExecutable,
    /// A header or segment lies outside the file.
    Truncated,
    /// A segment lies outside the user range, overflows, or has file size above memory size.
    BadSegment { index: usize },
    /// Two loadable segments share a page.
    Overlap,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// The entry point is not inside an executable segment.
    BadEntry,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => write!(f, "not a 64-bit little-endian x86-64 ELF file"),
            ElfError::NotExecutable => write!(f, "not an executable (ET_EXEC)"),
            ElfError::Truncated => write!(f, "header or segment outside the file"),
            ElfError::BadSegment { index } => {
                write!(f, "segment {index} outside the user range or malformed")
            }
            ElfError::Overlap => write!(f, "loadable segments share a page"),
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::BadEntry => write!(f, "entry point outside every executable segment"),
        }
    }
}

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub virtual_address: u64,
    pub memory_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// The page-aligned virtual range the segment occupies.
    pub fn pages(&self) -> (u64, u64) {
        let start = self.virtual_address & !0xfff;
        let end = (self.virtual_address + self.memory_size).next_multiple_of(0x1000);
        (start, end)
    }
}

/// A checked executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    pub entry: u64,
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

impl Executable {
    /// Checks `image` and lists its loadable segments, which must lie in `[user_start, user_end)`.
    pub fn parse(image: &[u8], user_start: u64, user_end: u64) -> Result<Self, ElfError> {
        if image.get(..4) != Some(b"\x7fELF".as_slice())
            || image.get(4) != Some(&2)
            || image.get(5) != Some(&1)
        {
            return Err(ElfError::NotElf64);
        }
        if u16_at(image, 18) != Some(62) {
            return Err(ElfError::NotElf64);
        }
        if u16_at(image, 16) != Some(2) {
            return Err(ElfError::NotExecutable);
        }
        let entry = u64_at(image, 24).ok_or(ElfError::Truncated)?;
        let table = u64_at(image, 32).ok_or(ElfError::Truncated)?;
        let entry_size = u64::from(u16_at(image, 54).ok_or(ElfError::Truncated)?);
        let count = u64::from(u16_at(image, 56).ok_or(ElfError::Truncated)?);
        if entry_size < 56 {
            return Err(ElfError::Truncated);
        }
        let mut segments: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
        for index in 0..count {
            let at = index
                .checked_mul(entry_size)
                .and_then(|o| o.checked_add(table))
                .ok_or(ElfError::Truncated)?;
            let at = usize::try_from(at).map_err(|_| ElfError::Truncated)?;
            let header = image
                .get(at..at.checked_add(56).ok_or(ElfError::Truncated)?)
                .ok_or(ElfError::Truncated)?;
            if u32_at(header, 0) != Some(PT_LOAD) {
                continue;
            }
            let flags = u32_at(header, 4).unwrap_or(0);
            let segment = Segment {
                file_offset: u64_at(header, 8).unwrap_or(0),
                virtual_address: u64_at(header, 16).unwrap_or(0),
                file_size: u64_at(header, 32).unwrap_or(0),
                memory_size: u64_at(header, 40).unwrap_or(0),
                writable: flags & PF_W != 0,
                executable: flags & PF_X != 0,
            };
            let index = segments.len();
            let bad = ElfError::BadSegment { index };
            let end = segment
                .virtual_address
                .checked_add(segment.memory_size)
                .ok_or(bad)?;
            let file_end = segment
                .file_offset
                .checked_add(segment.file_size)
                .ok_or(bad)?;
            if segment.file_size > segment.memory_size
                || segment.memory_size == 0
                || segment.virtual_address < user_start
                || end > user_end
            {
                return Err(bad);
            }
            if file_end > image.len() as u64 {
                return Err(ElfError::Truncated);
            }
            let (start, stop) = segment.pages();
            if segments.iter().any(|s| {
                let (a, b) = s.pages();
                a < stop && start < b
            }) {
                return Err(ElfError::Overlap);
            }
            segments
                .push(segment)
                .map_err(|_| ElfError::TooManySegments)?;
        }
        let entry_ok = segments.iter().any(|s| {
            s.executable && s.virtual_address <= entry && entry < s.virtual_address + s.memory_size
        });
        if !entry_ok {
            return Err(ElfError::BadEntry);
        }
        Ok(Executable { entry, segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: (u64, u64) = (0x4000_0000, 0x8000_0000_0000);

    /// A minimal executable: header, program headers for (vaddr, filesz, memsz, flags), data.
    fn image(entry: u64, segments: &[(u64, u64, u64, u32)]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let data_start = 64 + 56 * segments.len() as u64;
        let mut offset = data_start;
        for (vaddr, filesz, memsz, flags) in segments {
            let mut header = vec![0u8; 56];
            header[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            header[4..8].copy_from_slice(&flags.to_le_bytes());
            header[8..16].copy_from_slice(&offset.to_le_bytes());
            header[16..24].copy_from_slice(&vaddr.to_le_bytes());
            header[32..40].copy_from_slice(&filesz.to_le_bytes());
            header[40..48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&header);
            offset += filesz;
        }
        out.resize(offset as usize, 0xcc);
        out
    }

    #[test]
    fn accepts_a_text_and_bss_program() {
        let elf = image(
            0x4000_1000,
            &[
                (0x4000_1000, 0x200, 0x200, PF_X | 4),
                (0x4000_3000, 0x10, 0x2000, PF_W | 4),
            ],
        );
        let exe = Executable::parse(&elf, USER.0, USER.1).expect("valid");
        assert_eq!(exe.entry, 0x4000_1000);
        assert_eq!(exe.segments.len(), 2);
        assert!(exe.segments[0].executable && !exe.segments[0].writable);
        assert_eq!(exe.segments[1].pages(), (0x4000_3000, 0x4000_5000));
    }

    #[test]
    fn refuses_kernel_addresses_overlaps_bad_entries_and_truncation() {
        let low = image(0x10_0000, &[(0x10_0000, 0x10, 0x10, PF_X)]);
        assert_eq!(
            Executable::parse(&low, USER.0, USER.1),
            Err(ElfError::BadSegment { index: 0 })
        );
        let overlap = image(
            0x4000_0000,
            &[
                (0x4000_0000, 0x10, 0x10, PF_X),
                (0x4000_0800, 0x10, 0x10, PF_W),
            ],
        );
        assert_eq!(
            Executable::parse(&overlap, USER.0, USER.1),
            Err(ElfError::Overlap)
        );
        let entry = image(0x5000_0000, &[(0x4000_0000, 0x10, 0x10, PF_X)]);
        assert_eq!(
            Executable::parse(&entry, USER.0, USER.1),
            Err(ElfError::BadEntry)
        );
        let data_entry = image(0x4000_0000, &[(0x4000_0000, 0x10, 0x10, PF_W)]);
        assert_eq!(
            Executable::parse(&data_entry, USER.0, USER.1),
            Err(ElfError::BadEntry)
        );
        let mut short = image(0x4000_0000, &[(0x4000_0000, 0x100, 0x100, PF_X)]);
        short.truncate(short.len() - 1);
        assert_eq!(
            Executable::parse(&short, USER.0, USER.1),
            Err(ElfError::Truncated)
        );
        let wrap = image(0x4000_0000, &[(u64::MAX - 10, 0, 0x100, PF_X)]);
        assert_eq!(
            Executable::parse(&wrap, USER.0, USER.1),
            Err(ElfError::BadSegment { index: 0 })
        );
        assert_eq!(
            Executable::parse(b"\x7fELF", USER.0, USER.1),
            Err(ElfError::NotElf64)
        );
    }

    proptest::proptest! {
        #[test]
        fn random_images_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = Executable::parse(&bytes, USER.0, USER.1);
        }

        #[test]
        fn accepted_segments_stay_in_the_user_range(vaddr in 0u64..0x9000_0000_0000, size in 1u64..0x10_0000) {
            let elf = image(vaddr, &[(vaddr, 0, size, PF_X)]);
            if let Ok(exe) = Executable::parse(&elf, USER.0, USER.1) {
                for s in &exe.segments {
                    proptest::prop_assert!(s.virtual_address >= USER.0);
                    proptest::prop_assert!(s.virtual_address + s.memory_size <= USER.1);
                }
            }
        }
    }
}
