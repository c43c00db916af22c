//! The IPC fast path: `call` to a handler waiting on this CPU, and `reply_and_wait` to a caller
//! on this CPU with nobody else queued, when the message is plain words (no capability
//! transfers) and both UTCB translations are cached. Such a hand-off needs no decoder, no ready
//! queue and no register copy: the message moves between the two UTCBs, the partner's status
//! goes into its slot, and the CPU leaves through the partner's slot.
//!
//! Every check comes before the first change, so a call that does not qualify returns `None`
//! with nothing touched and takes the general path (`ipc::call`, `ipc::reply_and_wait`), which
//! has the same outcome for the same state (and names every error). What the fast path skips is
//! only work the general path would find unnecessary.

use super::ipc::cached_utcb;
use super::threads::RunState;
use super::{frames, ipc, Kernel, SLOTS};
use crate::percpu;
use crate::trap::TrapFrame;
use sluice_abi::ipc::{MessageTag, MAX_UNTYPED_WORDS};
use sluice_abi::syscall::{Selector, Status, Syscall};

/// Whether `frame` holds a `call` or `reply_and_wait` (the only calls [`try_ipc`] can take),
/// so other system calls do not take the lock twice.
#[inline(always)]
pub fn is_candidate(frame: &TrapFrame) -> bool {
    frame.rax == Syscall::Call as u64 || frame.rax == Syscall::ReplyAndWait as u64
}

/// Handles `frame`'s system call if it qualifies; returns the thread now running on `cpu`.
pub fn try_ipc(kernel: &mut Kernel, cpu: usize, frame: &mut TrapFrame) -> Option<u32> {
    // The forms `decode` accepts for the two calls: every unused argument zero.
    if frame.rsi | frame.rdx | frame.r10 | frame.r8 | frame.r9 != 0 {
        return None;
    }
    let current = kernel.scheduler.current[cpu]?;
    if frame.rax == Syscall::Call as u64 {
        call(kernel, cpu, current, frame.rdi)
    } else if frame.rax == Syscall::ReplyAndWait as u64 && frame.rdi == 0 {
        reply_and_wait(kernel, cpu, current)
    } else {
        None
    }
}

fn call(kernel: &mut Kernel, cpu: usize, current: u32, selector: u64) -> Option<u32> {
    if selector >= SLOTS as u64 {
        return None;
    }
    let calling = kernel.threads.get(current as usize)?;
    let source = cached_utcb(kernel, calling, false)?;
    let target = kernel
        .model
        .portal_target(calling.domain?, Selector(selector as u32))
        .ok()?;
    let handler = target.handler.index;
    let waiting = kernel.threads.get(handler as usize)?;
    if waiting.id != Some(target.handler)
        || handler == current
        || waiting.state != RunState::BlockedReceive
        || waiting.cpu != cpu
    {
        return None;
    }
    let destination = cached_utcb(kernel, waiting, true)?;
    // SAFETY: both are cached UTCB translations of two different threads.
    unsafe { copy_words(source, destination)? };
    kernel.threads[current as usize].state = RunState::BlockedReply { handler };
    kernel.threads[handler as usize].reply_to = Some(current);
    // The handler is blocked, not running: its slot is free to write (frames module rule).
    let handler_frame = frames::frame(handler);
    handler_frame.rax = Status::Success.as_raw();
    handler_frame.rdi = target.portal_id;
    Some(switch_to(kernel, cpu, handler))
}

fn reply_and_wait(kernel: &mut Kernel, cpu: usize, current: u32) -> Option<u32> {
    let replying = kernel.threads.get(current as usize)?;
    let caller = replying.reply_to?;
    if replying.callers_head.is_some() {
        return None;
    }
    let waiting = kernel.threads.get(caller as usize)?;
    if waiting.state != (RunState::BlockedReply { handler: current }) || waiting.cpu != cpu {
        return None;
    }
    let source = cached_utcb(kernel, replying, false)?;
    let destination = cached_utcb(kernel, waiting, true)?;
    // SAFETY: both are cached UTCB translations of two different threads (a thread never
    // owes itself a reply: calling oneself is refused).
    unsafe { copy_words(source, destination)? };
    frames::frame(caller).rax = Status::Success.as_raw();
    let thread = &mut kernel.threads[current as usize];
    thread.reply_to = None;
    thread.state = RunState::BlockedReceive;
    Some(switch_to(kernel, cpu, caller))
}

/// Copies the tag and untyped words of the message at `source` into `destination`, if the
/// message has no transfer items and its tag is valid. Nothing is written otherwise.
///
/// # Safety
/// Both are UTCB pages of two different threads, mapped in the kernel's direct map.
unsafe fn copy_words(source: *mut u8, destination: *mut u8) -> Option<()> {
    // SAFETY: the tag is the UTCB's first field, 8 bytes, read as one word (its layout is
    // `MessageTag::to_raw`'s: the ABI is little-endian x86-64).
    let raw_tag = unsafe { core::ptr::read_volatile(source.add(ipc::TAG_OFFSET) as *const u64) };
    let tag = MessageTag::from_raw(raw_tag);
    let words = usize::from(tag.untyped_words);
    if tag.transfer_items != 0 || words > MAX_UNTYPED_WORDS {
        return None;
    }
    let from_words = source.wrapping_add(ipc::UNTYPED_OFFSET) as *const u64;
    let to_words = destination.wrapping_add(ipc::UNTYPED_OFFSET) as *mut u64;
    // SAFETY: the counted words lie inside both UTCB pages (the caller's guarantee), which do
    // not overlap. Messages are short: a word loop (volatile, so it stays a loop) beats a
    // `memcpy` call.
    unsafe {
        for word in 0..words {
            core::ptr::write_volatile(
                to_words.add(word),
                core::ptr::read_volatile(from_words.add(word)),
            );
        }
        core::ptr::write_volatile(destination.add(ipc::TAG_OFFSET) as *mut u64, raw_tag);
    }
    Some(())
}

/// Makes `target` the running thread of `cpu` (the caller is blocked, so not requeued). The
/// CPU stays marked active (`execution::system_call` explains why that is safe here).
fn switch_to(kernel: &mut Kernel, cpu: usize, target: u32) -> u32 {
    percpu::set_frame_top(cpu, frames::top(target));
    kernel.enter(cpu, target);
    target
}
