//! How the run ends: the summary line on the console and the status on the debug-exit port
//! ([`DEBUG_EXIT_PORT`]; 0 = pass, otherwise [`Check::status`] or an unexpected exception's
//! status).
use core::arch::asm;
use core::fmt::Display;

use guest_probe::check::{unexpected_exception_status, Check};
use guest_probe::layout::DEBUG_EXIT_PORT;

use crate::{port, println};

/// Writes `status` to the debug-exit port, then halts with interrupts off in case the VMM
/// lets the guest run on.
pub fn exit(status: u32) -> ! {
    // SAFETY: the debug-exit port belongs to the probe; the write ends the run.
    unsafe { port::write_u32(DEBUG_EXIT_PORT, status) };
    halt_forever()
}

/// Halts forever with interrupts disabled.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI and HLT only stop this vCPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Prints `probe: FAIL <check>: <detail>` and exits with the check's status.
pub fn fail(check: Check, detail: impl Display) -> ! {
    println!("probe: FAIL {check}: {detail}");
    exit(check.status())
}

/// #PF: CR2 holds the faulting linear address (SDM Vol. 3A section 6.15, "Interrupt 14").
const PAGE_FAULT_VECTOR: u8 = 14;

/// Names of the exception vectors (SDM Vol. 3A section 6.3.1, Table 6-1).
fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        _ => "reserved",
    }
}

/// Reports an exception nobody expected and exits with its status.
pub fn unexpected_exception(vector: u8, error_code: Option<u64>, rip: u64) -> ! {
    let name = exception_name(vector);
    if vector == PAGE_FAULT_VECTOR {
        let address: u64;
        // SAFETY: reading CR2 has no side effects at CPL 0.
        unsafe { asm!("mov {}, cr2", out(reg) address, options(nomem, nostack, preserves_flags)) };
        println!("probe: page fault at linear address {address:#x}");
    }
    match error_code {
        Some(code) => println!(
            "probe: FAIL exception: vector {vector} ({name}) at rip {rip:#x}, error code {code:#x}"
        ),
        None => println!("probe: FAIL exception: vector {vector} ({name}) at rip {rip:#x}"),
    }
    exit(unexpected_exception_status(vector))
}
