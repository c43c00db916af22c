//! The kernel's side of each thread: scheduling state, IPC state (its registers live in its
//! slot, `super::frames`). The object
//! model owns the thread object and its capabilities; this table, indexed by the thread's
//! object index, is what the kernel needs to run it.

use crate::trap::TrapFrame;
use kernel_objects::ObjectId;

/// Where a thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No thread uses this entry.
    Free,
    /// Created, not started.
    Created,
    /// In its CPU's ready queue.
    Ready,
    /// On a CPU now.
    Running,
    /// Stopped by `thread_control(Suspend)` (also how a program ends).
    Suspended,
    /// Stopped by an exception; never runs again.
    Faulted,
    /// Called a portal whose handler was not waiting; the message is still in its UTCB.
    BlockedCall { handler: u32, portal_id: u64 },
    /// Delivered a call; waits for the handler's reply.
    BlockedReply { handler: u32 },
    /// In `reply_and_wait`, waiting for a call.
    BlockedReceive,
    /// In `wait` on a notification (its RIP is rewound to re-issue the call when woken).
    BlockedWait {
        notification: ObjectId,
        deadline: u64,
    },
}

/// One thread.
#[derive(Debug, Clone, Copy)]
pub struct ThreadContext {
    pub id: Option<ObjectId>,
    pub domain: Option<ObjectId>,
    pub state: RunState,
    pub cpu: usize,
    pub priority: u8,
    /// User address of its message buffer.
    pub utcb: u64,
    /// The caller waiting for this thread's reply.
    pub reply_to: Option<u32>,
    /// Ready-queue links (thread indices).
    pub previous: Option<u32>,
    pub next: Option<u32>,
    /// Callers blocked in `call` on this thread, oldest first (a FIFO through `next_caller`).
    pub callers_head: Option<u32>,
    pub callers_tail: Option<u32>,
    /// The next caller in the queue of the handler this thread waits on.
    pub next_caller: Option<u32>,
    /// Where its UTCB is, while the domain's mappings have not shrunk (see `ipc::utcb_pointer`).
    pub utcb_cache: Option<UtcbCache>,
}

/// A cached UTCB translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcbCache {
    pub physical: u64,
    pub writable: bool,
    /// The domain's flush generation when it was cached.
    pub generation: u64,
}

impl ThreadContext {
    pub const EMPTY: ThreadContext = ThreadContext {
        id: None,
        domain: None,
        state: RunState::Free,
        cpu: 0,
        priority: 0,
        utcb: 0,
        reply_to: None,
        previous: None,
        next: None,
        callers_head: None,
        callers_tail: None,
        next_caller: None,
        utcb_cache: None,
    };

    /// A fresh thread with its UTCB at `utcb` (its first registers: [`first_frame`]).
    pub fn new(id: ObjectId, domain: ObjectId, utcb: u64, priority: u8, cpu: usize) -> Self {
        ThreadContext {
            id: Some(id),
            domain: Some(domain),
            state: RunState::Created,
            cpu,
            priority,
            utcb,
            ..ThreadContext::EMPTY
        }
    }
}

/// The registers of a thread that will enter ring 3 at `rip` with `rsp`, RDI = its UTCB.
pub fn first_frame(rip: u64, rsp: u64, utcb: u64) -> TrapFrame {
    TrapFrame {
        rip,
        rsp,
        rdi: utcb,
        cs: u64::from(crate::gdt::USER_CODE),
        ss: u64::from(crate::gdt::USER_DATA),
        rflags: 0x202, // IF set, reserved bit 1
        ..TrapFrame::default()
    }
}

/// Appends `caller` to `handler`'s queue of blocked callers.
pub fn enqueue_caller(threads: &mut [ThreadContext], handler: u32, caller: u32) {
    threads[caller as usize].next_caller = None;
    match threads[handler as usize].callers_tail {
        Some(tail) => threads[tail as usize].next_caller = Some(caller),
        None => threads[handler as usize].callers_head = Some(caller),
    }
    threads[handler as usize].callers_tail = Some(caller);
}

/// Takes the oldest caller blocked on `handler`.
pub fn dequeue_caller(threads: &mut [ThreadContext], handler: u32) -> Option<u32> {
    let caller = threads[handler as usize].callers_head?;
    let next = threads[caller as usize].next_caller.take();
    threads[handler as usize].callers_head = next;
    if next.is_none() {
        threads[handler as usize].callers_tail = None;
    }
    Some(caller)
}

/// Takes `caller` out of the queue of the handler it is blocked on (when it stops waiting for
/// any other reason than being taken by the handler).
pub fn unqueue_caller(threads: &mut [ThreadContext], caller: u32) {
    let RunState::BlockedCall { handler, .. } = threads[caller as usize].state else {
        return;
    };
    let mut previous: Option<u32> = None;
    let mut cursor = threads[handler as usize].callers_head;
    while let Some(index) = cursor {
        if index == caller {
            let next = threads[index as usize].next_caller.take();
            match previous {
                Some(before) => threads[before as usize].next_caller = next,
                None => threads[handler as usize].callers_head = next,
            }
            if threads[handler as usize].callers_tail == Some(caller) {
                threads[handler as usize].callers_tail = previous;
            }
            return;
        }
        previous = cursor;
        cursor = threads[index as usize].next_caller;
    }
}
