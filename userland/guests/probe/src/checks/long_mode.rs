//! Check 1 (`long-mode`): the trampoline left the CPU where it should: CR0.PE and CR0.PG,
//! CR4.PAE, CS = the 64-bit code selector (SDM Vol. 3A sections 2.5 and 9.8.5).
use core::arch::asm;

use guest_probe::check::{equal, Mismatch};

use crate::descriptors::CODE64_SELECTOR;

/// CR0.PE | CR0.PG.
const CR0_PROTECTION_AND_PAGING: u64 = (1 << 0) | (1 << 31);
/// CR4.PAE.
const CR4_PHYSICAL_ADDRESS_EXTENSION: u64 = 1 << 5;

/// Runs the check.
pub fn run() -> Result<(), Mismatch> {
    let (cr0, cr4, cs): (u64, u64, u64);
    // SAFETY: reading control registers and CS has no side effects at CPL 0.
    unsafe {
        asm!(
            "mov {cr0}, cr0",
            "mov {cr4}, cr4",
            "mov {cs:e}, cs",
            cr0 = out(reg) cr0,
            cr4 = out(reg) cr4,
            cs = out(reg) cs,
            options(nomem, nostack, preserves_flags),
        );
    }
    equal(
        "CR0.PE and CR0.PG",
        CR0_PROTECTION_AND_PAGING,
        cr0 & CR0_PROTECTION_AND_PAGING,
    )?;
    equal(
        "CR4.PAE",
        CR4_PHYSICAL_ADDRESS_EXTENSION,
        cr4 & CR4_PHYSICAL_ADDRESS_EXTENSION,
    )?;
    equal("CS selector", u64::from(CODE64_SELECTOR), cs & 0xffff)
}
