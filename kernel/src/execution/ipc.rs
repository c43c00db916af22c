//! Synchronous IPC (call / reply-and-wait over portals) and notification waits.
//!
//! A call to a waiting handler copies the message from the caller's UTCB into the handler's,
//! performs the capability transfers, and hands the CPU straight to the handler when it runs on
//! the same CPU (the fast path: no ready queue involved). A call to a busy handler blocks the
//! caller with its message in place; the handler takes it at its next `reply_and_wait`.

use super::threads::{self, RunState, ThreadContext};
use super::{Kernel, Next, OBJECTS};
use crate::trap::TrapFrame;
use kernel_objects::ObjectId;
use sluice_abi::ipc::{
    MessageTag, ReceiveWindow, TransferItem, Utcb, MAX_TRANSFER_ITEMS, MAX_UNTYPED_WORDS,
};
use sluice_abi::syscall::{Selector, Status};
use zerocopy::IntoBytes;

// Field offsets in the UTCB (sluice_abi::ipc).
pub(super) const TAG_OFFSET: usize = core::mem::offset_of!(Utcb, tag);
const WINDOW_OFFSET: usize = core::mem::offset_of!(Utcb, receive_window);
pub(super) const UNTYPED_OFFSET: usize = core::mem::offset_of!(Utcb, untyped);
const TRANSFER_OFFSET: usize = core::mem::offset_of!(Utcb, transfer);

/// Where `thread`'s UTCB is, through the kernel's direct map: the UTCB is one page-aligned
/// page (checked at `create_thread`), so one translation covers every field. `write` asks for a
/// page the thread may write.
pub(super) fn utcb_pointer(
    kernel: &mut Kernel,
    thread: u32,
    write: bool,
) -> Result<*mut u8, Status> {
    let context = &kernel.threads[thread as usize];
    if let Some(cached) = cached_utcb(kernel, context, write) {
        return Ok(cached);
    }
    let domain = context.domain.ok_or(Status::Aborted)?;
    let state = &kernel.domains[domain.index as usize % OBJECTS];
    let space = state.space.as_ref().ok_or(Status::Aborted)?;
    let utcb = context.utcb;
    let physical = space.translate(utcb, write).ok_or(Status::BadAddress)?;
    let writable = write || space.translate(utcb, true).is_some();
    let generation = state.flush_generation;
    kernel.threads[thread as usize].utcb_cache = Some(super::threads::UtcbCache {
        physical,
        writable,
        generation,
    });
    Ok(crate::paging::phys_to_virt(physical))
}

/// `thread`'s UTCB through the direct map, only from its cached translation: the translation is
/// kept per thread until the domain's mappings shrink (an unmap bumps the flush generation, and
/// a mapped page cannot be replaced without an unmap first). [`utcb_pointer`] fills the cache.
pub(super) fn cached_utcb(kernel: &Kernel, thread: &ThreadContext, write: bool) -> Option<*mut u8> {
    let cache = thread.utcb_cache?;
    let domain = thread.domain?;
    let generation = kernel.domains[domain.index as usize % OBJECTS].flush_generation;
    (cache.generation == generation && (cache.writable || !write))
        .then(|| crate::paging::phys_to_virt(cache.physical))
}

/// Copies `length` bytes between two UTCB fields.
///
/// # Safety
/// Both pointers come from [`utcb_pointer`] and `offset + length` stays inside the UTCB.
unsafe fn copy_field(from: *const u8, to: *mut u8, offset: usize, length: usize) {
    // SAFETY: the caller guarantees both ranges lie inside mapped UTCB pages; they are distinct
    // threads' pages or the same bytes (a thread calling itself is refused), so no overlap
    // hazard beyond what `copy` allows.
    unsafe { core::ptr::copy(from.add(offset), to.add(offset), length) };
}

