//! The 4-level nested page-table builder, generic over the entry format.
use core::marker::PhantomData;

use super::format::{EntryFormat, ADDRESS_MASK, PAGE_SIZE_BIT};
use super::{
    Ept, FrameSource, MapError, MemoryType, Npt, PageSize, Rights, TableConfig, TableMemory,
};
use crate::address::{GuestPhys, HostPhys, MAX_PHYSICAL_ADDRESS_BITS, PAGE_SIZE};

/// Entries per table (SDM Vol. 3C section 29.3.2).
const ENTRIES: u64 = 512;
/// Bit 11 is ignored in every entry of both formats and the entry stays not present (low bits
/// zero): it marks a chain link written into a spare or detached table frame.
const LINK_MARK: u64 = 1 << 11;

/// Bytes one entry at `level` covers (level 1 = PTE, 4 = PML4E).
const fn entry_size(level: u8) -> u64 {
    1 << (12 + 9 * (level as u32 - 1))
}

/// The most tables one `map` of `size` bytes at `gpa` can create below the root: one per
/// 2 MiB, 1 GiB and 512 GiB region the range touches (a page table, directory and
/// pointer table each). The kernel charges this to the VM's owner before mapping and
/// refunds what [`MapReport::tables_created`] shows was not needed.
pub fn tables_bound(gpa: GuestPhys, size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last = gpa.0.saturating_add(size - 1);
    (2..=4u8)
        .map(|level| last / entry_size(level) - gpa.0 / entry_size(level) + 1)
        .sum()
}

fn slot(table: HostPhys, address: u64, level: u8) -> HostPhys {
    let index = (address / entry_size(level)) % ENTRIES;
    HostPhys(table.0 + index * 8)
}

const fn page_size_of(level: u8) -> PageSize {
    match level {
        3 => PageSize::Size1G,
        2 => PageSize::Size2M,
        _ => PageSize::Size4K,
    }
}

fn is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || (level <= 3 && entry & PAGE_SIZE_BIT != 0)
}

/// Frames chained through their first word (a not-present entry value, see [`LINK_MARK`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct FrameChain {
    head: Option<HostPhys>,
    count: u64,
}

impl FrameChain {
    fn push<M: TableMemory + ?Sized>(&mut self, memory: &mut M, frame: HostPhys) {
        memory.write(frame, self.head.map_or(0, |next| next.0 | LINK_MARK));
        self.head = Some(frame);
        self.count += 1;
    }

    /// Takes a frame, restoring its first word to zero.
    fn pop<M: TableMemory + ?Sized>(&mut self, memory: &mut M) -> Option<HostPhys> {
        let frame = self.head?;
        let link = memory.read(frame);
        memory.write(frame, 0);
        self.head = (link & LINK_MARK != 0).then_some(HostPhys(link & ADDRESS_MASK));
        self.count = self.count.saturating_sub(1);
        Some(frame)
    }

    fn free_all<M: TableMemory + ?Sized, A: FrameSource + ?Sized>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
    ) -> u64 {
        let mut freed = 0;
        while let Some(frame) = self.pop(memory) {
            frames.free(frame);
            freed += 1;
        }
        freed
    }
}

/// What a map did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapReport {
    /// 4 KiB pages mapped.
    pub pages_4k: u64,
    /// 2 MiB pages mapped.
    pub pages_2m: u64,
    /// 1 GiB pages mapped.
    pub pages_1g: u64,
    /// Tables allocated.
    pub tables_created: u64,
}

/// An unmap awaiting its TLB flush: flush (VMX: INVEPT single-context for the EPTP on every
/// CPU that may cache it; SVM: a new ASID or TLB_CONTROL on every CPU running the VM), then
/// pass it to [`NestedPageTable::finish_flush`] to free the detached tables.
#[must_use = "the detached tables leak unless the flush is completed"]
#[derive(Debug, PartialEq, Eq)]
pub struct PendingFlush {
    /// Start of the unmapped range.
    pub gpa: GuestPhys,
    /// Length of the range.
    pub size: u64,
    /// Bytes that were mapped and are now unmapped.
    pub unmapped_bytes: u64,
    detached: FrameChain,
}

impl PendingFlush {
    /// Whether any translation changed (otherwise no flush is needed, but the token must still
    /// be finished).
    pub fn flush_needed(&self) -> bool {
        self.unmapped_bytes != 0 || self.detached.count != 0
    }
    /// Tables detached, to be freed after the flush.
    pub fn detached_tables(&self) -> u64 {
        self.detached.count
    }
}

