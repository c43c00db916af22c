//! Check 9 (`fpu`), run after `msr`: the guest's FPU/SSE registers are its own.
//!
//! 1. SSE on (`sse::enable`); XMM0..15, MXCSR (rounding mode changed) and FCW (precision and
//!    rounding changed) loaded with [`SseState::patterned`] values, then 10 batches of 100
//!    CPUID exits and 10 port-I/O exits (UART scratch register); after each batch every
//!    register must hold its value exactly (the kernel saves them when the run returns to the
//!    VMM and reloads them when the CPU no longer holds them).
//! 2. Where CPUID.1:ECX.XSAVE is set: CPUID.1:ECX.OSXSAVE follows the guest's CR4.OSXSAVE (0,
//!    then 1 once set); XGETBV(0) reads the XCR0 the kernel gave the guest (x87 and SSE set,
//!    nothing CPUID leaf 0xD lacks); XSETBV(0, 0x1) (x87 only: SSE is usable all the same) and
//!    XSETBV(0, 0x3) are taken (XGETBV reads them back), a batch of exits keeping the registers
//!    under each; each of
//!    [`refused_xsetbvs`] raises #GP(0) at the XSETBV and leaves XCR0 at 3; XSETBV back to the
//!    first value is taken; with AVX in it, the upper halves of YMM0..15 are kept across exits
//!    too.
//!
//! The registers are put back to their initial values at the end (XCR0 stays the first value).
//!
//! [`fpu_stress`] is `probe.mode=fpu-stress`: the same holding, for long, with this guest's
//! own values, while another guest does the same on the same CPU.
use core::arch::x86_64::__cpuid_count;
use core::fmt;

use guest_probe::check::{equal, Mismatch};
use guest_probe::fpu::{
    refused_xsetbvs, seed_from, SseState, YmmUpper, CHECK_SEED, XCR0_AVX, XCR0_SSE, XCR0_X87,
};

use crate::interrupts::timer_ticks;
use crate::println;
use crate::sse::{self, hold_through_exits, last_scratch_write, xgetbv, xsetbv, CR4_OSXSAVE};

/// Batches of step 1, and CPUID and port exits per batch.
const BATCHES: u64 = 10;
const CPUIDS_PER_BATCH: u64 = 100;
const PORT_WRITES_PER_BATCH: u64 = 10;
/// CPUID.1:ECX.XSAVE (bit 26), OSXSAVE (bit 27: CR4.OSXSAVE as the guest set it), AVX (bit 28)
/// (SDM Vol. 2A CPUID, Table 3-10).
const CPUID_XSAVE: u32 = 1 << 26;
const CPUID_OSXSAVE: u32 = 1 << 27;
const CPUID_AVX: u32 = 1 << 28;
/// The tag of the check's scratch writes.
const TAG: u8 = 0x5a;

/// What the check saw.
pub struct Summary {
    /// CPUID exits the registers were held through.
    pub cpuid_exits: u64,
    /// Port-I/O exits the registers were held through.
    pub port_exits: u64,
    /// The XSAVE part, or `None` without XSAVE.
    pub xsave: Option<XsaveSummary>,
}

/// The XSAVE part's findings.
pub struct XsaveSummary {
    /// XCR0 as the guest found it.
    pub initial_xcr0: u64,
    /// CPUID.(EAX=0DH,ECX=0):EDX:EAX, the components the CPU reports.
    pub supported: u64,
    /// Invalid XSETBVs refused with #GP(0).
    pub refused: u32,
    /// Whether the YMM upper halves were held too.
    pub ymm: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xmm0-15, mxcsr, fcw kept across {} cpuid and {} port exits; ",
            self.cpuid_exits, self.port_exits
        )?;
        match &self.xsave {
            None => f.write_str("no xsave"),
            Some(xsave) => {
                write!(
                    f,
                    "xsave: xcr0 {:#x} (cpuid 0xd lists {:#x}), xsetbv 0x1 and 0x3 accepted, 0x2, xcr1 and {} more refused #GP(0), xcr0 restored",
                    xsave.initial_xcr0,
                    xsave.supported,
                    xsave.refused.saturating_sub(2)
                )?;
                if xsave.ymm {
                    f.write_str(", ymm0-15 upper halves kept")
                } else {
                    f.write_str(", no avx")
                }
            }
        }
    }
}

