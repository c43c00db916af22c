//! Per-CPU ready queues: fixed priorities (higher runs first), round robin within a priority.
//! Queues are intrusive doubly linked lists through the thread table, with a bitmap of
//! non-empty priorities per CPU, so every operation is O(1).

use super::threads::{RunState, ThreadContext};
use crate::percpu::MAX_CPUS;
use sluice_abi::syscall::PRIORITY_LEVELS;

const LEVELS: usize = PRIORITY_LEVELS as usize;

#[derive(Clone, Copy)]
struct Queue {
    head: Option<u32>,
    tail: Option<u32>,
}

/// Every CPU's queues and what it runs now.
pub struct Scheduler {
    queues: [[Queue; LEVELS]; MAX_CPUS],
    nonempty: [u64; MAX_CPUS],
    /// The thread each CPU runs (None: idle).
    pub current: [Option<u32>; MAX_CPUS],
}

impl Scheduler {
    pub const fn new() -> Self {
        Scheduler {
            queues: [[Queue {
                head: None,
                tail: None,
            }; LEVELS]; MAX_CPUS],
            nonempty: [0; MAX_CPUS],
            current: [None; MAX_CPUS],
        }
    }

    /// Makes `index` ready on its CPU (at the tail of its priority).
    pub fn enqueue(&mut self, threads: &mut [ThreadContext], index: u32) {
        let Some(thread) = threads.get(index as usize) else {
            return;
        };
        let (cpu, priority) = (thread.cpu % MAX_CPUS, usize::from(thread.priority) % LEVELS);
        let queue = &mut self.queues[cpu][priority];
        let old_tail = queue.tail;
        queue.tail = Some(index);
        if queue.head.is_none() {
            queue.head = Some(index);
        }
        if let Some(tail) = old_tail {
            threads[tail as usize].next = Some(index);
        }
        let thread = &mut threads[index as usize];
        thread.previous = old_tail;
        thread.next = None;
        thread.state = RunState::Ready;
        self.nonempty[cpu] |= 1 << priority;
    }

    /// Takes `index` out of its queue (it must be Ready).
    pub fn remove(&mut self, threads: &mut [ThreadContext], index: u32) {
        let Some(thread) = threads.get(index as usize).copied() else {
            return;
        };
        if thread.state != RunState::Ready {
            return;
        }
        let (cpu, priority) = (thread.cpu % MAX_CPUS, usize::from(thread.priority) % LEVELS);
        match thread.previous {
            Some(previous) => threads[previous as usize].next = thread.next,
            None => self.queues[cpu][priority].head = thread.next,
        }
        match thread.next {
            Some(next) => threads[next as usize].previous = thread.previous,
            None => self.queues[cpu][priority].tail = thread.previous,
        }
        if self.queues[cpu][priority].head.is_none() {
            self.nonempty[cpu] &= !(1 << priority);
        }
        let thread = &mut threads[index as usize];
        thread.previous = None;
        thread.next = None;
    }

    /// The highest ready priority on `cpu`.
    pub fn best_priority(&self, cpu: usize) -> Option<u8> {
        let bits = self.nonempty[cpu % MAX_CPUS];
        (bits != 0).then(|| (63 - bits.leading_zeros()) as u8)
    }

    /// Takes the next thread to run on `cpu`.
    pub fn pick(&mut self, threads: &mut [ThreadContext], cpu: usize) -> Option<u32> {
        let priority = self.best_priority(cpu)?;
        let index = self.queues[cpu % MAX_CPUS][usize::from(priority)].head?;
        self.remove(threads, index);
        Some(index)
    }
}
