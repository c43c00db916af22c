//! The probe guest: a bare-metal program the vmm-server runs in a VM to check its own device
//! models and the kernel's CPU virtualization end to end. It starts in real mode at
//! [`REAL_MODE_ENTRY`](guest_probe::layout::REAL_MODE_ENTRY), switches to long mode
//! (`boot.rs`), then runs its checks in order, printing `probe: ok <check>` after each:
//!
//! 1. `long-mode`, 2. `uart`, 3. `cpuid`, 4. `mmio`, 5. `msr`, 9. `fpu`, 6. `timer`
//!
//! (numbered by failure status) and ends with `probe: all checks passed` and status 0 on the debug-exit port, or
//! `probe: FAIL <check>: <what>: expected <x>, got <y>` and the check's number. With
//! `probe.mode=triple-fault` on its command line it ends with `probe: triple fault on purpose`
//! and a triple fault instead; `probe.mode=fpu-stress` then holds its FPU/SSE values through
//! 200,000 CPUID exits (`checks/fpu.rs`). README.md documents how a VMM loads and starts it.
//!
//! Built for the host (as `cargo test` does), this binary is an empty stub: the guest exists
//! only for `x86_64-unknown-none`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod descriptors;
#[cfg(target_os = "none")]
mod interrupts;
#[cfg(target_os = "none")]
mod port;
#[cfg(target_os = "none")]
mod report;
#[cfg(target_os = "none")]
mod serial;
#[cfg(target_os = "none")]
mod sse;

#[cfg(target_os = "none")]
mod guest {
    //! The run: descriptor tables, console, parameters, the checks, the ending.
    use core::fmt::Display;

    use guest_probe::check::{Check, Mismatch, PASS_STATUS};
    use guest_probe::layout::PARAMETERS_ADDRESS;
    use guest_probe::parameters::{self, Escaped, Mode, BLOCK_BYTES};

    use crate::{checks, descriptors, println, report, serial};

    /// Prints `probe: ok <check>` or fails the run.
    fn passed<T>(check: Check, result: Result<T, Mismatch>) -> T {
        match result {
            Ok(value) => {
                println!("probe: ok {check}");
                value
            }
            Err(mismatch) => report::fail(check, mismatch),
        }
    }

    fn passed_with<T: Display>(check: Check, result: Result<T, Mismatch>) {
        match result {
            Ok(detail) => println!("probe: ok {check} ({detail})"),
            Err(mismatch) => report::fail(check, mismatch),
        }
    }