/// One batch: loads `expected` (and `upper`), exits, compares everything.
fn batch(
    expected: &SseState,
    upper: Option<&YmmUpper>,
    cpuid_exits: u64,
    port_exits: u64,
    tag: u8,
) -> Result<(), Mismatch> {
    let held = hold_through_exits(expected, upper, cpuid_exits, port_exits, tag);
    expected.compare(&held.registers)?;
    if let Some(upper) = upper {
        upper.compare(&held.upper)?;
    }
    if port_exits > 0 {
        equal(
            "UART scratch register after the port writes",
            u64::from(last_scratch_write(tag)),
            u64::from(held.scratch),
        )?;
    }
    Ok(())
}

/// Runs the check.
pub fn run() -> Result<Summary, Mismatch> {
    sse::enable();
    let expected = SseState::patterned(CHECK_SEED);
    for _ in 0..BATCHES {
        batch(
            &expected,
            None,
            CPUIDS_PER_BATCH,
            PORT_WRITES_PER_BATCH,
            TAG,
        )?;
    }
    let mut summary = Summary {
        cpuid_exits: BATCHES * CPUIDS_PER_BATCH,
        port_exits: BATCHES * PORT_WRITES_PER_BATCH,
        xsave: None,
    };
    let features = __cpuid_count(1, 0).ecx;
    if features & CPUID_XSAVE != 0 {
        let xsave = check_xsetbv(&expected, features & CPUID_AVX != 0)?;
        let batches = if xsave.ymm { 3 } else { 2 };
        summary.cpuid_exits += CPUIDS_PER_BATCH * batches;
        summary.port_exits += PORT_WRITES_PER_BATCH * batches;
        summary.xsave = Some(xsave);
    }
    // Back to the initial values (upper YMM halves zeroed too where they were used).
    let zero = YmmUpper([[0; 2]; 16]);
    let upper = summary
        .xsave
        .as_ref()
        .is_some_and(|x| x.ymm)
        .then_some(&zero);
    hold_through_exits(&SseState::INITIAL, upper, 0, 0, 0);
    Ok(summary)
}

