//! The IPC benchmark: init starts it twice (with the kernel flag `init.bench`), as a server
//! (mode 1) that answers every call at once and as a client (mode 2) on the same CPU that times
//! call + reply round trips across the two address spaces with RDTSC. Under QEMU with
//! `-icount shift=0,sleep=off` RDTSC counts retired instructions, so the figure is an exact
//! instruction count (user and kernel together) per round trip; `cargo xtask bench` reads it.
//!
//! Output (a contract with `xtask/src/bench.rs`):
//! `bench: ipc-call-reply-cross-space iterations=N total=T per=P unit=instructions`
//!
//! Capabilities: 0 = own domain, 1 = own thread, 2 = init's portal; the client also has
//! 3 = a portal to the server.
#![cfg_attr(target_os = "none", no_std, no_main)]

use sluice_rt::abi::syscall::Selector;
use sluice_rt::log;
use sluice_rt::message::Message;
use sluice_rt::start::Startup;
use sluice_rt::sys;
use sluice_rt::utcb::MessageBuffer;

/// Round trips measured (after the warm-up).
const ITERATIONS: u64 = 10_000;
/// Round trips before measuring (fill caches and the TLB).
const WARM_UP: u64 = 100;
/// The client's portal to the server.
const SERVER_PORTAL: Selector = Selector(3);

#[cfg(target_os = "none")]
sluice_rt::entry!(run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(startup: Startup) {
    // SAFETY: init starts the benchmark with an argument block (sluice_rt::start).
    let mode = unsafe { startup.arguments() }.ok().and_then(|a| a.get(0));
    let Some(mut buffer) = MessageBuffer::current() else {
        log!("bench: no UTCB recorded at entry");
        return;
    };
    match mode {
        Some(1) => serve(&mut buffer),
        Some(2) => measure(&mut buffer),
        other => log!("bench: unknown mode {other:?}"),
    }
}

/// Answers every call with an empty reply, forever. The UTCB keeps an empty tag (written
/// once), so the loop is the bare system call: what is measured is the kernel's IPC path.
fn serve(buffer: &mut MessageBuffer) {
    if let Err(status) = buffer.reply_and_wait(&Message::new(0)) {
        log!("bench: server: first reply_and_wait failed: {status:?}");
        return;
    }
    loop {
        if let Err(status) = sys::reply_and_wait() {
            log!("bench: server: reply_and_wait failed: {status:?}");
            return;
        }
    }
}

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter; it has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// Times `ITERATIONS` empty call + reply round trips (bare system calls after the first).
fn measure(buffer: &mut MessageBuffer) {
    if let Err(status) = buffer.call(SERVER_PORTAL, &Message::new(0)) {
        log!("bench: client: call failed: {status:?}");
        return;
    }
    for _ in 0..WARM_UP {
        if let Err(status) = sys::call(SERVER_PORTAL) {
            log!("bench: client: call failed: {status:?}");
            return;
        }
    }
    let start = rdtsc();
    for _ in 0..ITERATIONS {
        if sys::call(SERVER_PORTAL).is_err() {
            log!("bench: client: call failed while measuring");
            return;
        }
    }
    let total = rdtsc().wrapping_sub(start);
    log!(
        "bench: ipc-call-reply-cross-space iterations={ITERATIONS} total={total} per={} unit=instructions",
        total / ITERATIONS
    );
    let start = rdtsc();
    for _ in 0..ITERATIONS {
        null_system_call();
    }
    let total = rdtsc().wrapping_sub(start);
    log!(
        "bench: null-system-call iterations={ITERATIONS} total={total} per={} unit=instructions",
        total / ITERATIONS
    );
}

/// The cheapest kernel entry: an unassigned call number, refused with `UnknownSyscall` right
/// after the entry path (what every system call pays at least).
fn null_system_call() {
    #[cfg(target_os = "none")]
    // SAFETY: `syscall` with an unassigned number only returns a status; rcx and r11 are
    // clobbered as the instruction defines.
    unsafe {
        core::arch::asm!("syscall", inout("rax") 31u64 => _, out("rcx") _, out("r11") _,
            in("rdi") 0u64, in("rsi") 0u64, in("rdx") 0u64, in("r10") 0u64, in("r8") 0u64, in("r9") 0u64,
            options(nostack));
    }
}

/// On the host the program has nothing to run (it is built for x86_64-unknown-none).
#[cfg(not(target_os = "none"))]
fn main() {}
