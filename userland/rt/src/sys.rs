//! System-call wrappers: one safe function per call of `sluice-abi`, with typed arguments and a
//! `Result` over [`Status`]. Register convention (sluice-abi): `rax` = call number, arguments in
//! `rdi, rsi, rdx, r10, r8, r9`; `rax` returns the status and `rdi` a result where the call has
//! one. The kernel refuses non-zero registers a call does not use, so every wrapper passes
//! exactly the documented arguments and zero in the rest.
//!
//! `call` and `reply_and_wait` move the message in the calling thread's UTCB: use them through
//! [`crate::utcb::MessageBuffer`], which writes the message first and reads the answer after.

use sluice_abi::syscall::{
    MemoryRights, Selector, ShutdownKind, Status, Syscall, ThreadOperation, REVOKE_INCLUDING_SELF,
};

use crate::types::{DomainName, Quota, ThreadStart};

/// What one system call returned: `rax` and `rdi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawResult {
    /// `rax`: a [`Status`] value.
    pub status: u64,
    /// `rdi`: the call's result where it has one.
    pub result: u64,
}

/// Issues a system call with six argument registers.
#[cfg(target_os = "none")]
pub fn raw(call: Syscall, args: [u64; 6]) -> RawResult {
    let status: u64;
    let result: u64;
    // SAFETY: `syscall` transfers to the kernel, which validates every argument (user addresses
    // are allegations it checks); it changes only `rax`, `rdi` (results), `rcx` and `r11`, and
    // memory the caller handed it (the UTCB, which no live reference covers during the call).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") call as u64 => status,
            inlateout("rdi") args[0] => result,
            in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    RawResult { status, result }
}

#[cfg(not(target_os = "none"))]
pub use crate::host::raw;

/// Decodes `rax`: `Ok(rdi)` on success. A value that is no [`Status`] at all is reported as
/// `InvalidArgument` (it cannot come from a kernel that follows the ABI).
pub fn decode(raw_result: RawResult) -> Result<u64, Status> {
    if raw_result.status == Status::Success.as_raw() {
        return Ok(raw_result.result);
    }
    match Status::from_raw(raw_result.status) {
        Some(Status::Success) => Ok(raw_result.result),
        Some(error) => Err(error),
        None => Err(Status::InvalidArgument),
    }
}

fn invoke(call: Syscall, args: [u64; 6]) -> Result<(), Status> {
    decode(raw(call, args)).map(|_| ())
}

fn sel(selector: Selector) -> u64 {
    u64::from(selector.0)
}

/// `debug_write`: writes bytes (at most 4096) to the kernel debug console.
pub fn debug_write(bytes: &[u8]) -> Result<(), Status> {
    invoke(
        Syscall::DebugWrite,
        [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0, 0],
    )
}

/// `debug_write` with a raw address, for programs that test the kernel's address checks.
pub fn debug_write_raw(address: u64, length: u64) -> Result<(), Status> {
    invoke(Syscall::DebugWrite, [address, length, 0, 0, 0, 0])
}

/// `create_protection_domain`: a new domain at `destination` with `quota` donated from the
/// caller's, owning the CPUs of `cpu_mask`, named `name` in fault reports.
pub fn create_protection_domain(
    destination: Selector,
    quota: Quota,
    cpu_mask: u64,
    name: DomainName,
) -> Result<(), Status> {
    invoke(
        Syscall::CreateProtectionDomain,
        [
            sel(destination),
            quota.bytes,
            u64::from(quota.objects),
            u64::from(quota.mappings),
            cpu_mask,
            name.to_raw(),
        ],
    )
}

/// `create_thread`: a thread of `domain` at `destination`, not yet started.
/// A priority or CPU outside the ABI's range is `InvalidArgument` without a system call.
pub fn create_thread(
    domain: Selector,
    destination: Selector,
    start: ThreadStart,
) -> Result<(), Status> {
    let placement = start.placement().ok_or(Status::InvalidArgument)?;
    invoke(
        Syscall::CreateThread,
        [
            sel(domain),
            sel(destination),
            start.instruction_pointer,
            start.stack_pointer,
            start.utcb,
            placement,
        ],
    )
}