/// Step 2.
fn check_xsetbv(expected: &SseState, cpu_has_avx: bool) -> Result<XsaveSummary, Mismatch> {
    equal(
        "CPUID.1:ECX.OSXSAVE before the guest sets CR4.OSXSAVE",
        0,
        u64::from(__cpuid_count(1, 0).ecx & CPUID_OSXSAVE),
    )?;
    sse::enable_xsave();
    equal(
        "CR4.OSXSAVE after setting it",
        CR4_OSXSAVE,
        sse::cr4() & CR4_OSXSAVE,
    )?;
    equal(
        "CPUID.1:ECX.OSXSAVE after the guest set CR4.OSXSAVE",
        u64::from(CPUID_OSXSAVE),
        u64::from(__cpuid_count(1, 0).ecx & CPUID_OSXSAVE),
    )?;
    let leaf = __cpuid_count(0xd, 0);
    let supported = u64::from(leaf.eax) | u64::from(leaf.edx) << 32;
    let initial = xgetbv(0);
    println!("probe: fpu: xcr0 {initial:#x}, cpuid 0xd lists {supported:#x}");
    equal(
        "XCR0 x87 and SSE bits as the guest found it",
        XCR0_X87 | XCR0_SSE,
        initial & (XCR0_X87 | XCR0_SSE),
    )?;
    equal(
        "XCR0 bits CPUID leaf 0xd does not list",
        0,
        initial & !supported,
    )?;

    // x87 only is a valid XCR0, and SSE stays usable under it (it needs no XCR0 bit): the
    // registers must be kept all the same.
    let (_, fault) = xsetbv(0, XCR0_X87);
    equal(
        "#GPs raised by XSETBV(0, 0x1)",
        0,
        u64::from(fault.is_some()),
    )?;
    equal("XCR0 after XSETBV(0, 0x1)", XCR0_X87, xgetbv(0))?;
    batch(expected, None, CPUIDS_PER_BATCH, PORT_WRITES_PER_BATCH, TAG)?;

    let minimal = XCR0_X87 | XCR0_SSE;
    let (_, fault) = xsetbv(0, minimal);
    equal(
        "#GPs raised by XSETBV(0, 0x3)",
        0,
        u64::from(fault.is_some()),
    )?;
    equal("XCR0 after XSETBV(0, 0x3)", minimal, xgetbv(0))?;
    batch(expected, None, CPUIDS_PER_BATCH, PORT_WRITES_PER_BATCH, TAG)?;

    let mut refused = 0;
    for attempt in refused_xsetbvs(initial) {
        let (address, fault) = xsetbv(attempt.register, attempt.value);
        let outcome = match fault {
            None => equal("#GPs raised by a refused XSETBV", 1, 0),
            Some(fault) => equal("RIP of the #GP a refused XSETBV raised", address, fault.rip)
                .and_then(|()| {
                    equal(
                        "error code of the #GP a refused XSETBV raised",
                        0,
                        fault.error_code,
                    )
                })
                .and_then(|()| equal("XCR0 after a refused XSETBV", minimal, xgetbv(0))),
        };
        if let Err(mismatch) = outcome {
            println!("probe: fpu: at {}", attempt.why);
            return Err(mismatch);
        }
        refused += 1;
    }

    let (_, fault) = xsetbv(0, initial);
    equal(
        "#GPs raised by XSETBV back to the first XCR0",
        0,
        u64::from(fault.is_some()),
    )?;
    equal(
        "XCR0 after XSETBV back to the first value",
        initial,
        xgetbv(0),
    )?;

    let ymm = cpu_has_avx && initial & XCR0_AVX != 0;
    if ymm {
        batch(
            expected,
            Some(&YmmUpper::patterned(CHECK_SEED)),
            CPUIDS_PER_BATCH,
            PORT_WRITES_PER_BATCH,
            TAG,
        )?;
    }
    Ok(XsaveSummary {
        initial_xcr0: initial,
        supported,
        refused,
        ymm,
    })
}

/// Rounds of `probe.mode=fpu-stress`, and CPUID exits per round.
pub const STRESS_ROUNDS: u64 = 200;
const STRESS_CPUIDS_PER_ROUND: u64 = 1000;

/// What `probe.mode=fpu-stress` saw.
pub struct StressSummary {
    /// CPUID exits in all.
    pub cpuid_exits: u64,
    /// Rounds (each loads the values, exits, compares).
    pub rounds: u64,
    /// Timer interrupts taken meanwhile.
    pub ticks: u64,
}

impl fmt::Display for StressSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "xmm0-15, mxcsr, fcw kept across {} cpuid exits in {} rounds, {} timer ticks",
            self.cpuid_exits, self.rounds, self.ticks
        )
    }
}

/// `probe.mode=fpu-stress`: [`STRESS_ROUNDS`] rounds of loading this guest's values (from
/// `seed`), 1,000 CPUID exits and a comparison, with interrupts enabled so timer ticks arrive
/// too. On a mismatch, prints the round and returns it.
pub fn fpu_stress(seed: &[u8]) -> Result<StressSummary, Mismatch> {
    sse::enable();
    let expected = SseState::patterned(seed_from(seed));
    let first_tick = timer_ticks();
    // SAFETY: the IDT has a gate for the timer vector (descriptors.rs); its handler touches no
    // FPU/SSE register. Interrupts are disabled again below.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    let mut result = Ok(());
    let mut rounds = 0;
    while rounds < STRESS_ROUNDS && result.is_ok() {
        result = batch(&expected, None, STRESS_CPUIDS_PER_ROUND, 0, 0);
        rounds += 1;
    }
    // SAFETY: CLI only masks interrupts.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    if let Err(mismatch) = result {
        println!("probe: fpu-stress: round {rounds} of {STRESS_ROUNDS}");
        return Err(mismatch);
    }
    Ok(StressSummary {
        cpuid_exits: rounds * STRESS_CPUIDS_PER_ROUND,
        rounds,
        ticks: timer_ticks().wrapping_sub(first_tick),
    })
}