/// Copies the message of `from` into `to`'s UTCB, with capability transfers. Only the tag, the
/// words it counts and (with items) the transfer items and the receiver's window are touched.
/// Nothing is delivered if anything is wrong (bad tag, unmapped buffers, a refused transfer).
fn deliver(kernel: &mut Kernel, from: u32, to: u32) -> Result<(), Status> {
    let source = utcb_pointer(kernel, from, false)?;
    let destination = utcb_pointer(kernel, to, true)?;
    // SAFETY: `source` points at a mapped UTCB page; the tag is its first 8 bytes.
    let tag = unsafe { core::ptr::read_volatile(source.add(TAG_OFFSET) as *const MessageTag) };
    let words = usize::from(tag.untyped_words);
    let items = usize::from(tag.transfer_items);
    if words > MAX_UNTYPED_WORDS || items > MAX_TRANSFER_ITEMS {
        return Err(Status::Overflow);
    }
    if items > 0 {
        let mut transfer = [TransferItem::default(); MAX_TRANSFER_ITEMS];
        let mut window = ReceiveWindow::default();
        // SAFETY: both fields lie inside the mapped UTCB pages (offsets from `Utcb`).
        unsafe {
            core::ptr::copy_nonoverlapping(
                source.add(TRANSFER_OFFSET),
                transfer.as_mut_bytes().as_mut_ptr(),
                items * core::mem::size_of::<TransferItem>(),
            );
            core::ptr::copy_nonoverlapping(
                destination.add(WINDOW_OFFSET),
                window.as_mut_bytes().as_mut_ptr(),
                core::mem::size_of::<ReceiveWindow>(),
            );
        }
        let sender = kernel.threads[from as usize]
            .domain
            .ok_or(Status::Aborted)?;
        let receiver = kernel.threads[to as usize].domain.ok_or(Status::Aborted)?;
        kernel
            .model
            .transfer(sender, receiver, &transfer[..items], window)?;
        // SAFETY: as above.
        unsafe {
            copy_field(
                source,
                destination,
                TRANSFER_OFFSET,
                items * core::mem::size_of::<TransferItem>(),
            )
        };
    }
    // SAFETY: as above; the words and the tag lie inside both UTCBs.
    unsafe {
        copy_field(source, destination, UNTYPED_OFFSET, words * 8);
        core::ptr::write_volatile(destination.add(TAG_OFFSET) as *mut MessageTag, tag);
    }
    Ok(())
}

/// Sets the status a blocked (not running) thread's system call returns.
fn set_status(thread: u32, status: Status) {
    super::frames::frame(thread).rax = status.as_raw();
}

/// `call(portal)` by `current`.
pub fn call(
    kernel: &mut Kernel,
    cpu: usize,
    current: u32,
    portal: Selector,
) -> Result<Next, Status> {
    let domain = kernel.threads[current as usize]
        .domain
        .ok_or(Status::Aborted)?;
    let target = kernel.model.portal_target(domain, portal)?;
    let handler = target.handler.index;
    if handler as usize >= OBJECTS || kernel.threads[handler as usize].id != Some(target.handler) {
        return Err(Status::Aborted);
    }
    if handler == current {
        return Err(Status::Busy);
    }
    match kernel.threads[handler as usize].state {
        RunState::BlockedReceive => {
            deliver(kernel, current, handler)?;
            kernel.threads[current as usize].state = RunState::BlockedReply { handler };
            accept(kernel, handler, current, target.portal_id);
            Ok(hand_over(kernel, cpu, handler))
        }
        RunState::Faulted | RunState::Free => Err(Status::Aborted),
        _ => {
            threads::enqueue_caller(&mut kernel.threads, handler, current);
            kernel.threads[current as usize].state = RunState::BlockedCall {
                handler,
                portal_id: target.portal_id,
            };
            Ok(Next::Reschedule)
        }
    }
}

/// The handler takes the call of `caller`: it returns from `reply_and_wait` with the portal id.
fn accept(kernel: &mut Kernel, handler: u32, caller: u32, portal_id: u64) {
    kernel.threads[handler as usize].reply_to = Some(caller);
    let frame = super::frames::frame(handler);
    frame.rax = Status::Success.as_raw();
    frame.rdi = portal_id;
}

/// Runs `target` next: directly on this CPU, or through its own CPU's queue.
fn hand_over(kernel: &mut Kernel, cpu: usize, target: u32) -> Next {
    if kernel.threads[target as usize].cpu == cpu {
        Next::SwitchTo(target)
    } else {
        kernel.make_ready(target);
        Next::Reschedule
    }
}