/// One translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Host-physical address of the guest-physical address asked for.
    pub hpa: HostPhys,
    /// Size of the page mapping it.
    pub page_size: PageSize,
    /// Rights.
    pub rights: Rights,
    /// Memory type.
    pub memory_type: MemoryType,
}

/// Where a walk for `address` ends.
enum Walk {
    /// Not mapped: the entry at `level` is not present.
    Hole { level: u8 },
    /// Mapped by the leaf at `level`, whose entry is `entry`.
    Leaf { level: u8, entry: u64 },
}

/// One VM's nested page tables.
#[derive(Debug, PartialEq, Eq)]
pub struct NestedPageTable<F: EntryFormat> {
    root: HostPhys,
    config: TableConfig,
    format: PhantomData<F>,
}

impl<F: EntryFormat> NestedPageTable<F> {
    /// Empty tables: allocates the root (PML4) table.
    pub fn new<A: FrameSource + ?Sized>(
        config: TableConfig,
        frames: &mut A,
    ) -> Result<Self, MapError> {
        if !(32..=48).contains(&config.guest_address_bits) {
            return Err(MapError::UnsupportedAddressWidth(config.guest_address_bits));
        }
        let root = frames
            .allocate_zeroed()
            .ok_or(MapError::OutOfFrames { needed: 1 })?;
        Ok(NestedPageTable {
            root,
            config,
            format: PhantomData,
        })
    }

    /// The root table.
    pub fn root(&self) -> HostPhys {
        self.root
    }

    /// The configuration.
    pub fn config(&self) -> TableConfig {
        self.config
    }

    fn guest_limit(&self) -> u64 {
        1u64 << self.config.guest_address_bits
    }

