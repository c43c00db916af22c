//! Execution: the object model, address spaces, threads and scheduling behind one kernel lock,
//! and the entry points the trap path calls (system calls, user exceptions, the timer,
//! reschedule IPIs, device interrupts).
//!
//! Every entry from ring 3 saves the trap frame into the current thread, handles the event, and
//! leaves into whichever thread should run: the same one, another one (IPC hand-off or
//! preemption), or the idle loop. The kernel itself is never preempted.

mod boot;
mod faults;
mod ipc;
mod scheduler;
mod sink;
mod syscalls;
mod threads;

pub use boot::{start_root_task, BootModule, RootResources};

use crate::address_space::AddressSpace;
use crate::percpu::{self, MAX_CPUS};
use crate::sync::SpinLock;
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

static KERNEL: SpinLock<Kernel> = SpinLock::new(Kernel {
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

    /// Leaves the kernel on `cpu` according to `next`, with `frame` holding the registers of
    /// the thread that was running (if any). A thread's saved frame is written only when it
    /// stops running here; a thread that keeps the CPU never has its registers copied.
    /// Returns false if nothing can run (the caller then idles).
    fn leave(&mut self, cpu: usize, frame: &mut TrapFrame, next: Next) -> bool {
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
        if chosen != current {
            if let Some(previous) = current {
                if self.threads[previous as usize].id.is_some() {
                    self.threads[previous as usize].frame = *frame;
                }
            }
        }
        let Some(index) = chosen else {
            self.scheduler.current[cpu] = None;
            return false;
        };
        if chosen != current {
            *frame = self.threads[index as usize].frame;
        }
        self.run(cpu, index);
        true
    }

    fn pick(&mut self, cpu: usize) -> Option<u32> {
        let Kernel {
            scheduler, threads, ..
        } = self;
        scheduler.pick(threads, cpu)
    }

    /// Makes `index` the running thread of `cpu` and loads its address space.
    fn run(&mut self, cpu: usize, index: u32) {
        let thread = &mut self.threads[index as usize];
        thread.state = RunState::Running;
        self.scheduler.current[cpu] = Some(index);
        let Some(domain) = thread.domain else { return };
        let state = &self.domains[domain.index as usize % OBJECTS];
        let generation = state.flush_generation;
        if self.loaded[cpu] != (Some(domain), generation) {
            if let Some(space) = &state.space {
                // SAFETY: the root is a valid PML4 sharing the kernel half, so the kernel keeps
                // running after the switch; reloading also flushes non-global TLB entries.
                unsafe { core::arch::asm!("mov cr3, {}", in(reg) space.root(), options(nostack)) };
            }
            let halves = state.io_bitmap.map(|[low, high]| {
                // SAFETY: the bitmap frames belong to this domain and lie in the direct map.
                unsafe {
                    [
                        &*(crate::paging::phys_to_virt(low) as *const [u8; 4096]),
                        &*(crate::paging::phys_to_virt(high) as *const [u8; 4096]),
                    ]
                }
            });
            let had_ports = self.loaded_ports[cpu];
            if halves.is_some() || had_ports {
                crate::gdt::load_io_bitmap(cpu, halves);
            }
            self.loaded_ports[cpu] = halves.is_some();
            self.loaded[cpu] = (Some(domain), generation);
        }
        // From here to the next kernel entry this CPU runs the domain's code without checking
        // the generation again: shootdowns must interrupt it.
        crate::smp::set_active(true);
    }
}

/// Runs `handler` for a trap from ring 3 and leaves into the right thread.
fn from_user(
    frame: &mut TrapFrame,
    handler: impl FnOnce(&mut Kernel, usize, u32, &mut TrapFrame) -> Next,
) {
    let cpu = percpu::current_index();
    let mut kernel = KERNEL.lock();
    let Some(current) = kernel.scheduler.current[cpu] else {
        drop(kernel);
        idle(cpu)
    };
    // Handlers write the current thread's results into `frame` (its live registers) and other
    // threads' into their saved frames; `leave` saves and loads frames only on a switch.
    let mut next = handler(&mut kernel, cpu, current, frame);
    if let Next::RunVcpu(vcpu) = next {
        let mut reply = [const { core::mem::MaybeUninit::uninit() }; 64];
        let reply = ipc::read_message_words(&mut kernel, current, &mut reply);
        drop(kernel);
        let mut exit = [0u64; sluice_abi::vcpu::MAX_EXIT_WORDS];
        let result = reply.and_then(|reply| crate::virtualization::run(vcpu, reply, &mut exit));
        kernel = KERNEL.lock();
        let preempted = sluice_abi::vcpu::ExitReason::Preempted.code();
        next = match result.and_then(|count| {
            ipc::write_message_words(&mut kernel, current, &exit[..count]).map(|()| count)
        }) {
            Ok(count) => {
                frame.rax = sluice_abi::syscall::Status::Success.as_raw();
                // A preemption exit also gives the CPU to other ready threads.
                if count > 0 && exit[0] & 0xffff_ffff == u64::from(preempted) {
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
    }
    if !kernel.leave(cpu, frame, next) {
        drop(kernel);
        idle(cpu);
    }
}

/// The idle loop: waits for an interrupt, then runs whatever became ready.
pub fn idle(cpu: usize) -> ! {
    loop {
        {
            let mut kernel = KERNEL.lock();
            let mut frame = TrapFrame::default();
            if kernel.leave(cpu, &mut frame, Next::Current) {
                drop(kernel);
                crate::trap::resume(&frame);
            }
        }
        // SAFETY: enabling interrupts only to halt until the next one; `sti` delays delivery
        // until after `hlt` starts, so no wake-up is lost; interrupts go off again after.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

/// `syscall` from ring 3.
pub fn system_call(frame: &mut TrapFrame) {
    from_user(frame, syscalls::handle);
}

/// An exception in ring 3: the thread is stopped and reported.
pub fn user_exception(frame: &mut TrapFrame) {
    from_user(frame, faults::handle);
}

/// The scheduling tick.
pub fn tick(frame: &mut TrapFrame) {
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
    if frame.came_from_user() {
        from_user(frame, |kernel, cpu, current, _| {
            let priority = kernel.threads[current as usize].priority;
            match kernel.scheduler.best_priority(cpu) {
                Some(best) if best >= priority => Next::Reschedule,
                _ => Next::Current,
            }
        });
    }
}

/// A reschedule IPI: something became ready on this CPU or a thread here was stopped.
pub fn preempt(frame: &mut TrapFrame) {
    if frame.came_from_user() {
        from_user(frame, |kernel, cpu, current, _| {
            let thread = &kernel.threads[current as usize];
            let stopped = thread.state != RunState::Running;
            match kernel.scheduler.best_priority(cpu) {
                _ if stopped => Next::Reschedule,
                Some(best) if best > thread.priority => Next::Reschedule,
                _ => Next::Current,
            }
        });
    }
}

/// A device interrupt: signal the notification its interrupt object is bound to.
pub fn device_interrupt(vector: u8, frame: &mut TrapFrame) {
    {
        let mut kernel = KERNEL.lock();
        if let Some(line) = crate::interrupt_routing::line_of_vector(vector) {
            if let Some(notification) = kernel.model.interrupt_fired(line) {
                crate::interrupt_routing::mask(line);
                ipc::wake_waiters(&mut kernel, notification);
            }
        }
    }
    preempt(frame);
}

/// Runs `f` with the kernel lock held (boot and SMP bring-up).
pub fn with_kernel<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    f(&mut KERNEL.lock())
}
