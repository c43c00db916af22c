//! The misbehave test program: init starts it (with the kernel flag `init.misbehave`) once per
//! mode to show that bad user input is refused with an error code and that a faulting thread
//! is stopped and reported while the rest of the system keeps running.
//!
//! Argument word 0 (the block on its stack, `sluice_rt::start`) selects the mode:
//!
//! | mode | what it does | expected outcome |
//! |---|---|---|
//! | 1 | `call` on an empty selector and on a selector naming its own domain | `EmptySlot`, `WrongType`; reported to init (`REPORT`, label 3), then the thread exits |
//! | 2 | `debug_write` of a kernel-half address, then a store through a wild kernel-half pointer | `BadAddress`, then a page fault |
//! | 3 | a load from an unmapped user address | page fault |
//! | 4 | `cli` then `hlt` in ring 3 (Intel SDM Vol. 3A 2.8, 6.15: #GP when CPL > IOPL / CPL != 0) | general-protection fault |
//! | 5 | `io_allow` of its one granted port, a write to it, then a read of a port it was not given | the write works; #GP on the read |
//! | 6 | spins in user mode forever (init runs it on CPU 1 at the lowest priority with two or more CPUs) | TLB shootdowns from CPU 0 interrupt it and wait for its flush (`sluice: tlb shootdown: waited for CPU 1`) |
//! | 7 | the vCPU capability lifecycle ([`vcpu_lifecycle`]): runs a vCPU of its own VM, changes the capability behind the selector (copy without `RUN`, delete, a new vCPU, the VM's capability revoked) and runs after each change | every run gives exactly the exit or refusal the current capability implies; the steps passed and failed are reported to init (`REPORT`, mode 7), then the thread exits |
//!
//! Capabilities: 0 = its own domain, 1 = its own thread, 2 = init's portal (`CALL`). Mode 7
//! creates its VM and vCPUs at 10-13 (from its own quota).
#![cfg_attr(target_os = "none", no_std, no_main)]

use sluice_rt::abi::boot::{selector, PARENT_PORTAL};
use sluice_rt::abi::syscall::{Selector, Status};
use sluice_rt::log;
use sluice_rt::message::Message;
use sluice_rt::protocol::{self, Request};
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;

mod vcpu_lifecycle;

/// A selector no one filled in this program's table (init delegates only 0..=2).
const EMPTY_SELECTOR: Selector = Selector(40);
/// A kernel-half address (the kernel's direct map, docs/kernel.md): user accesses must fault.
const KERNEL_ADDRESS: u64 = 0xffff_8000_0010_0000;
/// A canonical user address nothing maps.
const UNMAPPED_ADDRESS: u64 = 0x0000_5555_0000_0000;

#[cfg(target_os = "none")]
sluice_rt::entry!(run);

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn run(startup: Startup) {
    // SAFETY: init starts misbehave with an argument block (sluice_rt::start).
    let mode = match unsafe { startup.arguments() } {
        Ok(arguments) => arguments.get(0),
        Err(error) => {
            log!("misbehave: bad argument block: {error}");
            None
        }
    };
    log!("misbehave: started, mode {}", mode.unwrap_or(0));
    match mode {
        Some(1) => bad_capabilities(),
        Some(2) => wild_pointer(),
        Some(3) => unmapped_read(),
        Some(4) => privileged_instruction(),
        Some(5) => port_access(),
        Some(6) => spin(),
        Some(vcpu_lifecycle::MODE) => vcpu_lifecycle::vcpu_lifecycle(),
        _ => log!("misbehave: unknown mode, exiting"),
    }
}

/// Mode 6: user code that never enters the kernel on its own.
fn spin() {
    log!("misbehave: spinning in user mode");
    loop {
        core::hint::spin_loop();
    }
}

fn status_word(result: Result<Message, Status>) -> (u64, &'static str) {
    match result {
        Ok(_) => (Status::Success.as_raw(), "accepted (wrong!)"),
        Err(status) => (status.as_raw(), status.description()),
    }
}

/// Mode 1: two refused calls, reported to init, then a normal exit.
fn bad_capabilities() {
    let Some(mut buffer) = MessageBuffer::current() else {
        log!("misbehave: no UTCB recorded at entry");
        return;
    };
    let request = Request::Hello {
        version: protocol::PROTOCOL_VERSION,
    }
    .encode();
    let (empty, empty_text) = status_word(buffer.call(EMPTY_SELECTOR, &request));
    log!(
        "misbehave: call on empty selector {}: {:?} ({empty_text})",
        EMPTY_SELECTOR.0,
        Status::from_raw(empty)
    );
    let own_domain = Selector(selector::SELF_DOMAIN);
    let (wrong, wrong_text) = status_word(buffer.call(own_domain, &request));
    log!(
        "misbehave: call on a domain capability: {:?} ({wrong_text})",
        Status::from_raw(wrong)
    );
    report(&mut buffer, 1, empty, wrong);
}