    fn check_guest_range(&self, gpa: GuestPhys, hpa: HostPhys, size: u64) -> Result<(), MapError> {
        if size == 0 {
            return Err(MapError::Empty);
        }
        if !(gpa.0 | hpa.0 | size).is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned { gpa, hpa, size });
        }
        match gpa.0.checked_add(size) {
            Some(end) if end <= self.guest_limit() => Ok(()),
            _ => Err(MapError::GuestAddressOutOfRange { gpa, size }),
        }
    }

    /// Whether a leaf at `level` can map the chunk at `gpa` / `hpa` with `remaining` bytes left.
    fn fits(&self, level: u8, gpa: u64, hpa: u64, remaining: u64) -> bool {
        let size = entry_size(level);
        level == 1
            || (level <= self.config.largest_page.level()
                && gpa.is_multiple_of(size)
                && hpa.is_multiple_of(size)
                && remaining >= size)
    }

    /// Maps `size` bytes at `gpa` to `hpa` with `rights` and `memory_type`, using the largest
    /// pages alignment and configuration allow. Refused requests change nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn map<M: TableMemory + ?Sized, A: FrameSource + ?Sized>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        gpa: GuestPhys,
        hpa: HostPhys,
        size: u64,
        rights: Rights,
        memory_type: MemoryType,
    ) -> Result<MapReport, MapError> {
        if !rights.contains(Rights::READ) {
            return Err(MapError::UnsupportedRights(rights));
        }
        self.check_guest_range(gpa, hpa, size)?;
        match hpa.0.checked_add(size) {
            Some(end) if end <= 1u64 << MAX_PHYSICAL_ADDRESS_BITS => {}
            _ => return Err(MapError::HostAddressOutOfRange { hpa, size }),
        }
        // Pass 1: find every leaf slot, refuse overlaps, count the tables to create. Tables
        // created by an earlier chunk of this request are "virtual" here; chunks ascend, so
        // remembering the last one per level is enough to count each once.
        let mut needed = 0u64;
        let mut virtual_tables: [Option<u64>; 4] = [None; 4];
        let mut offset = 0;
        while offset < size {
            let (address, host) = (gpa.0 + offset, hpa.0 + offset);
            let (level, creates) = self.locate(memory, address, host, size - offset)?;
            for child in 1..=3u8 {
                if creates & (1 << child) != 0 {
                    let region = address / entry_size(child + 1);
                    if let Some(known) = virtual_tables.get_mut(usize::from(child)) {
                        if *known != Some(region) {
                            *known = Some(region);
                            needed += 1;
                        }
                    }
                }
            }
            offset += entry_size(level);
        }
        // Reserve every table before touching the tables.
        let mut pool = FrameChain::default();
        for _ in 0..needed {
            match frames.allocate_zeroed() {
                Some(frame) => pool.push(memory, frame),
                None => {
                    pool.free_all(memory, frames);
                    return Err(MapError::OutOfFrames { needed });
                }
            }
        }
        // Pass 2: write.
        let mut report = MapReport {
            tables_created: needed,
            ..MapReport::default()
        };
        let mut offset = 0;
        let mut result = Ok(());
        while offset < size {
            let (address, host) = (gpa.0 + offset, hpa.0 + offset);
            match self.commit(
                memory,
                &mut pool,
                address,
                host,
                size - offset,
                rights,
                memory_type,
            ) {
                Ok(level) => {
                    match page_size_of(level) {
                        PageSize::Size4K => report.pages_4k += 1,
                        PageSize::Size2M => report.pages_2m += 1,
                        PageSize::Size1G => report.pages_1g += 1,
                    }
                    offset += entry_size(level);
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        // Nothing is left over when pass 1 counted right; return any spare all the same.
        pool.free_all(memory, frames);
        result.map(|()| report)
    }

    /// Pass 1 for one chunk: the leaf level and, as a bit mask of table levels, the tables
    /// that must be created on the way.
    fn locate<M: TableMemory + ?Sized>(
        &self,
        memory: &M,
        address: u64,
        host: u64,
        remaining: u64,
    ) -> Result<(u8, u8), MapError> {
        let mut table = Some(self.root);
        let mut creates = 0u8;
        for level in (1..=4u8).rev() {
            let entry = table.map_or(0, |table| memory.read(slot(table, address, level)));
            if F::is_present(entry) {
                if is_leaf(entry, level) {
                    return Err(MapError::AlreadyMapped(GuestPhys(address)));
                }
                table = Some(HostPhys(entry & ADDRESS_MASK));
                continue;
            }
            if self.fits(level, address, host, remaining) {
                return Ok((level, creates));
            }
            creates |= 1 << (level - 1);
            table = None;
        }
        Err(MapError::Inconsistent(GuestPhys(address)))
    }

    /// Pass 2 for one chunk; returns the leaf level.
    #[allow(clippy::too_many_arguments)]
    fn commit<M: TableMemory + ?Sized>(
        &mut self,
        memory: &mut M,
        pool: &mut FrameChain,
        address: u64,
        host: u64,
        remaining: u64,
        rights: Rights,
        memory_type: MemoryType,
    ) -> Result<u8, MapError> {
        let mut table = self.root;
        for level in (1..=4u8).rev() {
            let entry_slot = slot(table, address, level);
            let entry = memory.read(entry_slot);
            if F::is_present(entry) {
                if is_leaf(entry, level) {
                    return Err(MapError::Inconsistent(GuestPhys(address)));
                }
                table = HostPhys(entry & ADDRESS_MASK);
                continue;
            }
            if self.fits(level, address, host, remaining) {
                let leaf = F::leaf_entry(HostPhys(host), page_size_of(level), rights, memory_type);
                memory.write(entry_slot, leaf);
                return Ok(level);
            }
            let frame = pool
                .pop(memory)
                .ok_or(MapError::Inconsistent(GuestPhys(address)))?;
            memory.write(entry_slot, F::table_entry(frame));
            table = frame;
        }
        Err(MapError::Inconsistent(GuestPhys(address)))
    }

    fn walk<M: TableMemory + ?Sized>(&self, memory: &M, address: u64) -> Walk {
        let mut table = self.root;
        for level in (1..=4u8).rev() {
            let entry = memory.read(slot(table, address, level));
            if !F::is_present(entry) {
                return Walk::Hole { level };
            }
            if is_leaf(entry, level) {
                return Walk::Leaf { level, entry };
            }
            table = HostPhys(entry & ADDRESS_MASK);
        }
        Walk::Hole { level: 1 }
    }

    /// The translation of `gpa`, if mapped.
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        memory: &M,
        gpa: GuestPhys,
    ) -> Option<Translation> {
        if gpa.0 >= self.guest_limit() {
            return None;
        }
        match self.walk(memory, gpa.0) {
            Walk::Hole { .. } => None,
            Walk::Leaf { level, entry } => {
                let size = entry_size(level);
                Some(Translation {
                    hpa: HostPhys((entry & ADDRESS_MASK & !(size - 1)) + gpa.0 % size),
                    page_size: page_size_of(level),
                    rights: F::rights(entry),
                    memory_type: F::memory_type(entry),
                })
            }
        }
    }

    /// Unmaps every page inside `gpa..gpa + size` (holes are fine), detaching tables that
    /// become empty. Refused, changing nothing, if a large page straddles either end.
    pub fn unmap<M: TableMemory + ?Sized>(
        &mut self,
        memory: &mut M,
        gpa: GuestPhys,
        size: u64,
    ) -> Result<PendingFlush, MapError> {
        self.check_guest_range(gpa, HostPhys(0), size)?;
        let end = gpa.0 + size;
        let mut address = gpa.0;
        while address < end {
            let (level, is_mapped) = match self.walk(memory, address) {
                Walk::Hole { level } => (level, false),
                Walk::Leaf { level, .. } => (level, true),
            };
            let span = entry_size(level);
            let start = address - address % span;
            if is_mapped && (start < gpa.0 || start + span > end) {
                return Err(MapError::PartialLargePage {
                    page: GuestPhys(start),
                    size: page_size_of(level),
                });
            }
            address = start + span;
        }
        let mut pending = PendingFlush {
            gpa,
            size,
            unmapped_bytes: 0,
            detached: FrameChain::default(),
        };
        self.clear(memory, self.root, 4, 0, gpa.0, end, &mut pending);
        Ok(pending)
    }

    /// Clears leaves of `table` (at `level`, covering from `base`) inside `start..end`, and
    /// detaches child tables left empty.
    #[allow(clippy::too_many_arguments)]
    fn clear<M: TableMemory + ?Sized>(
        &self,
        memory: &mut M,
        table: HostPhys,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        pending: &mut PendingFlush,
    ) {
        let span = entry_size(level);
        let first = (start.max(base) - base) / span;
        let last = ((end.min(base + span * ENTRIES) - base).div_ceil(span)).min(ENTRIES);
        for index in first..last {
            let entry_slot = HostPhys(table.0 + index * 8);
            let entry = memory.read(entry_slot);
            if !F::is_present(entry) {
                continue;
            }
            if is_leaf(entry, level) {
                memory.write(entry_slot, 0);
                pending.unmapped_bytes += span;
                continue;
            }
            if level == 1 {
                continue;
            }
            let child = HostPhys(entry & ADDRESS_MASK);
            self.clear(
                memory,
                child,
                level - 1,
                base + index * span,
                start,
                end,
                pending,
            );
            if Self::is_empty(memory, child) {
                memory.write(entry_slot, 0);
                pending.detached.push(memory, child);
            }
        }
    }

    fn is_empty<M: TableMemory + ?Sized>(memory: &M, table: HostPhys) -> bool {
        (0..ENTRIES).all(|index| memory.read(HostPhys(table.0 + index * 8)) == 0)
    }

    /// After the flush: frees the tables `pending` detached. Returns how many.
    pub fn finish_flush<M: TableMemory + ?Sized, A: FrameSource + ?Sized>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        mut pending: PendingFlush,
    ) -> u64 {
        pending.detached.free_all(memory, frames)
    }

    /// Frees every table, root included (the VM is gone and its translations flushed). The
    /// mapped frames themselves belong to their memory objects and are not touched.
    pub fn destroy<M: TableMemory + ?Sized, A: FrameSource + ?Sized>(
        self,
        memory: &mut M,
        frames: &mut A,
    ) -> u64 {
        Self::free_tree(memory, frames, self.root, 4)
    }

    fn free_tree<M: TableMemory + ?Sized, A: FrameSource + ?Sized>(
        memory: &mut M,
        frames: &mut A,
        table: HostPhys,
        level: u8,
    ) -> u64 {
        let mut freed = 0;
        for index in 0..ENTRIES {
            let entry_slot = HostPhys(table.0 + index * 8);
            let entry = memory.read(entry_slot);
            if entry != 0 {
                if F::is_present(entry) && !is_leaf(entry, level) {
                    freed +=
                        Self::free_tree(memory, frames, HostPhys(entry & ADDRESS_MASK), level - 1);
                }
                memory.write(entry_slot, 0);
            }
        }
        frames.free(table);
        freed + 1
    }
}

impl NestedPageTable<Ept> {
    /// The EPT pointer to write to the VMCS (WB, 4-level walk).
    pub fn eptp(&self, accessed_dirty: bool) -> u64 {
        Ept::pointer(self.root, accessed_dirty)
    }
}

impl NestedPageTable<Npt> {
    /// The N_CR3 value to write to the VMCB.
    pub fn nested_cr3(&self) -> u64 {
        Npt::nested_cr3(self.root)
    }
}
