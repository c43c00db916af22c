//! Guest memory as the VMM sees it: a [`GuestMemory`] trait to read guest-physical bytes, the
//! guest page walk (4-level paging with 1 GiB and 2 MiB pages, 32-bit paging with 4 MiB pages,
//! or none) to turn a guest linear address into a guest-physical one, and instruction fetch at
//! CS:RIP for the emulators.
use core::fmt;

use sluice_abi::vcpu::{GuestPhys, Mtd, VcpuState};

/// Why guest memory could not be read or translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// No RAM backs this guest-physical address.
    Unmapped(GuestPhys),
    /// A paging-structure entry on the walk is not present.
    NotPresent {
        /// The linear address being translated.
        linear: u64,
        /// Level of the entry (4 = PML4E ... 1 = PTE).
        level: u8,
    },
    /// A reserved bit is set in a paging-structure entry (e.g. PS in a PML4E).
    ReservedBit {
        /// The linear address being translated.
        linear: u64,
        /// Level of the entry.
        level: u8,
    },
    /// A 64-bit linear address that is not canonical (SDM Vol. 3A section 3.3.7.1).
    NonCanonical(u64),
    /// PAE without long mode, or 5-level paging: not implemented.
    UnsupportedPagingMode,
    /// The exit message lacks state the operation needs.
    MissingState(Mtd),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Unmapped(address) => {
                write!(f, "guest-physical {:#x} is not backed by RAM", address.0)
            }
            MemoryError::NotPresent { linear, level } => {
                write!(
                    f,
                    "linear {linear:#x}: level-{level} paging entry not present"
                )
            }
            MemoryError::ReservedBit { linear, level } => {
                write!(
                    f,
                    "linear {linear:#x}: reserved bit in level-{level} paging entry"
                )
            }
            MemoryError::NonCanonical(linear) => write!(f, "linear {linear:#x} is not canonical"),
            MemoryError::UnsupportedPagingMode => {
                f.write_str("guest paging mode (PAE or 5-level) is not supported")
            }
            MemoryError::MissingState(mtd) => {
                write!(f, "exit message lacks state groups {:#x}", mtd.bits())
            }
        }
    }
}

/// Read access to guest-physical memory.
pub trait GuestMemory {
    /// Fills `buffer` from guest-physical `address`; fails if any byte is not RAM.
    fn read_physical(&self, address: GuestPhys, buffer: &mut [u8]) -> Result<(), MemoryError>;
}

/// Guest RAM as one contiguous byte slice starting at a guest-physical base.
pub struct SliceMemory<'a> {
    base: GuestPhys,
    bytes: &'a [u8],
}

impl<'a> SliceMemory<'a> {
    /// `bytes` appear at guest-physical `base`.
    pub const fn new(base: GuestPhys, bytes: &'a [u8]) -> Self {
        SliceMemory { base, bytes }
    }

    /// No RAM at all.
    pub const fn empty() -> SliceMemory<'static> {
        SliceMemory {
            base: GuestPhys(0),
            bytes: &[],
        }
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read_physical(&self, address: GuestPhys, buffer: &mut [u8]) -> Result<(), MemoryError> {
        let source = address
            .0
            .checked_sub(self.base.0)
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|start| Some(start..start.checked_add(buffer.len())?))
            .and_then(|range| self.bytes.get(range))
            .ok_or(MemoryError::Unmapped(address))?;
        buffer.copy_from_slice(source);
        Ok(())
    }
}

/// CR0.PE, CR0.PG (SDM Vol. 3A section 2.5).
const CR0_PROTECTION_ENABLE: u64 = 1 << 0;
const CR0_PAGING: u64 = 1 << 31;
/// CR4.PSE, CR4.PAE, CR4.LA57 (SDM Vol. 3A section 2.5).
const CR4_PAGE_SIZE_EXTENSIONS: u64 = 1 << 4;
const CR4_PHYSICAL_ADDRESS_EXTENSION: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
/// IA32_EFER.LMA (SDM Vol. 3A section 2.2.1).
const EFER_LONG_MODE_ACTIVE: u64 = 1 << 10;
/// Paging-entry bits (SDM Vol. 3A section 4.5, Tables 4-15 to 4-20).
const ENTRY_PRESENT: u64 = 1 << 0;
const ENTRY_PAGE_SIZE: u64 = 1 << 7;
/// Physical-address bits 51:12 of an entry.
const ENTRY_ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The guest's paging mode, from CR0, CR4 and EFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG = 0: linear = physical.
    None,
    /// 32-bit paging (SDM Vol. 3A section 4.3).
    Bits32,
    /// 4-level paging (SDM Vol. 3A section 4.5).
    Level4,
    /// PAE or 5-level paging: not walked.
    Unsupported,
}

impl PagingMode {
    /// The mode described by the exit state (needs [`Mtd::CONTROL_REGISTERS`] and [`Mtd::EFER`]).
    pub fn of(state: &VcpuState) -> Result<PagingMode, MemoryError> {
        let needed = Mtd::CONTROL_REGISTERS | Mtd::EFER;
        if !state.mtd.contains(needed) {
            return Err(MemoryError::MissingState(needed.difference(state.mtd)));
        }
        Ok(
            if state.cr0 & CR0_PAGING == 0 || state.cr0 & CR0_PROTECTION_ENABLE == 0 {
                PagingMode::None
            } else if state.cr4 & CR4_PHYSICAL_ADDRESS_EXTENSION == 0 {
                PagingMode::Bits32
            } else if state.efer & EFER_LONG_MODE_ACTIVE != 0 && state.cr4 & CR4_LA57 == 0 {
                PagingMode::Level4
            } else {
                PagingMode::Unsupported
            },
        )
    }
}