/// `create_portal`: an IPC entry served by `handler`; the handler receives `portal_id`.
pub fn create_portal(
    handler: Selector,
    destination: Selector,
    portal_id: u64,
) -> Result<(), Status> {
    invoke(
        Syscall::CreatePortal,
        [sel(handler), sel(destination), portal_id, 0, 0, 0],
    )
}

/// `create_notification`: 64 signal bits at `destination`.
pub fn create_notification(destination: Selector) -> Result<(), Status> {
    invoke(
        Syscall::CreateNotification,
        [sel(destination), 0, 0, 0, 0, 0],
    )
}

/// `create_memory`: carve `size` bytes at `offset` of `source` into a new memory object.
pub fn create_memory(
    source: Selector,
    destination: Selector,
    offset: u64,
    size: u64,
) -> Result<(), Status> {
    invoke(
        Syscall::CreateMemory,
        [sel(source), sel(destination), offset, size, 0, 0],
    )
}

/// `create_interrupt`: bind `line` of `source` to `bit` of `notification`.
pub fn create_interrupt(
    source: Selector,
    destination: Selector,
    line: u32,
    notification: Selector,
    bit: u8,
) -> Result<(), Status> {
    invoke(
        Syscall::CreateInterrupt,
        [
            sel(source),
            sel(destination),
            u64::from(line),
            sel(notification),
            u64::from(bit),
            0,
        ],
    )
}

/// `create_io_range`: carve ports `first .. first + count` out of `source`.
pub fn create_io_range(
    source: Selector,
    destination: Selector,
    first: u16,
    count: u32,
) -> Result<(), Status> {
    invoke(
        Syscall::CreateIoRange,
        [
            sel(source),
            sel(destination),
            u64::from(first),
            u64::from(count),
            0,
            0,
        ],
    )
}

/// `derive`: copy `source` to `destination` in the caller's table with `rights` (a subset).
pub fn derive(source: Selector, destination: Selector, rights: u64) -> Result<(), Status> {
    invoke(
        Syscall::Derive,
        [sel(source), sel(destination), rights, 0, 0, 0],
    )
}

/// `revoke`: delete everything derived from `selector`, and it too when `including_self`.
pub fn revoke(selector: Selector, including_self: bool) -> Result<(), Status> {
    let flags = if including_self {
        REVOKE_INCLUDING_SELF
    } else {
        0
    };
    invoke(Syscall::Revoke, [sel(selector), flags, 0, 0, 0, 0])
}

/// `delete`: remove one capability.
pub fn delete(selector: Selector) -> Result<(), Status> {
    invoke(Syscall::Delete, [sel(selector), 0, 0, 0, 0, 0])
}

/// `map`: map `size` bytes at `offset` of `memory` at `address` of `domain` with `rights`.
pub fn map(
    memory: Selector,
    domain: Selector,
    address: u64,
    offset: u64,
    size: u64,
    rights: MemoryRights,
) -> Result<(), Status> {
    invoke(
        Syscall::Map,
        [
            sel(memory),
            sel(domain),
            address,
            offset,
            size,
            rights.bits(),
        ],
    )
}

/// `unmap`: remove exactly the earlier mapping `address .. address + size` of `domain`.
pub fn unmap(domain: Selector, address: u64, size: u64) -> Result<(), Status> {
    invoke(Syscall::Unmap, [sel(domain), address, size, 0, 0, 0])
}

/// `call` with whatever the caller's UTCB holds; prefer [`crate::utcb::MessageBuffer::call`].
pub fn call(portal: Selector) -> Result<(), Status> {
    invoke(Syscall::Call, [sel(portal), 0, 0, 0, 0, 0])
}

/// `reply_and_wait` with whatever the caller's UTCB holds; returns the called portal's id.
/// Prefer [`crate::utcb::MessageBuffer::reply_and_wait`].
pub fn reply_and_wait() -> Result<u64, Status> {
    decode(raw(Syscall::ReplyAndWait, [0; 6]))
}

