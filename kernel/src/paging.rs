//! The kernel's own page tables (Intel SDM Vol. 3A, 4.5): an identity map of physical memory
//! with 2 MiB pages, replacing the boot stub's. RAM is write-back; everything else below 4 GiB
//! (MMIO: LAPIC, IOAPIC, ECAM, VT-d) is uncached; only the pages holding the kernel image are
//! executable (EFER.NXE is set by the boot stub).

use kernel_core::multiboot2::{BootInfo, RegionKind};

const PAGE_4K: u64 = 4096;
const PAGE_2M: u64 = 2 * 1024 * 1024;
const GIB: u64 = 1024 * 1024 * 1024;
/// Most physical memory the kernel maps (one page directory per GiB).
pub const MAX_MAPPED: u64 = 64 * GIB;

// Page-table entry bits (SDM Vol. 3A, Tables 4-15 to 4-18).
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const LARGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const NO_EXECUTE: u64 = 1 << 63;

#[repr(C, align(4096))]
struct Table([u64; 512]);

const DIRECTORIES: usize = (MAX_MAPPED / GIB) as usize;

static mut PML4: Table = Table([0; 512]);
static mut PDPT: Table = Table([0; 512]);
static mut DIRECTORIES_POOL: [Table; DIRECTORIES] = [const { Table([0; 512]) }; DIRECTORIES];

static MAPPED_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(4 * GIB);

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// One past the highest mapped physical address.
pub fn mapped_end() -> u64 {
    MAPPED_END.load(core::sync::atomic::Ordering::Relaxed)
}

fn is_ram(info: &BootInfo<'_>, start: u64, end: u64) -> bool {
    info.regions.iter().any(|r| r.kind == RegionKind::Available && r.base < end && start < r.end())
}

/// Builds and loads the identity map; returns the mapped size in bytes.
pub fn init(info: &BootInfo<'_>) -> u64 {
    let highest = info.highest_available().max(4 * GIB);
    let end = highest.div_ceil(GIB).saturating_mul(GIB).min(MAX_MAPPED);
    let kernel_start = &raw const __kernel_start as u64;
    let kernel_end = &raw const __kernel_end as u64;
    // SAFETY: runs once on the boot CPU before any other CPU starts; the tables are 'static and
    // map every address the kernel uses so far (its image, the stack, low memory, MMIO), so the
    // CR3 switch changes nothing already in use.
    unsafe {
        let pml4 = &raw mut PML4;
        let pdpt = &raw mut PDPT;
        let pool = &raw mut DIRECTORIES_POOL;
        (*pml4).0[0] = pdpt as u64 | PRESENT | WRITABLE;
        for gib in 0..(end / GIB) as usize {
            let directory = &raw mut (*pool)[gib];
            (*pdpt).0[gib] = directory as u64 | PRESENT | WRITABLE;
            for (index, entry) in (*directory).0.iter_mut().enumerate() {
                let base = gib as u64 * GIB + index as u64 * PAGE_2M;
                let top = base + PAGE_2M;
                let mut flags = PRESENT | WRITABLE | LARGE | GLOBAL;
                if !is_ram(info, base, top) && base >= PAGE_2M {
                    flags |= CACHE_DISABLE | WRITE_THROUGH;
                }
                let holds_kernel = base < kernel_end.next_multiple_of(PAGE_4K) && kernel_start < top;
                if !holds_kernel {
                    flags |= NO_EXECUTE;
                }
                *entry = base | flags;
            }
        }
        core::arch::asm!("mov cr3, {}", in(reg) pml4 as u64, options(nostack));
    }
    MAPPED_END.store(end, core::sync::atomic::Ordering::Relaxed);
    end
}
