//! Second-level page tables of one DMA domain (VT-d spec 9.8, "second-level paging entries").
//!
//! 3, 4 or 5 levels (from SAGAW), 4 KiB leaves and 2 MiB / 1 GiB superpages where CAP.SLLPS
//! allows. A map either fully succeeds or changes nothing: it checks the range is free, counts
//! the tables it will need and reserves them before writing a single entry. Unmap clears leaves
//! and detaches tables that became empty; those frames wait in a pending list until the caller
//! shows an [`IotlbFlushed`] proof, because the hardware may still walk them from its caches.

use crate::invalidation::IotlbFlushed;
use crate::memory::{allocate_zeroed, is_page_aligned, FrameAllocator, PhysMemory, PAGE_SIZE};
use crate::registers::capability::PagingLevels;
use crate::DomainId;
use iommu_api::{HostPhys, IoVirt, IommuError, Rights};

/// R, bit 0: read permission (a non-leaf entry with R or W set is present).
pub const ENTRY_READ: u64 = 1 << 0;
/// W, bit 1: write permission.
pub const ENTRY_WRITE: u64 = 1 << 1;
/// PS, bit 7 of a level-2 or level-3 entry: the entry maps a 2 MiB / 1 GiB page.
pub const ENTRY_PAGE_SIZE: u64 = 1 << 7;
/// ADDR, bits 51:12: next table or page frame.
pub const ENTRY_ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// Host-physical addresses must fit the 52-bit ADDR field.
const MAXIMUM_PHYSICAL: u64 = 1 << 52;
/// Frames a single map may need for new tables (covers 4 GiB of 4 KiB pages).
pub const RESERVE_CAPACITY: usize = 1024;
/// Detached tables waiting for an IOTLB flush; beyond this, empty tables stay attached.
pub const PENDING_CAPACITY: usize = 256;

/// Which superpages the unit supports (CAP.SLLPS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargePages {
    /// 2 MiB leaves at level 2.
    pub two_mib: bool,
    /// 1 GiB leaves at level 3.
    pub one_gib: bool,
}

/// Result of a software walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Host-physical address of the translated byte.
    pub address: HostPhys,
    /// Rights of the leaf.
    pub rights: Rights,
    /// Size of the page the leaf maps.
    pub page_size: u64,
}

/// The second-level tables of one domain.
#[derive(Debug)]
pub struct SecondLevelTable {
    root: HostPhys,
    levels: PagingLevels,
    large_pages: LargePages,
    pending_free: heapless::Vec<HostPhys, PENDING_CAPACITY>,
}

const fn shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}
const fn span(level: u8) -> u64 {
    1u64 << shift(level)
}
fn slot(table: HostPhys, iova: u64, level: u8) -> HostPhys {
    HostPhys(table.0 + ((iova >> shift(level)) & 0x1ff) * 8)
}
fn is_present(entry: u64) -> bool {
    entry & (ENTRY_READ | ENTRY_WRITE) != 0
}
fn is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || entry & ENTRY_PAGE_SIZE != 0
}
fn rights_bits(rights: Rights) -> u64 {
    let mut bits = 0;
    if rights.contains(Rights::READ) {
        bits |= ENTRY_READ;
    }
    if rights.contains(Rights::WRITE) {
        bits |= ENTRY_WRITE;
    }
    bits
}