/// `signal`: set `bits` (non-zero) of `notification`.
pub fn signal(notification: Selector, bits: u64) -> Result<(), Status> {
    invoke(Syscall::Signal, [sel(notification), bits, 0, 0, 0, 0])
}

/// `wait`: take the pending bits of `notification`, waiting at most `timeout_ticks`
/// (0 = poll, [`sluice_abi::syscall::WAIT_FOREVER`] = forever).
pub fn wait(notification: Selector, timeout_ticks: u64) -> Result<u64, Status> {
    decode(raw(
        Syscall::Wait,
        [sel(notification), timeout_ticks, 0, 0, 0, 0],
    ))
}

/// `thread_control`: start, suspend, set priority or CPU of `thread`.
pub fn thread_control(
    thread: Selector,
    operation: ThreadOperation,
    value: u64,
) -> Result<(), Status> {
    invoke(
        Syscall::ThreadControl,
        [sel(thread), operation as u64, value, 0, 0, 0],
    )
}

/// `thread_control(Start)`.
pub fn start_thread(thread: Selector) -> Result<(), Status> {
    thread_control(thread, ThreadOperation::Start, 0)
}

/// `yield`: give the CPU to the next thread of the same priority.
pub fn yield_now() {
    let _ = raw(Syscall::Yield, [0; 6]);
}

/// `shutdown`: power off or reboot (needs `SYSTEM` on `domain`). On a real kernel a successful
/// call does not return; an `Err` says why it was refused.
pub fn shutdown(domain: Selector, kind: ShutdownKind, code: u32) -> Result<(), Status> {
    invoke(
        Syscall::Shutdown,
        [sel(domain), kind as u64, u64::from(code), 0, 0, 0],
    )
}

/// `memory_physical`: the host-physical address of byte `offset` of `memory`.
pub fn memory_physical(memory: Selector, offset: u64) -> Result<u64, Status> {
    decode(raw(
        Syscall::MemoryPhysical,
        [sel(memory), offset, 0, 0, 0, 0],
    ))
}

/// `interrupt_remap`: program the IOAPIC pin of the bound line `interrupt` (needs `REMAP`) in
/// remappable format with IRTE `handle` (VT-d 5.1.5.1); the iommu-server owns the entry.
pub fn interrupt_remap(interrupt: Selector, handle: u16) -> Result<(), Status> {
    invoke(
        Syscall::InterruptRemap,
        [sel(interrupt), u64::from(handle), 0, 0, 0, 0],
    )
}

/// `interrupt_acknowledge`: unmask a bound interrupt line after handling it.
pub fn interrupt_acknowledge(interrupt: Selector) -> Result<(), Status> {
    invoke(
        Syscall::InterruptAcknowledge,
        [sel(interrupt), 0, 0, 0, 0, 0],
    )
}

/// `io_allow`: let `domain` access the ports of `io_range`.
pub fn io_allow(io_range: Selector, domain: Selector) -> Result<(), Status> {
    invoke(Syscall::IoAllow, [sel(io_range), sel(domain), 0, 0, 0, 0])
}

/// `delegate`: copy `source` into slot `destination` of `domain`'s table with `rights`.
pub fn delegate(
    source: Selector,
    domain: Selector,
    destination: Selector,
    rights: u64,
) -> Result<(), Status> {
    invoke(
        Syscall::Delegate,
        [sel(source), sel(domain), sel(destination), rights, 0, 0],
    )
}

/// Ends the calling thread: suspends it for good through its own thread capability
/// ([`sluice_abi::boot::selector::SELF_THREAD`], by convention in every domain init starts).
#[cfg(target_os = "none")]
pub fn exit() -> ! {
    loop {
        let _ = thread_control(
            Selector(sluice_abi::boot::selector::SELF_THREAD),
            ThreadOperation::Suspend,
            0,
        );
        core::hint::spin_loop();
    }
}

/// Host stand-in for [`exit`]: records the suspend, then unwinds (a test cannot stop its
/// thread for good).
#[cfg(not(target_os = "none"))]
pub fn exit() -> ! {
    let _ = thread_control(
        Selector(sluice_abi::boot::selector::SELF_THREAD),
        ThreadOperation::Suspend,
        0,
    );
    panic!("sluice-rt host fake: the program exited");
}

