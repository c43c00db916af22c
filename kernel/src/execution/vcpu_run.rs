//! `vcpu_control(run)`: the VMM's thread runs its vCPU on this CPU until an exit the VMM must
//! see. The reply (the VMM's UTCB words) is copied under the kernel lock into this CPU's
//! scratch and the guest runs without the lock. The exit goes straight into the UTCB when
//! nobody took the kernel lock meanwhile ([`DirectExit`]: then nothing the UTCB translation or
//! the thread's state depends on can have changed); otherwise it goes to scratch and is copied
//! under the lock, where the UTCB translation is checked again (another CPU may have unmapped
//! it) and the scheduler decides who runs.
//!
//! The well-formed run call (every unused argument zero) takes [`fast`], straight from the
//! system-call entry: no IPC fast-path check, no decoder, and on a direct exit no second
//! lock round and no scheduler pass.

use super::threads::RunState;
use super::{frames, ipc, Kernel, Next, KERNEL, SLOTS};
use crate::percpu::MAX_CPUS;
use crate::sync::SpinGuard;
use crate::trap::TrapFrame;
use crate::virtualization::Delivered;
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
    last: Option<LastRun>,
}

/// The lookups of the last well-formed run on this CPU: `thread` ran `selector`, which named
/// vCPU `vcpu`, with its UTCB at `utcb`, and the kernel lock had been taken `acquisitions`
/// times when they were made (under the lock). When the same thread runs the same selector
/// again and the count is exactly one more (its own acquisition), nobody took the kernel lock
/// in between, so no capability, object, thread, mapping or flush generation changed: the
/// lookups would give the same answers, and are skipped.
#[derive(Clone, Copy)]
struct LastRun {
    thread: u32,
    selector: u32,
    acquisitions: u64,
    vcpu: u32,
    utcb: *mut u8,
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
            last: None,
        })
    }; MAX_CPUS],
);

/// The VMM's UTCB as translated under the kernel lock before the guest ran, and the lock's
/// acquisition count then. The vCPU loop may encode the exit straight into it when, at the
/// exit, the CPU is still marked active and nobody has taken the kernel lock since: then no
/// thread state, mapping or flush generation changed, so the thread still runs here and the
/// UTCB frame is still its own; and a shootdown that starts after the check sees the CPU
/// active and waits until it is back in ring 3, after the write (`SpinLock::acquisitions`,
/// `smp::flush_everywhere`).
pub struct DirectExit {
    utcb: *mut u8,
    epoch: u64,
}

impl DirectExit {
    /// The UTCB's message words, if the exit may be written there now (see the type). (The
    /// words are not `self`'s: it only names the page, so a shared borrow hands them out.)
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub fn words(&self) -> Option<&mut [u64; MAX_EXIT_WORDS]> {
        if !crate::smp::is_active() || KERNEL.acquisitions() != self.epoch {
            return None;
        }
        // SAFETY: the UTCB page stays the thread's while the conditions above hold (the type's
        // documentation); its word area holds MAX_UNTYPED_WORDS >= MAX_EXIT_WORDS words, is
        // 8-byte aligned in a page-aligned UTCB, and nothing else writes it meanwhile (its
        // thread is in this system call).
        Some(unsafe { &mut *(self.utcb.add(ipc::UNTYPED_OFFSET) as *mut [u64; MAX_EXIT_WORDS]) })
    }

    /// Completes a message written through [`DirectExit::words`]: its tag, `count` words.
    #[inline(always)]
    pub fn finish(&self, count: usize) {
        // SAFETY: as in `words`, which the caller used just before.
        unsafe { ipc::write_tag_at(self.utcb, count) };
    }
}