impl SecondLevelTable {
    /// An empty table tree (one zeroed root frame).
    pub fn new<M: PhysMemory, A: FrameAllocator>(
        memory: &mut M,
        frames: &mut A,
        levels: PagingLevels,
        large_pages: LargePages,
    ) -> Result<Self, IommuError> {
        let root = allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory)?;
        Ok(Self {
            root,
            levels,
            large_pages,
            pending_free: heapless::Vec::new(),
        })
    }

    /// The top-level table (SLPTPTR of the context entry).
    pub fn root(&self) -> HostPhys {
        self.root
    }

    /// Paging depth.
    pub fn levels(&self) -> PagingLevels {
        self.levels
    }

    /// Table frames detached by unmap and not yet released.
    pub fn pending_frames(&self) -> &[HostPhys] {
        &self.pending_free
    }

    fn leaf_allowed(&self, level: u8) -> bool {
        match level {
            1 => true,
            2 => self.large_pages.two_mib,
            3 => self.large_pages.one_gib,
            _ => false,
        }
    }

    /// Checks a range against the domain's address width: aligned, non-empty, no wrap.
    pub fn check_range(&self, iova: IoVirt, size: u64) -> Result<(), IommuError> {
        if size == 0 {
            return Err(IommuError::ZeroSize);
        }
        if !is_page_aligned(iova.0) || !is_page_aligned(size) {
            return Err(IommuError::Misaligned);
        }
        let end = iova
            .0
            .checked_add(size)
            .ok_or(IommuError::AddressOverflow)?;
        if end > 1u64 << self.levels.address_width() {
            return Err(IommuError::AddressBeyondWidth);
        }
        Ok(())
    }

    /// Calls `each(iova, phys, leaf_level)` for the leaves a map of this range would write.
    fn plan(
        &self,
        iova: u64,
        phys: u64,
        size: u64,
        mut each: impl FnMut(u64, u64, u8) -> Result<(), IommuError>,
    ) -> Result<(), IommuError> {
        let mut offset = 0;
        while offset < size {
            let (virtual_address, physical) = (iova + offset, phys + offset);
            let remaining = size - offset;
            let level = [3u8, 2]
                .into_iter()
                .find(|level| {
                    self.leaf_allowed(*level)
                        && virtual_address % span(*level) == 0
                        && physical % span(*level) == 0
                        && remaining >= span(*level)
                })
                .unwrap_or(1);
            each(virtual_address, physical, level)?;
            offset += span(level);
        }
        Ok(())
    }

    /// The leaf entry covering `iova`, with its slot address and level.
    fn find_leaf<M: PhysMemory>(&self, memory: &M, iova: u64) -> Option<(HostPhys, u8, u64)> {
        let mut table = self.root;
        let mut level = self.levels.count();
        loop {
            let address = slot(table, iova, level);
            let entry = memory.read_u64(address);
            if !is_present(entry) {
                return None;
            }
            if is_leaf(entry, level) {
                return Some((address, level, entry));
            }
            table = HostPhys(entry & ENTRY_ADDRESS);
            level -= 1;
        }
    }

    /// Software translation of one address (what the hardware would do, minus faults).
    pub fn translate<M: PhysMemory>(&self, memory: &M, iova: IoVirt) -> Option<Translation> {
        let (_, level, entry) = self.find_leaf(memory, iova.0)?;
        let page_size = span(level);
        let mut rights = Rights::empty();
        if entry & ENTRY_READ != 0 {
            rights |= Rights::READ;
        }
        if entry & ENTRY_WRITE != 0 {
            rights |= Rights::WRITE;
        }
        Some(Translation {
            address: HostPhys((entry & ENTRY_ADDRESS) + iova.0 % page_size),
            rights,
            page_size,
        })
    }

    /// Whether any byte of the range is mapped; skips absent subtrees.
    pub fn is_range_free<M: PhysMemory>(&self, memory: &M, iova: IoVirt, size: u64) -> bool {
        self.range_free_in(
            memory,
            self.root,
            self.levels.count(),
            iova.0,
            iova.0.saturating_add(size),
        )
    }

    fn range_free_in<M: PhysMemory>(
        &self,
        memory: &M,
        table: HostPhys,
        level: u8,
        start: u64,
        end: u64,
    ) -> bool {
        let mut address = start;
        while address < end {
            let entry = memory.read_u64(slot(table, address, level));
            let next = (address & !(span(level) - 1)).saturating_add(span(level));
            if is_present(entry) {
                if is_leaf(entry, level) {
                    return false;
                }
                if !self.range_free_in(
                    memory,
                    HostPhys(entry & ENTRY_ADDRESS),
                    level - 1,
                    address,
                    next.min(end),
                ) {
                    return false;
                }
            }
            address = next;
        }
        true
    }

    /// How many new tables mapping this (free) range would create.
    fn tables_needed<M: PhysMemory>(
        &self,
        memory: &M,
        iova: u64,
        phys: u64,
        size: u64,
    ) -> Result<usize, IommuError> {
        let mut count = 0usize;
        let mut last_virtual: [Option<u64>; 6] = [None; 6];
        self.plan(iova, phys, size, |virtual_address, _, leaf_level| {
            let mut table = Some(self.root);
            let mut level = self.levels.count();
            while level > leaf_level {
                let child = match table {
                    Some(real) => {
                        let entry = memory.read_u64(slot(real, virtual_address, level));
                        is_present(entry).then_some(HostPhys(entry & ENTRY_ADDRESS))
                    }
                    None => None,
                };
                if child.is_none() {
                    let prefix = virtual_address >> shift(level);
                    let remembered = last_virtual
                        .get_mut(usize::from(level - 1))
                        .ok_or(IommuError::UnsupportedHardware)?;
                    if *remembered != Some(prefix) {
                        *remembered = Some(prefix);
                        count += 1;
                    }
                }
                table = child;
                level -= 1;
            }
            Ok(())
        })?;
        Ok(count)
    }

    /// Maps `size` bytes at `iova` to `phys` with `rights`, using superpages where aligned and
    /// supported. Changes nothing on error.
    pub fn map<M: PhysMemory, A: FrameAllocator>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        iova: IoVirt,
        phys: HostPhys,
        size: u64,
        rights: Rights,
    ) -> Result<(), IommuError> {
        self.check_range(iova, size)?;
        if !is_page_aligned(phys.0) {
            return Err(IommuError::Misaligned);
        }
        if rights.is_empty() {
            return Err(IommuError::InvalidRights);
        }
        let physical_end = phys
            .0
            .checked_add(size)
            .ok_or(IommuError::AddressOverflow)?;
        if physical_end > MAXIMUM_PHYSICAL {
            return Err(IommuError::AddressOverflow);
        }
        if !self.is_range_free(memory, iova, size) {
            return Err(IommuError::AlreadyMapped);
        }
        let needed = self.tables_needed(memory, iova.0, phys.0, size)?;
        if needed > RESERVE_CAPACITY {
            return Err(IommuError::MappingLimitReached);
        }
        let mut reserve: heapless::Vec<HostPhys, RESERVE_CAPACITY> = heapless::Vec::new();
        while reserve.len() < needed {
            match frames.allocate_frame() {
                Some(frame) if reserve.push(frame).is_ok() => {}
                Some(frame) => {
                    frames.free_frame(frame);
                    break;
                }
                None => break,
            }
        }
        if reserve.len() < needed {
            // Never visible to the hardware: give them straight back.
            for frame in reserve {
                frames.free_frame(frame);
            }
            return Err(IommuError::OutOfTableMemory);
        }
        // Commit: cannot fail from here on (the reserve covers every new table).
        let leaf_rights = rights_bits(rights);
        let root = self.levels.count();
        let table_root = self.root;
        let _ = self.plan(
            iova.0,
            phys.0,
            size,
            |virtual_address, physical, leaf_level| {
                let mut table = table_root;
                let mut level = root;
                while level > leaf_level {
                    let address = slot(table, virtual_address, level);
                    let entry = memory.read_u64(address);
                    table = if is_present(entry) {
                        HostPhys(entry & ENTRY_ADDRESS)
                    } else {
                        let frame = reserve.pop().ok_or(IommuError::OutOfTableMemory)?;
                        memory.zero_frame(frame);
                        memory.write_u64(address, frame.0 | ENTRY_READ | ENTRY_WRITE);
                        frame
                    };
                    level -= 1;
                }
                let page_size_bit = if leaf_level > 1 { ENTRY_PAGE_SIZE } else { 0 };
                memory.write_u64(
                    slot(table, virtual_address, leaf_level),
                    physical | page_size_bit | leaf_rights,
                );
                Ok(())
            },
        );
        for frame in reserve {
            frames.free_frame(frame);
        }
        Ok(())
    }

    /// Unmaps a range that must be fully mapped and must not split a superpage. Changes nothing
    /// on error. Returns the number of leaf entries cleared. The caller must flush the IOTLB
    /// before reusing the unmapped memory or calling [`Self::release_freed_tables`].
    pub fn unmap<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        iova: IoVirt,
        size: u64,
    ) -> Result<u64, IommuError> {
        self.check_range(iova, size)?;
        let end = iova.0 + size;
        let mut address = iova.0;
        while address < end {
            let (_, level, _) = self
                .find_leaf(memory, address)
                .ok_or(IommuError::NotMapped)?;
            let base = address & !(span(level) - 1);
            if base < iova.0 || base + span(level) > end {
                return Err(IommuError::NotMapped);
            }
            address = base + span(level);
        }
        let mut cleared = 0;
        let mut address = iova.0;
        while address < end {
            let Some((slot_address, level, _)) = self.find_leaf(memory, address) else {
                break;
            };
            memory.write_u64(slot_address, 0);
            cleared += 1;
            address += span(level);
        }
        self.prune(memory, self.root, self.levels.count(), iova.0, end);
        Ok(cleared)
    }

    /// Detaches tables under `table` that cover part of `start..end` and became empty.
    fn prune<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        table: HostPhys,
        level: u8,
        start: u64,
        end: u64,
    ) {
        let mut address = start;
        while address < end {
            let entry_address = slot(table, address, level);
            let entry = memory.read_u64(entry_address);
            let next = (address & !(span(level) - 1)).saturating_add(span(level));
            if is_present(entry) && !is_leaf(entry, level) {
                let child = HostPhys(entry & ENTRY_ADDRESS);
                self.prune(memory, child, level - 1, address, next.min(end));
                let empty = (0..PAGE_SIZE / 8)
                    .all(|index| memory.read_u64(HostPhys(child.0 + index * 8)) == 0);
                if empty && !self.pending_free.is_full() && self.pending_free.push(child).is_ok() {
                    memory.write_u64(entry_address, 0);
                }
            }
            address = next;
        }
    }

    /// Gives detached table frames back once the IOTLB (and paging-structure caches) of
    /// `domain` were flushed. Returns how many frames were released.
    pub fn release_freed_tables<A: FrameAllocator>(
        &mut self,
        flushed: &IotlbFlushed,
        domain: DomainId,
        frames: &mut A,
    ) -> Result<usize, IommuError> {
        if !flushed.covers(domain) {
            return Err(IommuError::InvalidationError);
        }
        let count = self.pending_free.len();
        while let Some(frame) = self.pending_free.pop() {
            frames.free_frame(frame);
        }
        Ok(count)
    }

    /// Frees every table frame (the domain is gone and its IOTLB entries were flushed).
    pub fn destroy<M: PhysMemory, A: FrameAllocator>(
        mut self,
        memory: &M,
        flushed: &IotlbFlushed,
        domain: DomainId,
        frames: &mut A,
    ) -> Result<(), IommuError> {
        self.release_freed_tables(flushed, domain, frames)?;
        free_tree(memory, frames, self.root, self.levels.count());
        Ok(())
    }
}

fn free_tree<M: PhysMemory, A: FrameAllocator>(
    memory: &M,
    frames: &mut A,
    table: HostPhys,
    level: u8,
) {
    if level > 1 {
        for index in 0..PAGE_SIZE / 8 {
            let entry = memory.read_u64(HostPhys(table.0 + index * 8));
            if is_present(entry) && !is_leaf(entry, level) {
                free_tree(memory, frames, HostPhys(entry & ENTRY_ADDRESS), level - 1);
            }
        }
    }
    frames.free_frame(table);
}
