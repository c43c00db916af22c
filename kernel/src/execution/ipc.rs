//! Synchronous IPC (call / reply-and-wait over portals) and notification waits.
//!
//! A call to a waiting handler copies the message from the caller's UTCB into the handler's,
//! performs the capability transfers, and hands the CPU straight to the handler when it runs on
//! the same CPU (the fast path: no ready queue involved). A call to a busy handler blocks the
//! caller with its message in place; the handler takes it at its next `reply_and_wait`.

use super::threads::RunState;
use super::{Kernel, Next, OBJECTS};
use kernel_objects::ObjectId;
use sluice_abi::ipc::{Utcb, MAX_TRANSFER_ITEMS, MAX_UNTYPED_WORDS, UTCB_SIZE};
use sluice_abi::syscall::{Selector, Status};
use zerocopy::{FromBytes, IntoBytes};

/// Offset of the untyped words in the UTCB.
const UNTYPED_OFFSET: usize = core::mem::offset_of!(Utcb, untyped);
const TRANSFER_OFFSET: usize = core::mem::offset_of!(Utcb, transfer);

fn read_utcb(kernel: &Kernel, thread: u32) -> Result<Utcb, Status> {
    let context = &kernel.threads[thread as usize];
    let domain = context.domain.ok_or(Status::Aborted)?;
    let space = kernel.domains[domain.index as usize % OBJECTS]
        .space
        .as_ref()
        .ok_or(Status::Aborted)?;
    let mut bytes = [0u8; UTCB_SIZE];
    if !space.read(context.utcb, &mut bytes) {
        return Err(Status::BadAddress);
    }
    Utcb::read_from_bytes(&bytes).map_err(|_| Status::BadAddress)
}

fn write_bytes(kernel: &Kernel, thread: u32, offset: usize, bytes: &[u8]) -> Result<(), Status> {
    let context = &kernel.threads[thread as usize];
    let domain = context.domain.ok_or(Status::Aborted)?;
    let space = kernel.domains[domain.index as usize % OBJECTS]
        .space
        .as_ref()
        .ok_or(Status::Aborted)?;
    if space.write(context.utcb + offset as u64, bytes) {
        Ok(())
    } else {
        Err(Status::BadAddress)
    }
}

/// Copies the message of `from` into `to`'s UTCB, with capability transfers. Nothing is
/// delivered if anything is wrong (bad tag, unreadable buffers, a refused transfer).
fn deliver(kernel: &mut Kernel, from: u32, to: u32) -> Result<(), Status> {
    let message = read_utcb(kernel, from)?;
    let receiver = read_utcb(kernel, to)?;
    let tag = message.tag;
    let words = usize::from(tag.untyped_words);
    let items = usize::from(tag.transfer_items);
    if words > MAX_UNTYPED_WORDS || items > MAX_TRANSFER_ITEMS {
        return Err(Status::Overflow);
    }
    if items > 0 {
        let sender = kernel.threads[from as usize]
            .domain
            .ok_or(Status::Aborted)?;
        let destination = kernel.threads[to as usize].domain.ok_or(Status::Aborted)?;
        kernel.model.transfer(
            sender,
            destination,
            &message.transfer[..items],
            receiver.receive_window,
        )?;
    }
    write_bytes(kernel, to, 0, tag.as_bytes())?;
    write_bytes(
        kernel,
        to,
        UNTYPED_OFFSET,
        message.untyped[..words].as_bytes(),
    )?;
    if items > 0 {
        write_bytes(
            kernel,
            to,
            TRANSFER_OFFSET,
            message.transfer[..items].as_bytes(),
        )?;
    }
    Ok(())
}

fn set_status(kernel: &mut Kernel, thread: u32, status: Status) {
    kernel.threads[thread as usize].frame.rax = status.as_raw();
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
            kernel.call_stamp += 1;
            let since = kernel.call_stamp;
            kernel.threads[current as usize].state = RunState::BlockedCall {
                handler,
                portal_id: target.portal_id,
                since,
            };
            Ok(Next::Reschedule)
        }
    }
}

/// The handler takes the call of `caller`: it returns from `reply_and_wait` with the portal id.
fn accept(kernel: &mut Kernel, handler: u32, caller: u32, portal_id: u64) {
    let thread = &mut kernel.threads[handler as usize];
    thread.reply_to = Some(caller);
    thread.frame.rax = Status::Success.as_raw();
    thread.frame.rdi = portal_id;
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
pub fn reply_and_wait(kernel: &mut Kernel, cpu: usize, current: u32) -> Result<Next, Status> {
    let mut replied = None;
    if let Some(caller) = kernel.threads[current as usize].reply_to.take() {
        if kernel.threads[caller as usize].state == (RunState::BlockedReply { handler: current }) {
            let status = match deliver(kernel, current, caller) {
                Ok(()) => Status::Success,
                Err(error) => error,
            };
            set_status(kernel, caller, status);
            replied = Some(caller);
        }
    }
    // Take the oldest blocked caller, if any.
    let waiting = (0..OBJECTS as u32)
        .filter_map(|index| match kernel.threads[index as usize].state {
            RunState::BlockedCall {
                handler,
                portal_id,
                since,
            } if handler == current => Some((since, index, portal_id)),
            _ => None,
        })
        .min();
    if let Some(caller) = replied {
        if waiting.is_some() || kernel.threads[caller as usize].cpu != cpu {
            kernel.make_ready(caller);
            replied = None;
        }
    }
    if let Some((_, caller, portal_id)) = waiting {
        match deliver(kernel, caller, current) {
            Ok(()) => {
                kernel.threads[caller as usize].state = RunState::BlockedReply { handler: current };
                accept(kernel, current, caller, portal_id);
                return Ok(Next::Current);
            }
            Err(error) => {
                // The caller's message is bad: fail its call, keep waiting.
                set_status(kernel, caller, error);
                kernel.make_ready(caller);
            }
        }
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
            set_status(kernel, caller, Status::Aborted);
            kernel.make_ready(caller);
        }
    }
    for other in 0..OBJECTS as u32 {
        let waiting_on_it = match kernel.threads[other as usize].state {
            RunState::BlockedCall { handler, .. } | RunState::BlockedReply { handler } => {
                handler == index
            }
            _ => false,
        };
        if waiting_on_it {
            set_status(kernel, other, Status::Aborted);
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
    notification: ObjectId,
    timeout: u64,
) -> Next {
    if timeout == 0 {
        set_status(kernel, current, Status::Timeout);
        return Next::Current;
    }
    let deadline = if timeout == sluice_abi::syscall::WAIT_FOREVER {
        u64::MAX
    } else {
        kernel.ticks.saturating_add(timeout)
    };
    let thread = &mut kernel.threads[current as usize];
    thread.frame.rip -= 2; // the `syscall` instruction is 2 bytes (0F 05)
    thread.state = RunState::BlockedWait {
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
                let thread = &mut kernel.threads[index as usize];
                thread.frame.rip += 2;
                thread.frame.rax = Status::Timeout.as_raw();
                kernel.make_ready(index);
            }
        }
    }
}
