//! Execution: the object model, address spaces, threads and scheduling behind one kernel lock,
//! and the entry points the trap path calls (system calls, user exceptions, the timer,
//! reschedule IPIs, device interrupts).
//!
//! Every entry from ring 3 saves the trap frame into the current thread, handles the event, and
//! leaves into whichever thread should run: the same one, another one (IPC hand-off or
//! preemption), or the idle loop. The kernel itself is never preempted.

mod boot;
mod faults;
pub mod frames;
mod ipc;
mod ipc_fast;
mod scheduler;
mod sink;
mod syscalls;
mod threads;
mod vcpu_run;

pub use boot::{start_root_task, BootModule, RootResources};
pub use vcpu_run::DirectExit;

use crate::address_space::AddressSpace;
use crate::percpu::{self, MAX_CPUS};
use crate::sync::CountingLock;
use crate::trap::TrapFrame;
use kernel_objects::{ObjectId, ObjectModel};
use scheduler::Scheduler;
use threads::{RunState, ThreadContext};

/// Most protection domains alive at once.
pub const DOMAINS: usize = 32;
/// Capability slots per domain.
pub const SLOTS: usize = 256;
/// Kernel objects (each thread and domain is one).
pub const OBJECTS: usize = 512;
/// Mapping records.
pub const MAPPINGS: usize = 2048;

pub type Model = ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>;

/// A domain's kernel-side state.
pub struct DomainState {
    pub space: Option<AddressSpace>,
    pub name: [u8; 8],
    /// Bumped when a mapping is removed: CPUs reload CR3 before running the domain again.
    pub flush_generation: u64,
    /// Page-table frames already charged to the domain's quota (its first two come with the
    /// domain object's charge).
    pub charged_tables: u64,
    /// The domain's I/O permission bitmap (two frames, a set bit refuses the port), once
    /// `io_allow` gave it ports.
    pub io_bitmap: Option<[u64; 2]>,
}

impl DomainState {
    const EMPTY: DomainState = DomainState {
        space: None,
        name: [0; 8],
        flush_generation: 0,
        charged_tables: 2,
        io_bitmap: None,
    };

    /// The name as text.
    pub fn name(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }
}

/// Everything behind the kernel lock.
pub struct Kernel {
    pub model: Model,
    pub domains: [DomainState; OBJECTS],
    pub threads: [ThreadContext; OBJECTS],
    pub scheduler: Scheduler,
    /// Init's domain and its fault notification.
    pub root: Option<ObjectId>,
    pub fault_notification: Option<ObjectId>,
    /// Ticks since boot (CPU 0's timer).
    pub ticks: u64,
    /// Physical RAM ranges (for choosing cacheable mappings).
    pub ram: heapless::Vec<(u64, u64), 32>,
    /// Per CPU: the domain whose CR3 is loaded and the flush generation seen.
    loaded: [(Option<ObjectId>, u64); MAX_CPUS],
    /// Per CPU: whether its TSS holds a domain's I/O bitmap (else all ones).
    loaded_ports: [bool; MAX_CPUS],
}

static KERNEL: CountingLock<Kernel> = CountingLock::new(Kernel {
    model: Model::new(),
    domains: [const { DomainState::EMPTY }; OBJECTS],
    threads: [ThreadContext::EMPTY; OBJECTS],
    scheduler: Scheduler::new(),
    root: None,
    fault_notification: None,
    ticks: 0,
    ram: heapless::Vec::new(),
    loaded: [(None, 0); MAX_CPUS],
    loaded_ports: [false; MAX_CPUS],
});

/// What a handler wants after it ran.
pub enum Next {
    /// Run this vCPU (object index) for the current thread without the kernel lock, with the
    /// reply in the thread's UTCB, then return to the thread with the exit message.
    RunVcpu(u32),
    /// Return to the current thread (its frame may have been changed).
    Current,
    /// The current thread stopped or blocked: run something else.
    Reschedule,
    /// Hand the CPU to this thread directly (IPC fast path); the current one is not requeued.
    SwitchTo(u32),
}

impl Kernel {
    /// The domain state of a domain object.
    pub fn domain(&mut self, id: ObjectId) -> &mut DomainState {
        &mut self.domains[id.index as usize % OBJECTS]
    }

    /// Marks a thread ready and, when its CPU is another one, pokes that CPU.
    pub fn make_ready(&mut self, index: u32) {
        let Kernel {
            scheduler, threads, ..
        } = self;
        scheduler.enqueue(threads, index);
        let cpu = threads[index as usize].cpu;
        if cpu != percpu::current_index() {
            crate::smp::poke(cpu);
        }
    }

