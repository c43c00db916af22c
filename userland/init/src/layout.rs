//! Fixed addresses: where init maps things into its own space, and the address-space layout
//! every child starts with. All are page-aligned user-half addresses away from init's image
//! (`USER_IMAGE_BASE`) and its boot page, UTCB and stack (`sluice_abi::boot`).

use sluice_abi::boot::USER_IMAGE_BASE;

/// Init's window for the system description module (read-only).
pub const SYSDESC_WINDOW: u64 = 0x5000_0000_0000;
/// Init's window for the program module being loaded (read-only).
pub const MODULE_WINDOW: u64 = 0x5100_0000_0000;
/// Init's window for memory it fills before handing it to a child (read-write).
pub const SCRATCH_WINDOW: u64 = 0x5200_0000_0000;
/// Init's window for the ACPI DMAR table while it reads the DRHD bases (read-only).
pub const DMAR_WINDOW: u64 = 0x5300_0000_0000;

/// Init's fault-watcher thread: its UTCB page.
pub const WATCHER_UTCB: u64 = 0x7f00_0000_2000;
/// Init's fault-watcher thread: the top of its stack.
pub const WATCHER_STACK_TOP: u64 = 0x7f00_0020_0000;
/// Init's fault-watcher thread: stack size.
pub const WATCHER_STACK_SIZE: u64 = 8 * 1024;

/// Where a child's ELF segments may lie: from the user image base up to the child's fixed
/// pages below.
pub const CHILD_IMAGE_RANGE: (u64, u64) = (USER_IMAGE_BASE, 0x7f00_0000_0000);
/// A child's UTCB page (RDI when its thread starts).
pub const CHILD_UTCB: u64 = 0x7f00_0000_1000;
/// The top of a child's stack (its argument block sits just below).
pub const CHILD_STACK_TOP: u64 = 0x7f00_0010_0000;
/// A child's stack size; the page below it stays unmapped (a guard).
pub const CHILD_STACK_SIZE: u64 = 16 * 1024;
/// A server's stack size: the pci-server's inventory and the iommu-server's domain tables are
/// values of a few hundred KiB built on the stack.
pub const SERVER_STACK_SIZE: u64 = 1024 * 1024;
/// The top of a stack larger than [`CHILD_STACK_SIZE`]: far below the UTCB, far above the
/// image (the page below the stack stays unmapped too).
pub const LARGE_STACK_TOP: u64 = 0x7e00_0000_0000;

/// Where a child's stack of `stack_size` bytes ends: [`CHILD_STACK_TOP`] when it fits between
/// the UTCB page and that top, else [`LARGE_STACK_TOP`].
pub const fn stack_top(stack_size: u64) -> u64 {
    if stack_size <= CHILD_STACK_SIZE {
        CHILD_STACK_TOP
    } else {
        LARGE_STACK_TOP
    }
}

/// The page size (Intel SDM Vol. 3A 4.5, 4-KByte pages).
pub const PAGE: u64 = sluice_abi::syscall::PAGE_SIZE;

/// `value` rounded up to a page multiple (`None` on overflow).
pub fn page_round_up(value: u64) -> Option<u64> {
    value.checked_next_multiple_of(PAGE)
}