    /// The parameter block as the VMM left it.
    fn parameter_block() -> &'static [u8] {
        // SAFETY: the block is a page of the image at PARAMETERS_ADDRESS (linker.ld),
        // identity-mapped; the VMM writes it before the vCPU starts and nothing writes it
        // afterwards. Reading it through an address rather than the `probe_parameters`
        // symbol keeps the compiler from assuming the image's default contents.
        unsafe { core::slice::from_raw_parts(PARAMETERS_ADDRESS.0 as *const u8, BLOCK_BYTES) }
    }

    /// Called from `boot.rs` in 64-bit mode with interrupts disabled.
    pub extern "C" fn probe_main() -> ! {
        descriptors::install();
        if let Err(mismatch) = serial::initialize() {
            // The console may not work: try anyway, then exit with the UART's status.
            report::fail(Check::Uart, mismatch);
        }
        println!("probe: hello from long mode");
        passed(Check::LongMode, checks::long_mode::run());
        println!("probe: ok {}", Check::Uart);

        let parameters = match parameters::decode(parameter_block()) {
            Ok(parameters) => parameters,
            Err(error) => report::fail(Check::Parameters, error),
        };
        println!(
            "probe: command line \"{}\", mode {}",
            Escaped(parameters.command_line),
            parameters.mode.name()
        );

        passed(Check::Cpuid, checks::cpuid::run());
        passed(Check::Mmio, checks::mmio::run());
        passed(Check::Msr, checks::msr::run());
        passed_with(Check::Fpu, checks::fpu::run());
        passed_with(
            Check::Timer,
            checks::timer::run().map(|seen| TimerSummary(seen.ticks, seen.halts)),
        );

        match parameters.mode {
            Mode::Checks => {
                println!("probe: all checks passed");
                report::exit(PASS_STATUS)
            }
            Mode::TripleFault => {
                println!("probe: triple fault on purpose");
                descriptors::triple_fault()
            }
            Mode::Wild => {
                // Guest-physical memory nothing backs: neither RAM nor a device model.
                const UNBACKED: u64 = 0xd000_0000;
                // SAFETY: deliberately touching memory that does not exist; the VMM answers
                // reads of unbacked addresses with all ones and drops writes.
                let value = unsafe { core::ptr::read_volatile(UNBACKED as *const u64) };
                println!("probe: read of unbacked {UNBACKED:#x} returned {value:#x}");
                // SAFETY: as above.
                unsafe { core::ptr::write_volatile(UNBACKED as *mut u64, 0x5a5a_5a5a) };
                println!("probe: jumping into garbage");
                let garbage: [u8; 16] = [
                    0xff, 0xff, 0x0f, 0x0b, 0xc4, 0xc4, 0x8f, 0x8f, 0x62, 0x62, 0xd6, 0xf1, 0x0f,
                    0x37, 0xfe, 0xff,
                ];
                // SAFETY: the point is to execute bytes that are not code: the guest ends in
                // exceptions (its IDT catches the first and reports it) or a triple fault.
                unsafe {
                    let entry: extern "C" fn() = core::mem::transmute(garbage.as_ptr());
                    entry();
                }
                report::exit(0xbad)
            }
            Mode::FpuStress => {
                match checks::fpu::fpu_stress(parameters.seed) {
                    Ok(summary) => println!(
                        "probe: fpu-stress passed (seed \"{}\": {summary})",
                        Escaped(parameters.seed)
                    ),
                    Err(mismatch) => report::fail(Check::FpuStress, mismatch),
                }
                println!("probe: all checks passed");
                report::exit(PASS_STATUS)
            }
            Mode::Bench => {
                let (iterations, total) = bench_cpuid_exits();
                println!(
                    "bench: vm-exit-cpuid-round-trip iterations={iterations} total={total} per={} unit=instructions",
                    total / iterations
                );
                println!("probe: all checks passed");
                report::exit(PASS_STATUS)
            }
        }
    }

    /// Times CPUID exits: each CPUID leaves the guest, goes through the kernel to the VMM and
    /// back. Under QEMU `-icount` (and Bochs with `clock: sync=none`) the TSC counts retired
    /// instructions, so the figure is instructions per round trip (guest + kernel + VMM).
    fn bench_cpuid_exits() -> (u64, u64) {
        const ITERATIONS: u64 = 10_000;
        for _ in 0..100 {
            core::hint::black_box(core::arch::x86_64::__cpuid(0));
        }
        // SAFETY: RDTSC has no side effects (the VMM does not intercept it).
        let start = unsafe { core::arch::x86_64::_rdtsc() };
        // The loop in assembly, so the guest's own part of each round trip is six instructions
        // (the CPUID itself exits before it retires): the figure is the kernel's and the VMM's.
        // SAFETY: CPUID only writes EAX..EDX; RBX, which LLVM reserves, is kept in a scratch
        // register around it.
        unsafe {
            core::arch::asm!(
                "2:",
                "xor eax, eax",
                "xor ecx, ecx",
                "mov {saved}, rbx",
                "cpuid",
                "mov rbx, {saved}",
                "dec {count}",
                "jnz 2b",
                count = inout(reg) ITERATIONS => _,
                saved = out(reg) _,
                out("eax") _, out("ecx") _, out("edx") _,
                options(nostack),
            )
        };
        // SAFETY: as above.
        let end = unsafe { core::arch::x86_64::_rdtsc() };
        (ITERATIONS, end.wrapping_sub(start))
    }

    /// `<ticks> ticks after <halts> HLT`.
    struct TimerSummary(u64, u32);

    impl Display for TimerSummary {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{} ticks after {} HLT", self.0, self.1)
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        report::fail(Check::Panic, info)
    }
}

#[cfg(target_os = "none")]
use guest::probe_main;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-probe is a bare-metal guest: build it with --target x86_64-unknown-none");
    std::process::exit(2);
}