const _: () = assert!(MAX_EXIT_WORDS <= MAX_UNTYPED_WORDS);

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
    // Taken at once, the lock is held with the CPU still marked active (as on the IPC fast
    // path: nothing waits, so no shootdown waits for this CPU while it holds the lock, and none
    // can start meanwhile); otherwise the CPU stops counting as active before it waits.
    let mut kernel = match KERNEL.try_lock() {
        Some(kernel) => kernel,
        None => {
            crate::smp::set_active(false);
            KERNEL.lock()
        }
    };
    let Some(current) = kernel.scheduler.current[cpu] else {
        drop(kernel);
        super::idle(cpu)
    };
    let selector = frame.rdi as u32;
    let acquisitions = KERNEL.acquisitions();
    // SAFETY: this CPU's own scratch (see `PerCpuScratch`); the reference ends before
    // `run_with` takes it again.
    let last = unsafe { &mut (*SCRATCH.0[cpu % MAX_CPUS].get()).last };
    if let Some(record) = last {
        if record.thread == current
            && record.selector == selector
            && record.acquisitions.wrapping_add(1) == acquisitions
        {
            record.acquisitions = acquisitions;
            let (vcpu, utcb) = (record.vcpu, record.utcb);
            return run_with(kernel, cpu, current, vcpu, Some(utcb), frame);
        }
    }
    let vcpu = kernel.threads[current as usize]
        .domain
        .ok_or(Status::Aborted)
        .and_then(|domain| kernel.model.vcpu_target(domain, Selector(selector)));
    match vcpu {
        Ok((vcpu, _)) => {
            let utcb = ipc::utcb_pointer(&mut kernel, current, true).ok();
            if let Some(utcb) = utcb {
                *last = Some(LastRun {
                    thread: current,
                    selector,
                    acquisitions,
                    vcpu: vcpu.index,
                    utcb,
                });
            }
            run_with(kernel, cpu, current, vcpu.index, utcb, frame)
        }
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
    // For the return without the lock (below): the UTCB as translated now (a VMM's UTCB is
    // writable: it receives the exits).
    let utcb = ipc::utcb_pointer(&mut kernel, current, true).ok();
    run_with(kernel, cpu, current, vcpu, utcb, frame)
}

/// [`run`] with the thread's UTCB already translated under the lock still held (None when it
/// cannot be written: the exit then goes through scratch and the general copy, which names the
/// error).
#[inline(always)]
fn run_with(
    mut kernel: SpinGuard<'_, Kernel>,
    cpu: usize,
    current: u32,
    vcpu: u32,
    utcb: Option<*mut u8>,
    frame: &mut TrapFrame,
) -> *mut TrapFrame {
    // SAFETY: this CPU's own scratch, used by nothing else while this call runs (see
    // `PerCpuScratch`).
    let scratch = unsafe { &mut *SCRATCH.0[cpu % MAX_CPUS].get() };
    // The lock's acquisition count while this CPU holds it, for the direct exit.
    let epoch = KERNEL.acquisitions();
    let reply = match utcb {
        // SAFETY: translated just now, under the kernel lock, which is still held.
        Some(utcb) => unsafe { ipc::read_words_at(utcb, &mut scratch.reply) },
        None => ipc::read_message_words(&mut kernel, current, &mut scratch.reply),
    };
    drop(kernel);
    let output = crate::virtualization::ExitOutput {
        scratch: &mut scratch.exit,
        direct: utcb.map(|utcb| DirectExit { utcb, epoch }),
    };
    let result = reply.and_then(|reply| crate::virtualization::run(vcpu, reply, output));
    let preempted = u64::from(ExitReason::Preempted.code());
    // Written straight into the UTCB (see `DirectExit`): back to the thread.
    if let Ok(Delivered::Direct(_)) = result {
        frame.rax = Status::Success.as_raw();
        return frames::slot(current);
    }
    // The general return: somebody took the kernel lock while the guest ran (the count only
    // grows, so checking again now would fail too), a preemption exit, or an error. It must not
    // wait for the lock while active.
    crate::smp::set_active(false);
    let mut kernel = KERNEL.lock();
    let next = match result.and_then(|delivered| {
        let Delivered::Scratch(count) = delivered else {
            return Err(Status::Aborted);
        };
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