/// Sends init the `REPORT` of `mode` with its two result words.
fn report(buffer: &mut MessageBuffer, mode: u64, first: u64, second: u64) {
    let report = Request::Report {
        mode,
        first,
        second,
    };
    match protocol::request(buffer, Selector(PARENT_PORTAL), report, 0) {
        Ok(_) => log!("misbehave: mode {mode} reported, exiting"),
        Err(error) => log!("misbehave: report to init failed: {error}"),
    }
}

/// Mode 2: the kernel refuses a kernel pointer in a system call; a store through it faults.
fn wild_pointer() {
    match sluice_rt::sys::debug_write_raw(KERNEL_ADDRESS, 16) {
        Err(status) => log!("misbehave: debug_write of a kernel address: {status:?}"),
        Ok(()) => log!("misbehave: debug_write of a kernel address was accepted (wrong!)"),
    }
    log!("misbehave: storing through wild pointer {KERNEL_ADDRESS:#x}");
    store(KERNEL_ADDRESS);
    log!("misbehave: the store did not fault (wrong!)");
}

/// Mode 3: a load from an unmapped page.
fn unmapped_read() {
    log!("misbehave: reading unmapped address {UNMAPPED_ADDRESS:#x}");
    let value = load(UNMAPPED_ADDRESS);
    log!("misbehave: the load returned {value:#x} (wrong!)");
}

/// Mode 4: privileged instructions in ring 3.
fn privileged_instruction() {
    log!("misbehave: executing cli; hlt in ring 3");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: in ring 3 `cli` raises #GP (IOPL is 0) and the kernel stops this thread; were it
    // to execute, it would only change this thread's interrupt flag. No memory is touched.
    unsafe {
        core::arch::asm!("cli", "hlt", options(nomem, nostack));
    }
    log!("misbehave: cli; hlt did not fault (wrong!)");
}

/// The port mode 5 is given (init: `MISBEHAVE_PORT`) and one it is not (the PS/2 data port).
const GRANTED_PORT: u16 = 0x80;
const OTHER_PORT: u16 = 0x60;
/// Mode 5's I/O port capability.
const PORTS: Selector = Selector(3);

/// Mode 5: the granted port works once the program lets itself use it (`io_allow` on its own
/// domain); any other port raises #GP (the TSS I/O bitmap, SDM Vol. 1 19.5.2).
fn port_access() {
    match sluice_rt::sys::io_allow(PORTS, Selector(selector::SELF_DOMAIN)) {
        Ok(()) => log!("misbehave: io_allow of port {GRANTED_PORT:#x} accepted"),
        Err(status) => {
            log!("misbehave: io_allow refused: {status:?} (wrong!)");
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: port 0x80 is the POST diagnostic port; writing it has no effect on the machine.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") GRANTED_PORT, in("al") 0x5au8, options(nomem, nostack));
    }
    log!("misbehave: wrote port {GRANTED_PORT:#x}; reading port {OTHER_PORT:#x}, which was not granted");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the port is not in this domain's I/O bitmap, so the CPU raises #GP and the kernel
    // stops this thread; were it granted, a read of the PS/2 data port changes nothing here.
    unsafe {
        let _value: u8;
        core::arch::asm!("in al, dx", in("dx") OTHER_PORT, out("al") _value, options(nomem, nostack));
    }
    log!("misbehave: the read of port {OTHER_PORT:#x} did not fault (wrong!)");
}

/// Stores to `address` in assembly: the fault is the point, so no Rust reference is formed.
fn store(address: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the address is in the kernel half or unmapped, so the CPU raises #PF before any
    // memory changes and the kernel stops this thread; no Rust object lives there.
    unsafe {
        core::arch::asm!("mov qword ptr [{0}], {1}", in(reg) address, in(reg) 0x5a5a_u64, options(nostack));
    }
}

/// Loads from `address` in assembly (see [`store`]).
fn load(address: u64) -> u64 {
    let value: u64;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the address is unmapped, so the CPU raises #PF and the kernel stops this thread;
    // a load changes no memory.
    unsafe {
        core::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) value, in(reg) address, options(nostack, readonly));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        value = address;
    }
    value
}

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
