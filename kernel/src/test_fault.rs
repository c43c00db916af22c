//! Deliberate faults (`test-fault=pf|ud|gp|de` on the command line) that prove the exception
//! path reports and stops; `cargo xtask test` boots each and expects the report.

use kernel_core::cmdline::TestFault;

/// An address the kernel never maps: canonical, in the lower half, above the identity map.
const UNMAPPED: u64 = 0x0000_7fff_dead_0000;
/// A non-canonical address: bits 63:47 are not all equal.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

/// Raises the requested fault; returns only if the CPU did not fault.
pub fn trigger(fault: TestFault) {
    kprintln!("sluice: test fault {fault:?} requested");
    // SAFETY: each access below is meant to fault; the exception handler reports and stops the
    // system, so no execution continues with a corrupted state.
    unsafe {
        match fault {
            TestFault::PageFault => {
                let _ = core::ptr::read_volatile(UNMAPPED as *const u64);
            }
            TestFault::GeneralProtection => {
                let _ = core::ptr::read_volatile(NON_CANONICAL as *const u64);
            }
            TestFault::InvalidOpcode => core::arch::asm!("ud2"),
            TestFault::DivideError => {
                core::arch::asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
            }
        }
    }
}