/// `reply_and_wait()` by `current`.
pub fn reply_and_wait(
    kernel: &mut Kernel,
    cpu: usize,
    current: u32,
    frame: &mut TrapFrame,
) -> Result<Next, Status> {
    let mut replied = None;
    if let Some(caller) = kernel.threads[current as usize].reply_to.take() {
        if kernel.threads[caller as usize].state == (RunState::BlockedReply { handler: current }) {
            let status = match deliver(kernel, current, caller) {
                Ok(()) => Status::Success,
                Err(error) => error,
            };
            set_status(caller, status);
            replied = Some(caller);
        }
    }
    // Take the oldest blocked caller whose message can be delivered (a bad message fails that
    // caller's call and the next one is tried).
    let mut taken = None;
    while let Some(caller) = threads::dequeue_caller(&mut kernel.threads, current) {
        let RunState::BlockedCall { portal_id, .. } = kernel.threads[caller as usize].state else {
            continue;
        };
        match deliver(kernel, caller, current) {
            Ok(()) => {
                taken = Some((caller, portal_id));
                break;
            }
            Err(error) => {
                set_status(caller, error);
                kernel.make_ready(caller);
            }
        }
    }
    if let Some(caller) = replied {
        if taken.is_some() || kernel.threads[caller as usize].cpu != cpu {
            kernel.make_ready(caller);
            replied = None;
        }
    }
    if let Some((caller, portal_id)) = taken {
        kernel.threads[caller as usize].state = RunState::BlockedReply { handler: current };
        // `current` keeps running: its results go into its live registers.
        kernel.threads[current as usize].reply_to = Some(caller);
        frame.rax = Status::Success.as_raw();
        frame.rdi = portal_id;
        return Ok(Next::Current);
    }
    kernel.threads[current as usize].state = RunState::BlockedReceive;
    Ok(match replied {
        Some(caller) => Next::SwitchTo(caller),
        None => Next::Reschedule,
    })
}

/// Fails the IPC partners of a thread that stops: its blocked callers and the caller it owed
/// a reply get `Aborted`; if it was waiting for a reply, nothing is owed to it any more.
pub fn abort_partners(kernel: &mut Kernel, index: u32) {
    if let Some(caller) = kernel.threads[index as usize].reply_to.take() {
        if kernel.threads[caller as usize].state == (RunState::BlockedReply { handler: index }) {
            set_status(caller, Status::Aborted);
            kernel.make_ready(caller);
        }
    }
    // Its queue of blocked callers empties: each gets `Aborted` below.
    while threads::dequeue_caller(&mut kernel.threads, index).is_some() {}
    threads::unqueue_caller(&mut kernel.threads, index);
    for other in 0..OBJECTS as u32 {
        let waiting_on_it = match kernel.threads[other as usize].state {
            RunState::BlockedCall { handler, .. } | RunState::BlockedReply { handler } => {
                handler == index
            }
            _ => false,
        };
        if waiting_on_it {
            set_status(other, Status::Aborted);
            kernel.make_ready(other);
        }
    }
    if let RunState::BlockedReply { handler } = kernel.threads[index as usize].state {
        if kernel.threads[handler as usize].reply_to == Some(index) {
            kernel.threads[handler as usize].reply_to = None;
        }
    }
}

/// `wait(notification, timeout)` found nothing pending: block (the RIP is rewound so the
/// woken thread re-issues `wait` and takes the bits) or time out at once.
pub fn block_on_notification(
    kernel: &mut Kernel,
    current: u32,
    frame: &mut TrapFrame,
    notification: ObjectId,
    timeout: u64,
) -> Next {
    if timeout == 0 {
        frame.rax = Status::Timeout.as_raw();
        return Next::Current;
    }
    let deadline = if timeout == sluice_abi::syscall::WAIT_FOREVER {
        u64::MAX
    } else {
        kernel.ticks.saturating_add(timeout)
    };
    frame.rip -= 2; // the `syscall` instruction is 2 bytes (0F 05)
    kernel.threads[current as usize].state = RunState::BlockedWait {
        notification,
        deadline,
    };
    Next::Reschedule
}

/// Wakes every thread waiting on `notification`.
pub fn wake_waiters(kernel: &mut Kernel, notification: ObjectId) {
    for index in 0..OBJECTS as u32 {
        if let RunState::BlockedWait {
            notification: waited,
            ..
        } = kernel.threads[index as usize].state
        {
            if waited == notification {
                kernel.make_ready(index);
            }
        }
    }
}

