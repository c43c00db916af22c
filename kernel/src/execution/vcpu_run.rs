//! `vcpu_control(run)`: the VMM's thread runs its vCPU on this CPU until an exit the VMM must
//! see. The reply (the VMM's UTCB words) is copied under the kernel lock into this CPU's
//! scratch, the guest runs without the lock, and the exit message is written back to the UTCB
//! under the lock (the UTCB translation is only trusted while the lock is held: another CPU may
//! unmap it meanwhile, and the shootdown protocol only protects a CPU's own address space).
//!
//! The well-formed run call (every unused argument zero) takes [`fast`], straight from the
//! system-call entry: no IPC fast-path check, no decoder, and when the thread keeps running
//! after the exit (the usual case) no scheduler pass either.

use super::threads::RunState;
use super::{frames, ipc, Kernel, Next, KERNEL, SLOTS};
use crate::percpu::MAX_CPUS;
use crate::sync::SpinGuard;
use crate::trap::TrapFrame;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use sluice_abi::ipc::MAX_UNTYPED_WORDS;
use sluice_abi::syscall::{Selector, Status, Syscall};
use sluice_abi::vcpu::{ExitReason, MAX_EXIT_WORDS};

/// Per-CPU buffers for the reply and the exit message, never zeroed: only the words a message
/// counts are written and read.
struct Scratch {
    reply: [MaybeUninit<u64>; MAX_UNTYPED_WORDS],
    exit: [u64; MAX_EXIT_WORDS],
}

struct PerCpuScratch([UnsafeCell<Scratch>; MAX_CPUS]);

// SAFETY: each CPU uses only its own entry (indexed by its CPU number), from the system-call
// path, which never runs twice at once on one CPU (the kernel is not preempted, and the
// interrupt handlers that run inside a vCPU loop do not touch it).
unsafe impl Sync for PerCpuScratch {}

static SCRATCH: PerCpuScratch = PerCpuScratch(
    [const {
        UnsafeCell::new(Scratch {
            reply: [MaybeUninit::uninit(); MAX_UNTYPED_WORDS],
            exit: [0; MAX_EXIT_WORDS],
        })
    }; MAX_CPUS],
);

/// The well-formed `vcpu_control(vcpu, run)` in `frame`, handled completely; None when the
/// call has another form (the generic decoder takes it and names any error). Inlined into the
/// system-call entry so other calls pay only the number comparison.
#[inline(always)]
pub fn fast(cpu: usize, frame: &mut TrapFrame) -> Option<*mut TrapFrame> {
    if frame.rax != Syscall::VcpuControl as u64
        || frame.rsi != kernel_objects::decode::VCPU_RUN
        || frame.rdi >= SLOTS as u64
        || frame.rdx | frame.r10 | frame.r8 | frame.r9 != 0
    {
        return None;
    }
    Some(fast_run(cpu, frame))
}

#[inline(never)]
fn fast_run(cpu: usize, frame: &mut TrapFrame) -> *mut TrapFrame {
    // This path waits for the lock and then runs a guest: it stops counting as active like
    // every other entry (the vCPU loop marks the CPU active around guest execution itself).
    crate::smp::set_active(false);
    let kernel = KERNEL.lock();
    let Some(current) = kernel.scheduler.current[cpu] else {
        drop(kernel);
        super::idle(cpu)
    };
    let vcpu = kernel.threads[current as usize]
        .domain
        .ok_or(Status::Aborted)
        .and_then(|domain| kernel.model.vcpu_target(domain, Selector(frame.rdi as u32)));
    match vcpu {
        Ok((vcpu, _)) => run(kernel, cpu, current, vcpu.index, frame),
        Err(status) => {
            frame.rax = status.as_raw();
            leave(kernel, cpu, Next::Current)
        }
    }
}

