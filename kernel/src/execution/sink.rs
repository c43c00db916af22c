//! Acting on what the object model reports when capabilities go: unmap and flush removed
//! mappings, stop the threads of torn-down domains, release kernel storage of destroyed objects.

use super::threads::RunState;
use super::{Kernel, OBJECTS};
use crate::paging::PAGE_4K;
use kernel_objects::{Interrupt, Mapping, MappingKind, Object, ObjectId, TeardownSink};

/// Splits the kernel so the model can be borrowed alongside a sink over the rest.
pub fn with_sink<R>(
    kernel: &mut Kernel,
    f: impl FnOnce(&mut super::Model, &mut RestSink<'_>) -> R,
) -> R {
    let Kernel {
        model,
        domains,
        threads,
        scheduler,
        ..
    } = kernel;
    let mut sink = RestSink {
        domains,
        threads,
        scheduler,
    };
    f(model, &mut sink)
}

/// The parts of the kernel a teardown touches.
pub struct RestSink<'a> {
    domains: &'a mut [super::DomainState; OBJECTS],
    threads: &'a mut [super::threads::ThreadContext; OBJECTS],
    scheduler: &'a mut super::scheduler::Scheduler,
}

impl RestSink<'_> {
    /// Takes a stopping thread out of every queue: the ready queue, the queue of the handler it
    /// is calling, and fails the calls queued on it (`Aborted`).
    fn stop(&mut self, index: u32) {
        let threads = &mut self.threads[..];
        self.scheduler.remove(threads, index);
        super::threads::unqueue_caller(threads, index);
        while let Some(caller) = super::threads::dequeue_caller(threads, index) {
            if matches!(threads[caller as usize].state, RunState::BlockedCall { .. }) {
                super::frames::frame(caller).rax = sluice_abi::syscall::Status::Aborted.as_raw();
                self.scheduler.enqueue(threads, caller);
            }
        }
    }
}

impl TeardownSink for RestSink<'_> {
    fn mapping_removed(&mut self, mapping: &Mapping) {
        if let MappingKind::Guest { base, length, .. } = mapping.kind {
            crate::virtualization::unmap(mapping.domain.index, base, length);
            return;
        }
        if let MappingKind::IoPorts { first, count } = mapping.kind {
            let state = &mut self.domains[mapping.domain.index as usize % OBJECTS];
            if let Some(bitmap) = state.io_bitmap {
                super::syscalls::set_port_bits(bitmap, first, count, true);
            }
            state.flush_generation += 1;
            crate::smp::flush_everywhere();
            return;
        }
        let MappingKind::Memory { range, .. } = mapping.kind else {
            return;
        };
        let state = &mut self.domains[mapping.domain.index as usize % OBJECTS];
        if let Some(space) = &mut state.space {
            let mut address = range.base().get();
            while address < range.end() {
                space.unmap(address);
                address += PAGE_4K;
            }
        }
        state.flush_generation += 1;
        crate::smp::flush_everywhere();
    }

    fn domain_torn_down(&mut self, domain: ObjectId) {
        for index in 0..OBJECTS {
            let thread = &self.threads[index];
            if thread.domain == Some(domain)
                && !matches!(thread.state, RunState::Free | RunState::Faulted)
            {
                self.stop(index as u32);
                self.threads[index].state = RunState::Suspended;
            }
        }
    }

    fn object_destroyed(&mut self, id: ObjectId, object: &Object) {
        match object {
            Object::Thread(_) => {
                let index = id.index as usize % OBJECTS;
                self.stop(index as u32);
                self.threads[index] = super::threads::ThreadContext::EMPTY;
            }
            Object::ProtectionDomain(_) => {
                let state = &mut self.domains[id.index as usize % OBJECTS];
                if let Some(space) = state.space.take() {
                    space.destroy();
                }
                if let Some([low, high]) = state.io_bitmap.take() {
                    crate::frames::free(low);
                    crate::frames::free(high);
                }
                state.name = [0; 8];
            }
            // A bound line whose object goes away stops firing (its notification is gone).
            Object::Interrupt(Interrupt {
                first_line,
                binding: Some(_),
                ..
            }) => crate::interrupt_routing::mask(*first_line),
            Object::Vm(_) => crate::virtualization::destroy_vm(id.index),
            Object::Vcpu(_) => crate::virtualization::destroy_vcpu(id.index),
            _ => {}
        }
    }
}
