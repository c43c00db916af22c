//! Check 5 (`msr`): the VMM's MSR policy as vmm-server/core/src/msr.rs defines it. Allowed MSRs
//! read their policy values; RDMSR and WRMSR of an MSR no policy knows raise #GP(0) at the
//! instruction itself (SDM Vol. 2B, RDMSR/WRMSR), which the #GP handler records and skips.
use core::arch::asm;

use guest_probe::check::{equal, Mismatch};
use guest_probe::layout::msr::{
    IA32_APIC_BASE, IA32_APIC_BASE_VALUE, IA32_PAT, IA32_PAT_VALUE, UNKNOWN,
};

use crate::interrupts::expect_general_protection;

/// RDMSR (0F 32) and WRMSR (0F 30) are two bytes long.
const MSR_INSTRUCTION_BYTES: u64 = 2;

fn read(index: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: reads an MSR the policy allows (callers pass such indices); no memory effects.
    unsafe {
        asm!("rdmsr", in("ecx") index, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags));
    }
    u64::from(high) << 32 | u64::from(low)
}

/// RDMSR of `index`, expecting #GP; returns the instruction's address.
fn read_expecting_fault(index: u32) -> u64 {
    let address: u64;
    // SAFETY: the caller armed the #GP handler to skip this 2-byte RDMSR; EAX/EDX are
    // declared clobbered either way.
    unsafe {
        asm!(
            "lea {address}, [rip + 2f]",
            "2:",
            "rdmsr",
            address = out(reg) address,
            in("ecx") index,
            out("eax") _,
            out("edx") _,
            options(nostack),
        );
    }
    address
}

/// WRMSR of `index` with 0, expecting #GP; returns the instruction's address.
fn write_expecting_fault(index: u32) -> u64 {
    let address: u64;
    // SAFETY: as in `read_expecting_fault`; the MSR is unimplemented, so nothing is written.
    unsafe {
        asm!(
            "lea {address}, [rip + 2f]",
            "2:",
            "wrmsr",
            address = out(reg) address,
            in("ecx") index,
            in("eax") 0u32,
            in("edx") 0u32,
            options(nostack),
        );
    }
    address
}

/// What a faulting access is called in the failure messages.
struct FaultingAccess {
    /// For the number of #GPs it raised (expected 1).
    count: &'static str,
    /// For the RIP the #GP reported (expected: the instruction's address).
    rip: &'static str,
    /// For the #GP's error code (expected 0).
    error_code: &'static str,
}

fn expect_fault(names: FaultingAccess, instruction: impl FnOnce() -> u64) -> Result<(), Mismatch> {
    let (address, fault) = expect_general_protection(MSR_INSTRUCTION_BYTES, instruction);
    let Some(fault) = fault else {
        return equal(names.count, 1, 0);
    };
    equal(names.rip, address, fault.rip)?;
    equal(names.error_code, 0, fault.error_code)
}

/// Runs the check.
pub fn run() -> Result<(), Mismatch> {
    equal("IA32_APIC_BASE", IA32_APIC_BASE_VALUE, read(IA32_APIC_BASE))?;
    equal("IA32_PAT", IA32_PAT_VALUE, read(IA32_PAT))?;
    let rdmsr = FaultingAccess {
        count: "#GPs raised by RDMSR of unknown MSR 0x400000ff",
        rip: "RIP of the #GP raised by RDMSR of unknown MSR 0x400000ff",
        error_code: "error code of the #GP raised by RDMSR of unknown MSR 0x400000ff",
    };
    expect_fault(rdmsr, || read_expecting_fault(UNKNOWN))?;
    let wrmsr = FaultingAccess {
        count: "#GPs raised by WRMSR of unknown MSR 0x400000ff",
        rip: "RIP of the #GP raised by WRMSR of unknown MSR 0x400000ff",
        error_code: "error code of the #GP raised by WRMSR of unknown MSR 0x400000ff",
    };
    expect_fault(wrmsr, || write_expecting_fault(UNKNOWN))
}

const _: () = assert!(UNKNOWN == 0x4000_00ff, "the messages above name the MSR");