/// Runs vCPU `vcpu` (object index, already checked: the caller holds a capability with the
/// RUN right) for thread `current`, whose registers are `frame`. Returns the frame to resume.
pub fn run(
    mut kernel: SpinGuard<'_, Kernel>,
    cpu: usize,
    current: u32,
    vcpu: u32,
    frame: &mut TrapFrame,
) -> *mut TrapFrame {
    // SAFETY: this CPU's own scratch, used by nothing else while this call runs (see
    // `PerCpuScratch`).
    let scratch = unsafe { &mut *SCRATCH.0[cpu % MAX_CPUS].get() };
    // For the return without the lock (below): the UTCB as translated now (a VMM's UTCB is
    // writable: it receives the exits), and the lock's acquisition count while this CPU holds
    // it.
    let utcb = ipc::utcb_pointer(&mut kernel, current, true).ok();
    let epoch = KERNEL.acquisitions();
    let reply = match utcb {
        // SAFETY: translated just now, under the kernel lock, which is still held.
        Some(utcb) => unsafe { ipc::read_words_at(utcb, &mut scratch.reply) },
        None => ipc::read_message_words(&mut kernel, current, &mut scratch.reply),
    };
    drop(kernel);
    let result = reply.and_then(|reply| crate::virtualization::run(vcpu, reply, &mut scratch.exit));
    let preempted = u64::from(ExitReason::Preempted.code());
    if let (Ok(count), Some(utcb)) = (&result, utcb) {
        let count = (*count).min(MAX_EXIT_WORDS);
        if count > 0 && scratch.exit[0] & 0xffff_ffff != preempted {
            // Nobody took the kernel lock since this CPU held it: no thread state, mapping,
            // capability or flush generation changed, so the thread still runs here, its
            // address space is loaded and its UTCB translation is the one taken above. The
            // CPU is marked active first: a shootdown that starts after the check sees it and
            // waits until this CPU is back in ring 3 (where it takes the flush interrupt),
            // which is after the UTCB write; one that started before changed the count
            // (`SpinLock::acquisitions`, `smp::flush_everywhere`).
            // (The vCPU loop leaves the CPU marked after a guest exit it returns.)
            if !crate::smp::is_active() {
                crate::smp::set_active(true);
            }
            if KERNEL.acquisitions() == epoch {
                // SAFETY: the UTCB frame stays the thread's until a shootdown that must wait
                // for this CPU (argument above).
                unsafe { ipc::write_words_at(utcb, &scratch.exit[..count]) };
                frame.rax = Status::Success.as_raw();
                return frames::slot(current);
            }
        }
    }
    // The general return: something happened meanwhile, or the exit is not one to return
    // straight. It must not wait for the lock while active.
    crate::smp::set_active(false);
    let mut kernel = KERNEL.lock();
    let next = match result.and_then(|count| {
        let words = scratch.exit.get(..count).ok_or(Status::Overflow)?;
        ipc::write_message_words(&mut kernel, current, words).map(|()| count)
    }) {
        Ok(count) => {
            frame.rax = Status::Success.as_raw();
            // A preemption exit also gives the CPU to other ready threads.
            if count > 0 && scratch.exit[0] & 0xffff_ffff == preempted {
                Next::Reschedule
            } else {
                Next::Current
            }
        }
        Err(status) => {
            frame.rax = status.as_raw();
            Next::Current
        }
    };
    // Usually the thread simply goes on (nothing stopped it while the guest ran): no
    // scheduler pass, only the address-space and active-flag checks of `run`.
    let still_running = kernel.scheduler.current[cpu] == Some(current)
        && kernel.threads[current as usize].state == RunState::Running;
    if matches!(next, Next::Current) && still_running {
        kernel.run(cpu, current);
        return frames::slot(current);
    }
    leave(kernel, cpu, next)
}

fn leave(mut kernel: SpinGuard<'_, Kernel>, cpu: usize, next: Next) -> *mut TrapFrame {
    match kernel.leave(cpu, next) {
        Some(index) => frames::slot(index),
        None => {
            drop(kernel);
            super::idle(cpu)
        }
    }
}