/// Times out waits on `cpu` whose deadline passed.
pub fn expire_waits(kernel: &mut Kernel, cpu: usize) {
    let now = kernel.ticks;
    for index in 0..OBJECTS as u32 {
        let thread = &kernel.threads[index as usize];
        if let RunState::BlockedWait { deadline, .. } = thread.state {
            if thread.cpu == cpu && deadline <= now {
                let frame = super::frames::frame(index);
                frame.rip += 2;
                frame.rax = Status::Timeout.as_raw();
                kernel.make_ready(index);
            }
        }
    }
}

/// Copies the untyped words of `thread`'s UTCB message into `words` and returns them (the
/// buffer need not be initialized: only the message's words are copied, and only they are
/// returned).
pub fn read_message_words<'a>(
    kernel: &mut Kernel,
    thread: u32,
    words: &'a mut [core::mem::MaybeUninit<u64>; MAX_UNTYPED_WORDS],
) -> Result<&'a [u64], Status> {
    let source = utcb_pointer(kernel, thread, false)?;
    // SAFETY: `source` is the thread's mapped UTCB page, translated just now under the lock.
    unsafe { read_words_at(source, words) }
}

/// [`read_message_words`] from the UTCB at `source`.
///
/// # Safety
/// `source` is a UTCB page in the direct map that stays allocated to its thread's domain for
/// the whole call.
pub(super) unsafe fn read_words_at(
    source: *const u8,
    words: &mut [core::mem::MaybeUninit<u64>; MAX_UNTYPED_WORDS],
) -> Result<&[u64], Status> {
    // SAFETY: the tag is the UTCB's first 8 bytes (the caller's guarantee covers the page),
    // read as one word in the layout of `MessageTag::to_raw` (little-endian x86-64).
    let raw = unsafe { core::ptr::read_volatile(source.add(TAG_OFFSET) as *const u64) };
    let count = usize::from(MessageTag::from_raw(raw).untyped_words);
    if count > MAX_UNTYPED_WORDS {
        return Err(Status::Overflow);
    }
    // SAFETY: the counted words lie inside the UTCB page.
    unsafe {
        core::ptr::copy_nonoverlapping(
            source.add(UNTYPED_OFFSET),
            words.as_mut_ptr() as *mut u8,
            count * 8,
        )
    };
    // SAFETY: the first `count` words were just written.
    Ok(unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u64, count) })
}

/// Writes `words` as `thread`'s message (label 0, no transfer items).
pub fn write_message_words(kernel: &mut Kernel, thread: u32, words: &[u64]) -> Result<(), Status> {
    let destination = utcb_pointer(kernel, thread, true)?;
    // SAFETY: `destination` is the thread's mapped, writable UTCB page, translated just now
    // under the kernel lock.
    unsafe { write_words_at(destination, words) };
    Ok(())
}

/// Writes `words` (at most [`MAX_UNTYPED_WORDS`]) as the message in the UTCB at `destination`
/// (label 0, no transfer items).
///
/// # Safety
/// `destination` is a UTCB page in the direct map that stays allocated to its thread's domain
/// for the whole call.
pub(super) unsafe fn write_words_at(destination: *mut u8, words: &[u64]) {
    let count = words.len().min(MAX_UNTYPED_WORDS);
    // SAFETY: the words lie inside the UTCB page (the caller's guarantee).
    unsafe {
        core::ptr::copy_nonoverlapping(
            words.as_ptr() as *const u8,
            destination.add(UNTYPED_OFFSET),
            count * 8,
        );
        write_tag_at(destination, count);
    }
}

/// Writes the tag of a message of `count` untyped words (label 0, no transfer items) into the
/// UTCB at `destination`.
///
/// # Safety
/// As for [`write_words_at`].
pub(super) unsafe fn write_tag_at(destination: *mut u8, count: usize) {
    let tag = MessageTag {
        label: 0,
        untyped_words: count.min(MAX_UNTYPED_WORDS) as u16,
        transfer_items: 0,
    };
    // SAFETY: the tag is the UTCB's first field, 8 bytes, written as one word in the layout of
    // `MessageTag::to_raw` (little-endian x86-64); the caller's guarantee covers the page.
    unsafe { core::ptr::write_volatile(destination.add(TAG_OFFSET) as *mut u64, tag.to_raw()) };
}