    /// Chooses who runs next on `cpu` according to `next` and makes it the running thread.
    /// Registers stay where they are: every thread's live in its slot (`frames`), so a switch
    /// copies nothing. Returns the chosen thread, or None if nothing can run (the caller then
    /// idles).
    fn leave(&mut self, cpu: usize, next: Next) -> Option<u32> {
        let current = self.scheduler.current[cpu];
        let chosen = match next {
            Next::Current => match current {
                Some(index) if self.threads[index as usize].state == RunState::Running => {
                    Some(index)
                }
                _ => self.pick(cpu),
            },
            Next::Reschedule => {
                if let Some(index) = current {
                    if self.threads[index as usize].state == RunState::Running {
                        let Kernel {
                            scheduler, threads, ..
                        } = self;
                        scheduler.enqueue(threads, index);
                    }
                }
                self.pick(cpu)
            }
            Next::SwitchTo(target) => Some(target),
            // Handled by `from_user` before leaving; reaching here means: keep running.
            Next::RunVcpu(_) => current,
        };
        let Some(index) = chosen else {
            self.scheduler.current[cpu] = None;
            return None;
        };
        if chosen != current {
            percpu::set_frame_top(cpu, frames::top(index));
        }
        self.run(cpu, index);
        Some(index)
    }

    fn pick(&mut self, cpu: usize) -> Option<u32> {
        let Kernel {
            scheduler, threads, ..
        } = self;
        scheduler.pick(threads, cpu)
    }

    /// Makes `index` the running thread of `cpu`, loads its address space and marks the CPU
    /// active (see [`Kernel::enter`]).
    fn run(&mut self, cpu: usize, index: u32) {
        self.enter(cpu, index);
        // From here to the next kernel entry this CPU runs the domain's code without checking
        // the generation again: shootdowns must interrupt it.
        crate::smp::set_active(true);
    }

    /// Makes `index` the running thread of `cpu` and loads its address space (CR3 when the
    /// domain or its flush generation changed, and its I/O permission bitmap).
    fn enter(&mut self, cpu: usize, index: u32) {
        let thread = &mut self.threads[index as usize];
        thread.state = RunState::Running;
        self.scheduler.current[cpu] = Some(index);
        let Some(domain) = thread.domain else { return };
        let state = &self.domains[domain.index as usize % OBJECTS];
        let generation = state.flush_generation;
        if self.loaded[cpu] != (Some(domain), generation) {
            self.load_space(cpu, domain, generation);
        }
    }

    fn load_space(&mut self, cpu: usize, domain: ObjectId, generation: u64) {
        // A guest's FPU values still in this CPU's registers are not for the next domain.
        crate::fpu::release(cpu);
        let state = &self.domains[domain.index as usize % OBJECTS];
        if let Some(space) = &state.space {
            // SAFETY: the root is a valid PML4 sharing the kernel half, so the kernel keeps
            // running after the switch; reloading also flushes non-global TLB entries.
            unsafe { core::arch::asm!("mov cr3, {}", in(reg) space.root(), options(nostack)) };
        }
        self.loaded[cpu] = (Some(domain), generation);
        if state.io_bitmap.is_some() || self.loaded_ports[cpu] {
            self.load_ports(cpu, domain);
        }
    }

    /// Loads `domain`'s I/O permission bitmap into this CPU's TSS (all ones when it has no
    /// ports). Called only when it has some or the previous domain had.
    #[inline(never)]
    fn load_ports(&mut self, cpu: usize, domain: ObjectId) {
        let state = &self.domains[domain.index as usize % OBJECTS];
        let halves = state.io_bitmap.map(|[low, high]| {
            // SAFETY: the bitmap frames belong to this domain and lie in the direct map.
            unsafe {
                [
                    &*(crate::paging::phys_to_virt(low) as *const [u8; 4096]),
                    &*(crate::paging::phys_to_virt(high) as *const [u8; 4096]),
                ]
            }
        });
        crate::gdt::load_io_bitmap(cpu, halves);
        self.loaded_ports[cpu] = halves.is_some();
    }
}

/// Runs `handler` for a trap from ring 3 (whose registers are in `frame`, the running thread's
/// slot) and returns the slot of the thread to resume.
fn from_user(
    frame: &mut TrapFrame,
    handler: impl FnOnce(&mut Kernel, usize, u32, &mut TrapFrame) -> Next,
) -> *mut TrapFrame {
    let cpu = percpu::current_index();
    from_user_locked(KERNEL.lock(), cpu, frame, handler)
}

