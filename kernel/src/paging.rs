//! The kernel's own page tables (Intel SDM Vol. 3A, 4.5), shared by every address space:
//!
//! - the first GiB, identity-mapped and supervisor-only with 2 MiB pages: the kernel image (linked
//!   at 1 MiB), its stacks and static tables. Only the pages holding the kernel image are
//!   executable (EFER.NXE is set by the boot stub).
//! - the direct map of physical memory at [`DIRECT_MAP`] (PML4 slot 256), 2 MiB pages, never
//!   executable: RAM write-back, everything else (MMIO: LAPIC, IOAPIC, ECAM, VT-d) uncached.
//!
//! User space is everything from 1 GiB to the end of the lower half (address_space.rs).

use kernel_core::multiboot2::{BootInfo, RegionKind};

pub const PAGE_4K: u64 = 4096;
const PAGE_2M: u64 = 2 * 1024 * 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;
/// Where physical address 0 appears in every address space.
pub const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;
/// The PML4 slot of the direct map.
pub const DIRECT_MAP_SLOT: usize = 256;
/// Most physical memory the kernel maps (one page directory per GiB).
pub const MAX_MAPPED: u64 = 64 * GIB;

// Page-table entry bits (SDM Vol. 3A, Tables 4-15 to 4-19).
pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const WRITE_THROUGH: u64 = 1 << 3;
pub const CACHE_DISABLE: u64 = 1 << 4;
pub const LARGE: u64 = 1 << 7;
pub const GLOBAL: u64 = 1 << 8;
pub const NO_EXECUTE: u64 = 1 << 63;
/// Bits 51:12 of an entry: the physical address of the next level or the page.
#[allow(dead_code)] // used by user address spaces
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

#[repr(C, align(4096))]
pub struct Table(pub [u64; 512]);

const DIRECTORIES: usize = (MAX_MAPPED / GIB) as usize;

static mut PML4: Table = Table([0; 512]);
static mut LOW_PDPT: Table = Table([0; 512]);
static mut LOW_DIRECTORY: Table = Table([0; 512]);
static mut DIRECT_PDPT: Table = Table([0; 512]);
static mut DIRECT_DIRECTORIES: [Table; DIRECTORIES] = [const { Table([0; 512]) }; DIRECTORIES];

static MAPPED_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(4 * GIB);

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// One past the highest physical address in the direct map.
pub fn mapped_end() -> u64 {
    MAPPED_END.load(core::sync::atomic::Ordering::Relaxed)
}

/// The kernel image's physical range.
pub fn kernel_image() -> (u64, u64) {
    (
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    )
}

/// A physical address as a pointer through the direct map.
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (DIRECT_MAP + phys) as *mut u8
}

/// The physical address of a kernel static (the first GiB is identity-mapped).
pub fn static_phys<T>(value: *const T) -> u64 {
    value as u64
}

/// The kernel's PML4 (physical): user address spaces copy its upper half and low slot.
#[allow(dead_code)] // used by user address spaces
pub fn kernel_pml4() -> u64 {
    static_phys(&raw const PML4)
}

/// The shared low PDPT entry (first GiB, supervisor) user spaces install at their slot 0.
pub fn low_directory_entry() -> u64 {
    static_phys(&raw const LOW_DIRECTORY) | PRESENT | WRITABLE
}

fn is_ram(info: &BootInfo<'_>, start: u64, end: u64) -> bool {
    info.regions
        .iter()
        .any(|r| r.kind == RegionKind::Available && r.base < end && start < r.end())
}

fn cache_flags(info: &BootInfo<'_>, base: u64) -> u64 {
    if base >= PAGE_2M && !is_ram(info, base, base + PAGE_2M) {
        CACHE_DISABLE | WRITE_THROUGH
    } else {
        0
    }
}

/// Builds and loads the kernel page tables; returns the size of the direct map in bytes.
pub fn init(info: &BootInfo<'_>) -> u64 {
    let highest = info.highest_available().max(4 * GIB);
    let end = highest.div_ceil(GIB).saturating_mul(GIB).min(MAX_MAPPED);
    let (kernel_start, kernel_end) = kernel_image();
    // SAFETY: runs once on the boot CPU before any other CPU starts; the tables are 'static and
    // the low GiB keeps mapping everything in use (image, stacks, statics) at the same
    // addresses, so the CR3 switch changes nothing already in use.
    unsafe {
        let pml4 = &raw mut PML4;
        let low_pdpt = &raw mut LOW_PDPT;
        let low = &raw mut LOW_DIRECTORY;
        for (index, entry) in (*low).0.iter_mut().enumerate() {
            let base = index as u64 * PAGE_2M;
            let holds_kernel =
                base < kernel_end.next_multiple_of(PAGE_4K) && kernel_start < base + PAGE_2M;
            let execute = if holds_kernel { 0 } else { NO_EXECUTE };
            *entry = base | PRESENT | WRITABLE | LARGE | GLOBAL | execute | cache_flags(info, base);
        }
        (*low_pdpt).0[0] = low_directory_entry();
        (*pml4).0[0] = static_phys(low_pdpt) | PRESENT | WRITABLE | USER;

        let direct_pdpt = &raw mut DIRECT_PDPT;
        let pool = &raw mut DIRECT_DIRECTORIES;
        for gib in 0..(end / GIB) as usize {
            let directory = &raw mut (*pool)[gib];
            (*direct_pdpt).0[gib] = static_phys(directory) | PRESENT | WRITABLE;
            for (index, entry) in (*directory).0.iter_mut().enumerate() {
                let base = gib as u64 * GIB + index as u64 * PAGE_2M;
                *entry = base
                    | PRESENT
                    | WRITABLE
                    | LARGE
                    | GLOBAL
                    | NO_EXECUTE
                    | cache_flags(info, base);
            }
        }
        (*pml4).0[DIRECT_MAP_SLOT] = static_phys(direct_pdpt) | PRESENT | WRITABLE;
        core::arch::asm!("mov cr3, {}", in(reg) static_phys(pml4), options(nostack));
    }
    MAPPED_END.store(end, core::sync::atomic::Ordering::Relaxed);
    end
}