fn read_entry<M: GuestMemory + ?Sized>(
    memory: &M,
    address: u64,
    size: usize,
) -> Result<u64, MemoryError> {
    let mut bytes = [0u8; 8];
    let buffer = bytes
        .get_mut(..size)
        .ok_or(MemoryError::UnsupportedPagingMode)?;
    memory.read_physical(GuestPhys(address), buffer)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Translates a guest linear address to guest-physical by walking the guest's page tables
/// rooted at CR3. Access rights are not checked: the VMM only reads what the guest's CPU already
/// accessed.
pub fn translate<M: GuestMemory + ?Sized>(
    memory: &M,
    state: &VcpuState,
    linear: u64,
) -> Result<GuestPhys, MemoryError> {
    match PagingMode::of(state)? {
        PagingMode::None => Ok(GuestPhys(linear)),
        PagingMode::Bits32 => walk_32bit(memory, state, linear),
        PagingMode::Level4 => walk_4level(memory, state.cr3, linear),
        PagingMode::Unsupported => Err(MemoryError::UnsupportedPagingMode),
    }
}

fn walk_4level<M: GuestMemory + ?Sized>(
    memory: &M,
    cr3: u64,
    linear: u64,
) -> Result<GuestPhys, MemoryError> {
    // Bits 63:47 must all equal bit 47.
    let sign = (linear as i64) >> 47;
    if sign != 0 && sign != -1 {
        return Err(MemoryError::NonCanonical(linear));
    }
    let mut table = cr3 & ENTRY_ADDRESS;
    for level in (1..=4u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let index = (linear >> shift) & 0x1ff;
        let entry = read_entry(memory, table + index * 8, 8)?;
        if entry & ENTRY_PRESENT == 0 {
            return Err(MemoryError::NotPresent { linear, level });
        }
        let large = entry & ENTRY_PAGE_SIZE != 0 && level > 1;
        if large && level == 4 {
            return Err(MemoryError::ReservedBit { linear, level });
        }
        if large || level == 1 {
            // A page of 2^shift bytes: 1 GiB at level 3, 2 MiB at level 2, 4 KiB at level 1.
            let offset_mask = (1u64 << shift) - 1;
            return Ok(GuestPhys(
                (entry & ENTRY_ADDRESS & !offset_mask) | (linear & offset_mask),
            ));
        }
        table = entry & ENTRY_ADDRESS;
    }
    Err(MemoryError::UnsupportedPagingMode)
}

fn walk_32bit<M: GuestMemory + ?Sized>(
    memory: &M,
    state: &VcpuState,
    linear: u64,
) -> Result<GuestPhys, MemoryError> {
    let linear = linear & 0xffff_ffff;
    let directory_entry = read_entry(memory, (state.cr3 & 0xffff_f000) + (linear >> 22) * 4, 4)?;
    if directory_entry & ENTRY_PRESENT == 0 {
        return Err(MemoryError::NotPresent { linear, level: 2 });
    }
    if directory_entry & ENTRY_PAGE_SIZE != 0 && state.cr4 & CR4_PAGE_SIZE_EXTENSIONS != 0 {
        // 4 MiB page; PSE-36 bits 20:13 give physical bits 39:32 (SDM Vol. 3A Table 4-4).
        let high = (directory_entry >> 13 & 0xff) << 32;
        return Ok(GuestPhys(
            high | (directory_entry & 0xffc0_0000) | (linear & 0x3f_ffff),
        ));
    }
    let table = directory_entry & 0xffff_f000;
    let table_entry = read_entry(memory, table + (linear >> 12 & 0x3ff) * 4, 4)?;
    if table_entry & ENTRY_PRESENT == 0 {
        return Err(MemoryError::NotPresent { linear, level: 1 });
    }
    Ok(GuestPhys((table_entry & 0xffff_f000) | (linear & 0xfff)))
}

/// Longest x86 instruction (SDM Vol. 2A section 2.3.11).
pub const MAX_INSTRUCTION_BYTES: usize = 15;

/// Reads up to 15 instruction bytes at CS:RIP into `buffer` and returns how many were read
/// (fewer when the instruction ends near a page that is not mapped). Needs RIP, CS and the
/// paging state.
pub fn fetch_instruction<M: GuestMemory + ?Sized>(
    memory: &M,
    state: &VcpuState,
    buffer: &mut [u8; MAX_INSTRUCTION_BYTES],
) -> Result<usize, MemoryError> {
    let needed = Mtd::RIP | Mtd::SEGMENT_CS_SS;
    if !state.mtd.contains(needed) {
        return Err(MemoryError::MissingState(needed.difference(state.mtd)));
    }
    let long_mode = state.efer & EFER_LONG_MODE_ACTIVE != 0 && state.cs.attributes.long_mode();
    let start = if long_mode {
        state.rip
    } else {
        // Outside 64-bit mode the linear address is CS.base + EIP/IP, wrapping at 4 GiB.
        state.cs.base.wrapping_add(state.rip) & 0xffff_ffff
    };
    let mut fetched = 0;
    while fetched < MAX_INSTRUCTION_BYTES {
        let linear = start.wrapping_add(fetched as u64);
        let physical = match translate(memory, state, linear) {
            Ok(physical) => physical,
            Err(error) if fetched == 0 => return Err(error),
            Err(_) => break,
        };
        let in_page = 0x1000 - (physical.0 & 0xfff) as usize;
        let count = in_page.min(MAX_INSTRUCTION_BYTES - fetched);
        let target = buffer
            .get_mut(fetched..fetched + count)
            .ok_or(MemoryError::Unmapped(physical))?;
        match memory.read_physical(physical, target) {
            Ok(()) => fetched += count,
            Err(error) if fetched == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok(fetched)
}
