//! BAR and expansion-ROM sizing (PCIe Base spec 6.0 section 7.5.1.2.1; PCI Local Bus spec 3.0
//! section 6.2.5.1): memory and I/O decode are turned off while all-ones are written, and every
//! register, the command register included, is restored afterwards.

use crate::registers::{header, type0, type1, Command};
use crate::ConfigSpace;
use core::fmt;
use pci_api::Bdf;

/// What kind of window a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32,
    /// 64-bit memory BAR (takes two registers).
    Memory64,
    /// Legacy "below 1 MiB" memory BAR (type 01b, conventional PCI only).
    MemoryBelow1M,
    /// I/O port BAR.
    Io,
    /// Expansion ROM.
    ExpansionRom,
}

/// One sized BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Register index (0..=5), or 6 for the expansion ROM. For a 64-bit BAR, the low half.
    pub index: u8,
    /// Kind.
    pub kind: BarKind,
    /// Prefetchable (memory BARs only).
    pub prefetchable: bool,
    /// Address programmed by firmware.
    pub address: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

/// Register index used for the expansion ROM in [`Bar::index`].
pub const ROM_INDEX: u8 = 6;

/// An odd BAR found while sizing (the BAR is skipped or sized as Linux would).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarIssue {
    /// A 64-bit BAR in the last register, with no upper half.
    Memory64InLastSlot {
        /// Register index.
        index: u8,
    },
    /// Memory type 11b, reserved.
    ReservedMemoryType {
        /// Register index.
        index: u8,
    },
    /// The size mask has holes (`ffff0f00`-like); sized from its lowest set bit.
    NonContiguousMask {
        /// Register index.
        index: u8,
    },
    /// The register read all-ones before sizing (function gone or broken).
    ReadsAllOnes {
        /// Register index.
        index: u8,
    },
}

impl fmt::Display for BarIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarIssue::Memory64InLastSlot { index } => {
                write!(f, "BAR{index}: 64-bit BAR in the last register")
            }
            BarIssue::ReservedMemoryType { index } => write!(f, "BAR{index}: reserved memory type"),
            BarIssue::NonContiguousMask { index } => {
                write!(f, "BAR{index}: size mask has holes")
            }
            BarIssue::ReadsAllOnes { index } => write!(f, "BAR{index}: reads all-ones"),
        }
    }
}

/// The BARs of one function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bars {
    /// Implemented BARs, in register order.
    pub bars: heapless::Vec<Bar, 6>,
    /// The expansion ROM, when implemented.
    pub rom: Option<Bar>,
    /// Oddities.
    pub issues: heapless::Vec<BarIssue, 6>,
}

/// Offset of BAR `index` in a standard header.
pub const fn bar_offset(index: u8) -> u16 {
    header::BAR0 + 4 * index as u16
}

/// Writes all-ones to the 32-bit register at `offset`, reads the result, restores the original.
fn probe<C: ConfigSpace + ?Sized>(config: &mut C, bdf: Bdf, offset: u16, ones: u32) -> (u32, u32) {
    let original = config.read32(bdf, offset);
    config.write32(bdf, offset, ones);
    let mask = config.read32(bdf, offset);
    config.write32(bdf, offset, original);
    (original, mask)
}

/// Size from a mask of writable address bits: its lowest set bit (as Linux's `pci_size`).
fn size_of_mask(mask: u64) -> u64 {
    mask & mask.wrapping_neg()
}

/// True when the address bits above the lowest set bit are all ones (a well-formed BAR).
fn contiguous(mask: u64, address_bits: u64) -> bool {
    let size = size_of_mask(mask);
    mask == (address_bits & !(size - 1))
}