/// `create_vm`: a VM (guest-physical address space) at `destination`.
pub fn create_vm(destination: Selector) -> Result<(), Status> {
    invoke(Syscall::CreateVm, [sel(destination), 0, 0, 0, 0, 0])
}

/// `create_vcpu`: a virtual CPU of `vm` at `destination`.
pub fn create_vcpu(vm: Selector, destination: Selector) -> Result<(), Status> {
    invoke(Syscall::CreateVcpu, [sel(vm), sel(destination), 0, 0, 0, 0])
}

/// `vm_map`: map `size` bytes at `offset` of `memory` at `guest_physical` in `vm`.
pub fn vm_map(
    memory: Selector,
    vm: Selector,
    guest_physical: u64,
    offset: u64,
    size: u64,
    rights: MemoryRights,
) -> Result<(), Status> {
    invoke(
        Syscall::VmMap,
        [
            sel(memory),
            sel(vm),
            guest_physical,
            offset,
            size,
            rights.bits(),
        ],
    )
}

/// `vcpu_control(run)`: applies the reply in the caller's UTCB (its untyped words; none = no
/// changes), runs the vCPU, and returns when an exit needs the VMM, with the exit message's
/// words in the UTCB.
pub fn vcpu_run(vcpu: Selector) -> Result<(), Status> {
    invoke(
        Syscall::VcpuControl,
        [sel(vcpu), sluice_abi::vcpu::VCPU_RUN, 0, 0, 0, 0],
    )
}

/// [`vcpu_run`] with the time-stamp counter read right before and right after the `syscall`
/// instruction (`(result, before, after)`), for benchmarks that tell the kernel's instructions
/// from the caller's: only the handful of instructions between the two reads and the
/// `syscall` count on the kernel's side.
#[cfg(target_os = "none")]
pub fn vcpu_run_timed(vcpu: Selector) -> (Result<(), Status>, u64, u64) {
    let status: u64;
    let result: u64;
    let before: u64;
    let after: u64;
    // SAFETY: as `raw`: `syscall` with the `vcpu_control(vcpu, run)` registers (RDX, which
    // RDTSC writes, is zeroed again before it); RDTSC has no side effects. Clobbers RCX, R11
    // (syscall) and RDX (RDTSC).
    unsafe {
        core::arch::asm!(
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov {before}, rax",
            "mov eax, {number:e}",
            "xor edx, edx",
            "syscall",
            "mov {status}, rax",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "mov {after}, rax",
            number = in(reg) Syscall::VcpuControl as u64,
            before = out(reg) before,
            status = out(reg) status,
            after = out(reg) after,
            inlateout("rdi") sel(vcpu) => result,
            in("rsi") sluice_abi::vcpu::VCPU_RUN,
            in("r10") 0u64, in("r8") 0u64, in("r9") 0u64,
            out("rax") _, out("rdx") _, out("rcx") _, out("r11") _,
            options(nostack)
        );
    }
    let outcome = decode(RawResult { status, result }).map(|_| ());
    (outcome, before, after)
}

/// [`vcpu_run`] on the host (tests): no time-stamp counter, both counts zero.
#[cfg(not(target_os = "none"))]
pub fn vcpu_run_timed(vcpu: Selector) -> (Result<(), Status>, u64, u64) {
    (vcpu_run(vcpu), 0, 0)
}

/// `vcpu_control(vcpu, set exit state)`: `vcpu`'s later exits of `reason` (an
/// `ExitReason::code`, or `ALL_EXIT_REASONS`) carry `groups` beyond the state every exit
/// carries. Needs `RUN`; an unknown reason or group bit is `InvalidArgument`.
pub fn vcpu_set_exit_state(
    vcpu: Selector,
    reason: u64,
    groups: sluice_abi::vcpu::Mtd,
) -> Result<(), Status> {
    invoke(
        Syscall::VcpuControl,
        [
            sel(vcpu),
            sluice_abi::vcpu::VCPU_SET_EXIT_STATE,
            reason,
            groups.bits(),
            0,
            0,
        ],
    )
}