/// [`from_user`] with the kernel lock already taken.
#[inline(never)]
fn from_user_locked(
    mut kernel: crate::sync::SpinGuard<'_, Kernel>,
    cpu: usize,
    frame: &mut TrapFrame,
    handler: impl FnOnce(&mut Kernel, usize, u32, &mut TrapFrame) -> Next,
) -> *mut TrapFrame {
    let Some(current) = kernel.scheduler.current[cpu] else {
        drop(kernel);
        idle(cpu)
    };
    // Handlers write the current thread's results into `frame` and other (not running)
    // threads' into their slots (`frames::frame`).
    let next = handler(&mut kernel, cpu, current, frame);
    if let Next::RunVcpu(vcpu) = next {
        return vcpu_run::run(kernel, cpu, current, vcpu, frame);
    }
    match kernel.leave(cpu, next) {
        Some(index) => frames::slot(index),
        None => {
            drop(kernel);
            idle(cpu)
        }
    }
}

/// The idle loop: waits for an interrupt, then runs whatever became ready.
pub fn idle(cpu: usize) -> ! {
    loop {
        {
            let mut kernel = KERNEL.lock();
            if let Some(index) = kernel.leave(cpu, Next::Current) {
                drop(kernel);
                crate::trap::resume(frames::slot(index));
            }
        }
        // SAFETY: enabling interrupts only to halt until the next one; `sti` delays delivery
        // until after `hlt` starts, so no wake-up is lost; interrupts go off again after.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

/// `syscall` from ring 3; returns the frame to resume.
///
/// The IPC fast path (`ipc_fast`) runs only when the kernel lock is free at once, and then
/// leaves the CPU marked active throughout: it never waits, so a shootdown never waits for it
/// while holding the lock it would need (`smp::flush_everywhere`), and a shootdown cannot start
/// while it holds the lock. Everything else stops counting as active first (as every other
/// entry from ring 3 does in `trap::dispatch_user`).
pub fn system_call(frame: &mut TrapFrame) -> *mut TrapFrame {
    let cpu = percpu::current_index();
    if let Some(resume) = vcpu_run::fast(cpu, frame) {
        return resume;
    }
    if ipc_fast::is_candidate(frame) {
        if let Some(mut kernel) = KERNEL.try_lock() {
            if let Some(next) = ipc_fast::try_ipc(&mut kernel, cpu, frame) {
                return frames::slot(next);
            }
            crate::smp::set_active(false);
            return from_user_locked(kernel, cpu, frame, syscalls::handle);
        }
    }
    crate::smp::set_active(false);
    from_user(frame, syscalls::handle)
}

/// An exception in ring 3: the thread is stopped and reported.
pub fn user_exception(frame: &mut TrapFrame) -> *mut TrapFrame {
    from_user(frame, faults::handle)
}

/// The scheduling tick; returns the frame to resume.
pub fn tick(frame: &mut TrapFrame) -> *mut TrapFrame {
    let cpu = percpu::current_index();
    if !frame.came_from_user() {
        // A guest (or the idle loop) was interrupted: a running vCPU returns to the scheduler.
        crate::virtualization::request_reschedule(cpu);
    }
    {
        let mut kernel = KERNEL.lock();
        if cpu == 0 {
            kernel.ticks += 1;
        }
        ipc::expire_waits(&mut kernel, cpu);
    }
    if !frame.came_from_user() {
        return frame;
    }
    from_user(frame, |kernel, cpu, current, _| {
        let priority = kernel.threads[current as usize].priority;
        match kernel.scheduler.best_priority(cpu) {
            Some(best) if best >= priority => Next::Reschedule,
            _ => Next::Current,
        }
    })
}

/// A reschedule IPI: something became ready on this CPU or a thread here was stopped. Returns
/// the frame to resume.
pub fn preempt(frame: &mut TrapFrame) -> *mut TrapFrame {
    if !frame.came_from_user() {
        return frame;
    }
    from_user(frame, |kernel, cpu, current, _| {
        let thread = &kernel.threads[current as usize];
        let stopped = thread.state != RunState::Running;
        match kernel.scheduler.best_priority(cpu) {
            _ if stopped => Next::Reschedule,
            Some(best) if best > thread.priority => Next::Reschedule,
            _ => Next::Current,
        }
    })
}

/// A device interrupt: signal the notification its interrupt object is bound to. Returns the
/// frame to resume.
///
/// The line is masked before the end of interrupt: for a level-triggered IOAPIC pin the EOI
/// clears its Remote IRR, and a pin still asserted and unmasked would be delivered again.
pub fn device_interrupt(vector: u8, frame: &mut TrapFrame) -> *mut TrapFrame {
    {
        let mut kernel = KERNEL.lock();
        if let Some(line) = crate::interrupt_routing::line_of_vector(vector) {
            if let Some(notification) = kernel.model.interrupt_fired(line) {
                crate::interrupt_routing::mask(line);
                ipc::wake_waiters(&mut kernel, notification);
            }
        }
    }
    crate::apic::end_of_interrupt();
    preempt(frame)
}

/// Runs `f` with the kernel lock held (boot and SMP bring-up).
pub fn with_kernel<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    f(&mut KERNEL.lock())
}