/// Sizes the BAR registers `first..first + count` of a register block starting at `base`
/// (the header's BARs, or the SR-IOV VF BARs). Decode must already be off.
pub(crate) fn size_bar_block<C: ConfigSpace + ?Sized>(
    config: &mut C,
    bdf: Bdf,
    base: u16,
    count: u8,
    result: &mut Bars,
) {
    let mut index = 0u8;
    while index < count {
        let offset = base + 4 * u16::from(index);
        let this = index;
        index += 1;
        let (original, mask) = probe(config, bdf, offset, 0xffff_ffff);
        if original == 0xffff_ffff {
            let _ = result.issues.push(BarIssue::ReadsAllOnes { index: this });
            continue;
        }
        if original & 1 == 1 {
            // I/O BAR: bits 31:2 are the address (upper 16 may be hard-wired zero).
            let address_bits = u64::from(mask & 0xffff_fffc);
            if address_bits == 0 {
                continue;
            }
            let bits = if mask & 0xffff_0000 == 0 {
                0xfffc
            } else {
                0xffff_fffc
            };
            if !contiguous(address_bits, bits) {
                let _ = result
                    .issues
                    .push(BarIssue::NonContiguousMask { index: this });
            }
            let _ = result.bars.push(Bar {
                index: this,
                kind: BarKind::Io,
                prefetchable: false,
                address: u64::from(original & 0xffff_fffc),
                size: size_of_mask(address_bits),
            });
            continue;
        }
        let prefetchable = original & 0x8 != 0;
        let (kind, address, address_bits, all_bits) = match (original >> 1) & 0x3 {
            0 => (
                BarKind::Memory32,
                u64::from(original & 0xffff_fff0),
                u64::from(mask & 0xffff_fff0),
                0xffff_fff0u64,
            ),
            1 => (
                BarKind::MemoryBelow1M,
                u64::from(original & 0xffff_fff0),
                u64::from(mask & 0xffff_fff0),
                0xffff_fff0u64,
            ),
            2 => {
                if index >= count {
                    let _ = result
                        .issues
                        .push(BarIssue::Memory64InLastSlot { index: this });
                    continue;
                }
                let (original_high, mask_high) = probe(config, bdf, offset + 4, 0xffff_ffff);
                index += 1;
                (
                    BarKind::Memory64,
                    (u64::from(original_high) << 32) | u64::from(original & 0xffff_fff0),
                    (u64::from(mask_high) << 32) | u64::from(mask & 0xffff_fff0),
                    0xffff_ffff_ffff_fff0u64,
                )
            }
            _ => {
                let _ = result
                    .issues
                    .push(BarIssue::ReservedMemoryType { index: this });
                continue;
            }
        };
        if address_bits == 0 {
            continue;
        }
        if !contiguous(address_bits, all_bits) {
            let _ = result
                .issues
                .push(BarIssue::NonContiguousMask { index: this });
        }
        let _ = result.bars.push(Bar {
            index: this,
            kind,
            prefetchable,
            address,
            size: size_of_mask(address_bits),
        });
    }
}

/// Sizes every BAR and the expansion ROM of `bdf` for its header layout (`header_type` is the
/// layout field, bit 7 cleared). Memory and I/O decode are disabled during sizing and the
/// command register is restored afterwards.
pub fn size_bars<C: ConfigSpace + ?Sized>(config: &mut C, bdf: Bdf, header_type: u8) -> Bars {
    let mut result = Bars::default();
    let (count, rom_offset) = match header_type {
        header::TYPE_ENDPOINT => (type0::BAR_COUNT, Some(type0::EXPANSION_ROM)),
        header::TYPE_BRIDGE => (type1::BAR_COUNT, Some(type1::EXPANSION_ROM)),
        header::TYPE_CARDBUS => (1, None),
        _ => return result,
    };
    let command = config.read16(bdf, header::COMMAND);
    let quiet = Command::from_bits_retain(command) - (Command::IO_SPACE | Command::MEMORY_SPACE);
    config.write16(bdf, header::COMMAND, quiet.bits());

    size_bar_block(config, bdf, header::BAR0, count, &mut result);

    if let Some(offset) = rom_offset {
        // Expansion ROM: address bits 31:11, enable bit 0 (kept clear while sizing).
        let (original, mask) = probe(config, bdf, offset, 0xffff_f800);
        let address_bits = u64::from(mask & 0xffff_f800);
        if original != 0xffff_ffff && address_bits != 0 {
            result.rom = Some(Bar {
                index: ROM_INDEX,
                kind: BarKind::ExpansionRom,
                prefetchable: false,
                address: u64::from(original & 0xffff_f800),
                size: size_of_mask(address_bits),
            });
        }
    }

    config.write16(bdf, header::COMMAND, command);
    result
}
