//! The system-call dispatcher: decode (kernel-objects, no state changes), then one operation on
//! the object model plus the kernel-side effect it implies (address spaces, threads, IPC).
//! Results go back in the caller's saved RAX (status) and RDI (result word).

use super::faults::stop_thread;
use super::ipc;
use super::sink::with_sink;
use super::threads::{RunState, ThreadContext};
use super::{Kernel, Next, OBJECTS, SLOTS};
use crate::address_space::{Access, AddressSpace};
use crate::paging::PAGE_4K;
use crate::trap::TrapFrame;
use kernel_objects::{decode, DecodedSyscall, Mapping, MappingKind, Object, ObjectId};
use sluice_abi::syscall::{
    MemoryRights, ObjectType, RawRegisters, ShutdownKind, Status, Syscall, ThreadOperation,
};

/// Handles the system call of thread `current` (its registers are in `frame`).
pub fn handle(kernel: &mut Kernel, cpu: usize, current: u32, frame: &mut TrapFrame) -> Next {
    let registers = RawRegisters {
        number: frame.rax,
        arguments: [
            frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
        ],
    };
    // IPC fast path: a well-formed `call` or `reply_and_wait` (the forms `decode` accepts for
    // them) goes straight to IPC; anything else takes the generic decoder, which names errors.
    let unused_clear = registers.arguments[1..].iter().all(|&value| value == 0);
    if unused_clear
        && registers.number == Syscall::Call as u64
        && registers.arguments[0] < SLOTS as u64
    {
        let portal = sluice_abi::syscall::Selector(registers.arguments[0] as u32);
        return finish(
            frame,
            ipc::call(kernel, cpu, current, portal).map(Outcome::Continue),
        );
    }
    if unused_clear
        && registers.number == Syscall::ReplyAndWait as u64
        && registers.arguments[0] == 0
    {
        let result = ipc::reply_and_wait(kernel, cpu, current, frame).map(Outcome::Continue);
        return finish(frame, result);
    }
    // vCPU fast path: the one well-formed `vcpu_control` (run, the other words zero) skips the
    // generic decoder; the vCPU lookup and its rights check are the same as `execute`'s.
    if registers.number == Syscall::VcpuControl as u64
        && registers.arguments[0] < SLOTS as u64
        && registers.arguments[1] == kernel_objects::decode::VCPU_RUN
        && registers.arguments[2..].iter().all(|&value| value == 0)
    {
        let vcpu = sluice_abi::syscall::Selector(registers.arguments[0] as u32);
        let result = caller_domain(kernel, current)
            .and_then(|caller| kernel.model.vcpu_target(caller, vcpu))
            .map(|(vcpu, _)| Outcome::Continue(Next::RunVcpu(vcpu.index)));
        return finish(frame, result);
    }
    let result = match decode(&registers, SLOTS as u32) {
        Ok(call) => execute(kernel, cpu, current, frame, call),
        Err(status) => Err(status),
    };
    finish(frame, result)
}

/// Puts a call's outcome into the caller's registers and says what runs next.
fn finish(frame: &mut TrapFrame, result: Result<Outcome, Status>) -> Next {
    match result {
        Ok(Outcome::Done(value)) => {
            frame.rax = Status::Success.as_raw();
            if let Some(value) = value {
                frame.rdi = value;
            }
            Next::Current
        }
        Ok(Outcome::Continue(next)) => next,
        Err(status) => {
            frame.rax = status.as_raw();
            Next::Current
        }
    }
}

enum Outcome {
    /// Success, with an optional result word for RDI.
    Done(Option<u64>),
    /// The operation set the return values itself and says what runs next.
    Continue(Next),
}

fn caller_domain(kernel: &Kernel, current: u32) -> Result<ObjectId, Status> {
    kernel.threads[current as usize]
        .domain
        .ok_or(Status::Aborted)
}

fn execute(
    kernel: &mut Kernel,
    cpu: usize,
    current: u32,
    frame: &mut TrapFrame,
    call: DecodedSyscall,
) -> Result<Outcome, Status> {
    let caller = caller_domain(kernel, current)?;
    let done = Ok(Outcome::Done(None));
    match call {
        DecodedSyscall::DebugWrite { buffer } => {
            let space = kernel.domains[caller.index as usize % OBJECTS]
                .space
                .as_ref()
                .ok_or(Status::Aborted)?;
            let mut chunk = [0u8; 512];
            // Check the whole buffer first so a bad tail prints nothing.
            let mut checked = 0;
            while checked < buffer.length() {
                let take = (buffer.length() - checked).min(chunk.len() as u64) as usize;
                if !space.read(buffer.base().get() + checked, &mut chunk[..take]) {
                    return Err(Status::BadAddress);
                }
                checked += take as u64;
            }
            let mut printed = 0;
            while printed < buffer.length() {
                let take = (buffer.length() - printed).min(chunk.len() as u64) as usize;
                space.read(buffer.base().get() + printed, &mut chunk[..take]);
                for byte in &mut chunk[..take] {
                    if !(byte.is_ascii_graphic() || *byte == b' ' || *byte == b'\n') {
                        *byte = b'?';
                    }
                }
                kprint!("{}", core::str::from_utf8(&chunk[..take]).unwrap_or(""));
                printed += take as u64;
            }
            done
        }
        DecodedSyscall::CreateProtectionDomain {
            destination,
            limit,
            cpu_mask,
            name,
        } => {
            let space = AddressSpace::new().map_err(|_| Status::OutOfKernelMemory)?;
            match kernel
                .model
                .create_domain(caller, destination, limit, cpu_mask)
            {
                Ok(id) => {
                    let state = kernel.domain(id);
                    state.space = Some(space);
                    state.name = name;
                    state.charged_tables = 2;
                    done
                }
                Err(error) => {
                    space.destroy();
                    Err(error)
                }
            }
        }
        DecodedSyscall::CreateThread {
            domain,
            destination,
            parameters,
        } => {
            // A thread's registers live in the slot of its object index (`frames`). A thread
            // destroyed while running on another CPU keeps that CPU's entry code pointed at its
            // slot until the CPU enters the kernel and leaves it; a new thread must not get the
            // index (and slot) before then, or that entry would overwrite its registers.
            if let Some(next) = kernel.model.next_object_id() {
                let still_entered = (0..crate::percpu::MAX_CPUS).any(|other| {
                    other != cpu && kernel.scheduler.current[other] == Some(next.index)
                });
                if still_entered {
                    return Err(Status::Busy);
                }
            }
            let id = kernel
                .model
                .create_thread(caller, domain, destination, parameters)?;
            let Some(Object::Thread(thread)) = kernel.model.object(id).map(|e| e.object) else {
                return Err(Status::Aborted);
            };
            kernel.threads[id.index as usize % OBJECTS] = ThreadContext::new(
                id,
                thread.domain,
                parameters.utcb.get(),
                parameters.priority,
                usize::from(parameters.cpu),
            );
            // A new object is no running thread, so its slot is free to write.
            *super::frames::frame(id.index) = super::threads::first_frame(
                parameters.instruction_pointer.get(),
                parameters.stack_pointer.get(),
                parameters.utcb.get(),
            );
            done
        }
        DecodedSyscall::CreatePortal {
            handler,
            destination,
            portal_id,
        } => kernel
            .model
            .create_portal(caller, handler, destination, portal_id)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::CreateNotification { destination } => kernel
            .model
            .create_notification(caller, destination)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::CreateMemory {
            source,
            destination,
            offset,
            size,
        } => kernel
            .model
            .create_memory(caller, source, destination, offset, size)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::CreateInterrupt {
            source,
            destination,
            line,
            notification,
            bit,
        } => {
            crate::interrupt_routing::check_line(line)?;
            kernel
                .model
                .create_interrupt(caller, source, destination, line, notification, bit)?;
            crate::interrupt_routing::route(line);
            done
        }
        DecodedSyscall::CreateIoRange {
            source,
            destination,
            first,
            count,
        } => kernel
            .model
            .create_io_range(caller, source, destination, first, count)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::Derive {
            source,
            destination,
            rights,
        } => kernel
            .model
            .derive(caller, source, destination, rights)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::Delegate {
            source,
            domain,
            destination,
            rights,
        } => kernel
            .model
            .delegate(caller, source, domain, destination, rights)
            .map(|_| Outcome::Done(None)),
        DecodedSyscall::Revoke { selector, flags } => {
            with_sink(kernel, |model, sink| {
                model.revoke(caller, selector, flags, sink)
            })?;
            done
        }
        DecodedSyscall::Delete { selector } => {
            with_sink(kernel, |model, sink| model.delete(caller, selector, sink))?;
            done
        }
        DecodedSyscall::Map {
            memory,
            domain,
            range,
            offset,
            rights,
        } => {
            let Kernel {
                model,
                domains,
                ram,
                ..
            } = kernel;
            let mapping = model.map(caller, memory, domain, range, offset, rights, |mapping| {
                install(domains, ram, mapping)
            })?;
            charge_page_tables(kernel, caller, domain, range, mapping.domain)?;
            done
        }
        DecodedSyscall::Unmap { domain, range } => {
            let mapping = kernel.model.unmap(caller, domain, range)?;
            with_sink(kernel, |_, sink| {
                kernel_objects::TeardownSink::mapping_removed(sink, &mapping)
            });
            done
        }
        DecodedSyscall::Call { portal } => {
            ipc::call(kernel, cpu, current, portal).map(Outcome::Continue)
        }
        DecodedSyscall::ReplyAndWait => {
            ipc::reply_and_wait(kernel, cpu, current, frame).map(Outcome::Continue)
        }
        DecodedSyscall::Signal { notification, bits } => {
            let id = kernel.model.signal(caller, notification, bits)?;
            ipc::wake_waiters(kernel, id);
            done
        }
        DecodedSyscall::Wait {
            notification,
            timeout,
        } => {
            let (_, capability) = kernel.model.lookup(
                caller,
                notification,
                ObjectType::Notification,
                sluice_abi::syscall::NotificationRights::WAIT.bits(),
            )?;
            let bits = kernel.model.take_signals(caller, notification)?;
            if bits != 0 {
                return Ok(Outcome::Done(Some(bits)));
            }
            Ok(Outcome::Continue(ipc::block_on_notification(
                kernel,
                current,
                frame,
                capability.object,
                timeout,
            )))
        }
        DecodedSyscall::ThreadControl {
            thread,
            operation,
            value,
        } => thread_control(kernel, caller, current, thread, operation, value),
        DecodedSyscall::Yield => Ok(Outcome::Continue(Next::Reschedule)),
        DecodedSyscall::Shutdown { domain, kind, code } => {
            kernel.model.check_shutdown(caller, domain)?;
            kprintln!(
                "sluice: shutdown requested by domain {} (code {code})",
                kernel.domain(caller).name()
            );
            let (shootdowns, interrupted) = crate::smp::shootdown_counts();
            kprintln!(
                "sluice: tlb shootdowns: {shootdowns}, other CPUs interrupted and waited for: {interrupted}"
            );
            match (kind, code) {
                (ShutdownKind::PowerOff, 0) => {
                    crate::platform::stop(crate::platform::Outcome::Success)
                }
                (ShutdownKind::PowerOff, _) => crate::platform::stop(
                    crate::platform::Outcome::Failure("init reported failure"),
                ),
                (ShutdownKind::Reboot, _) => {
                    crate::platform::stop(crate::platform::Outcome::Failure("reboot requested"))
                }
            }
        }
        DecodedSyscall::MemoryPhysical { memory, offset } => {
            let physical = kernel.model.memory_physical(caller, memory, offset)?;
            Ok(Outcome::Done(Some(physical.0)))
        }
        DecodedSyscall::InterruptAcknowledge { interrupt } => {
            let line = kernel.model.interrupt_acknowledge(caller, interrupt)?;
            crate::interrupt_routing::unmask(line);
            done
        }
        DecodedSyscall::InterruptRemap { interrupt, handle } => {
            let line = remappable_line(kernel, caller, interrupt)?;
            crate::interrupt_routing::remap(line, handle)?;
            done
        }
        DecodedSyscall::IoAllow { io_range, domain } => {
            let Kernel { model, domains, .. } = kernel;
            model.io_allow(caller, io_range, domain, |mapping| {
                let MappingKind::IoPorts { first, count } = mapping.kind else {
                    return Err(Status::InvalidArgument);
                };
                let state = &mut domains[mapping.domain.index as usize % OBJECTS];
                let bitmap = match state.io_bitmap {
                    Some(bitmap) => bitmap,
                    None => {
                        let low = crate::frames::allocate().ok_or(Status::OutOfKernelMemory)?;
                        let Some(high) = crate::frames::allocate() else {
                            crate::frames::free(low);
                            return Err(Status::OutOfKernelMemory);
                        };
                        for frame in [low, high] {
                            // SAFETY: a fresh frame in the direct map, owned by this bitmap.
                            unsafe {
                                core::ptr::write_bytes(
                                    crate::paging::phys_to_virt(frame),
                                    0xff,
                                    4096,
                                )
                            };
                        }
                        state.io_bitmap = Some([low, high]);
                        [low, high]
                    }
                };
                set_port_bits(bitmap, first, count, false);
                state.flush_generation += 1;
                Ok(())
            })?;
            done
        }
        DecodedSyscall::CreateVm { destination } => {
            if crate::virtualization::backend() == crate::virtualization::Backend::None {
                return Err(Status::NotImplemented);
            }
            let id = kernel.model.create_vm(caller, destination)?;
            if let Err(error) = crate::virtualization::create_vm(id.index) {
                with_sink(kernel, |model, sink| {
                    model.delete(caller, destination, sink)
                })
                .ok();
                return Err(error);
            }
            done
        }
        DecodedSyscall::CreateVcpu { vm, destination } => {
            let (_, vm_capability) = kernel.model.lookup(
                caller,
                vm,
                ObjectType::Vm,
                sluice_abi::syscall::VmRights::CREATE_VCPU.bits(),
            )?;
            let id = kernel.model.create_vcpu(caller, vm, destination)?;
            if let Err(error) =
                crate::virtualization::create_vcpu(id.index, vm_capability.object.index)
            {
                with_sink(kernel, |model, sink| {
                    model.delete(caller, destination, sink)
                })
                .ok();
                return Err(error);
            }
            done
        }
        DecodedSyscall::VmMap {
            memory,
            vm,
            guest_physical,
            offset,
            size,
            rights,
        } => {
            // The nested tables this mapping may add are charged to whoever paid for the VM
            // (the most it can need, then what it did not need comes back), so no VMM can
            // exhaust the kernel's frames through guest mappings.
            let (_, vm_capability) = kernel.model.lookup(
                caller,
                vm,
                ObjectType::Vm,
                sluice_abi::syscall::VmRights::MAP.bits(),
            )?;
            let vm_object = vm_capability.object;
            let in_range = guest_physical
                .checked_add(size)
                .is_some_and(|end| end <= kernel_objects::virtualization::GUEST_PHYSICAL_LIMIT);
            let reserved = if in_range {
                kernel_virt::nested_paging::tables_bound(
                    kernel_virt::GuestPhys(guest_physical),
                    size,
                )
                .saturating_mul(PAGE_4K)
            } else {
                0
            };
            kernel.model.charge_to_object(vm_object, reserved)?;
            let mut created_tables = 0;
            let Kernel { model, ram, .. } = kernel;
            let result = model.vm_map(
                caller,
                memory,
                vm,
                guest_physical,
                offset,
                size,
                rights,
                |mapping| {
                    let MappingKind::Guest {
                        base,
                        length,
                        physical,
                        rights,
                    } = mapping.kind
                    else {
                        return Err(Status::InvalidArgument);
                    };
                    let uncached = !ram
                        .iter()
                        .any(|&(start, end)| start <= physical.0 && physical.0 < end);
                    created_tables = crate::virtualization::map(
                        mapping.domain.index,
                        base,
                        physical.0,
                        length,
                        rights,
                        uncached,
                    )?;
                    Ok(())
                },
            );
            let used = created_tables.saturating_mul(PAGE_4K).min(reserved);
            kernel.model.refund_to_object(vm_object, reserved - used);
            result?;
            done
        }
        DecodedSyscall::VcpuRun { vcpu } => {
            let (vcpu, _) = kernel.model.vcpu_target(caller, vcpu)?;
            Ok(Outcome::Continue(Next::RunVcpu(vcpu.index)))
        }
        DecodedSyscall::VcpuSetExitState {
            vcpu,
            reason,
            groups,
        } => {
            let (vcpu, _) = kernel.model.vcpu_target(caller, vcpu)?;
            crate::virtualization::set_exit_state(vcpu.index, u64::from(reason), groups)?;
            done
        }
    }
}

/// The line of the bound interrupt `interrupt` names, for `interrupt_remap`: needs `REMAP`
/// (`MissingRight` without it, `WrongType`, `EmptySlot`, `InvalidSelector` from the lookup);
/// `NotFound` for an unbound range (there is no single pin to program). Whether the line is an
/// IOAPIC pin is `interrupt_routing::remap`'s check (`InvalidArgument`).
fn remappable_line(
    kernel: &Kernel,
    caller: ObjectId,
    interrupt: sluice_abi::syscall::Selector,
) -> Result<u32, Status> {
    let (_, capability) = kernel.model.lookup(
        caller,
        interrupt,
        ObjectType::Interrupt,
        sluice_abi::syscall::InterruptRights::REMAP.bits(),
    )?;
    match kernel
        .model
        .object(capability.object)
        .map(|entry| entry.object)
    {
        Some(Object::Interrupt(bound)) if bound.binding.is_some() => Ok(bound.first_line),
        Some(Object::Interrupt(_)) => Err(Status::NotFound),
        _ => Err(Status::WrongType),
    }
}

/// Sets (`refuse`) or clears the bits of ports `first .. first + count` in a domain's I/O
/// permission bitmap (two frames; a set bit refuses the port, SDM Vol. 1 19.5.2).
pub fn set_port_bits(bitmap: [u64; 2], first: u16, count: u32, refuse: bool) {
    let end = (u32::from(first) + count).min(65536);
    for port in u32::from(first)..end {
        let (frame, bit) = (bitmap[(port / 32768) as usize], port % 32768);
        // SAFETY: the bitmap frames belong to the domain and lie in the direct map; the byte
        // index is below 4096.
        unsafe {
            let byte = crate::paging::phys_to_virt(frame).add((bit / 8) as usize);
            let mask = 1u8 << (bit % 8);
            *byte = if refuse { *byte | mask } else { *byte & !mask };
        }
    }
}

/// Charges the page-table frames a mapping added to the quota of the domain whose space grew;
/// when the quota cannot pay, the mapping is taken back and the call fails with
/// `QuotaExceeded` (the empty tables stay with the space and are paid for by a later mapping).
fn charge_page_tables(
    kernel: &mut Kernel,
    caller: ObjectId,
    domain: sluice_abi::syscall::Selector,
    range: kernel_objects::UserSlice,
    target: ObjectId,
) -> Result<(), Status> {
    let state = &kernel.domains[target.index as usize % OBJECTS];
    let used = state.space.as_ref().map_or(0, AddressSpace::table_frames);
    let extra = used.saturating_sub(state.charged_tables);
    if extra == 0 {
        return Ok(());
    }
    match kernel.model.charge_kernel_bytes(target, extra * PAGE_4K) {
        Ok(()) => {
            kernel.domains[target.index as usize % OBJECTS].charged_tables = used;
            Ok(())
        }
        Err(status) => {
            if let Ok(mapping) = kernel.model.unmap(caller, domain, range) {
                with_sink(kernel, |_, sink| {
                    kernel_objects::TeardownSink::mapping_removed(sink, &mapping)
                });
            }
            Err(status)
        }
    }
}

/// Writes the page-table entries of a new mapping (all or nothing).
fn install(
    domains: &mut [super::DomainState; OBJECTS],
    ram: &[(u64, u64)],
    mapping: &Mapping,
) -> Result<(), Status> {
    let MappingKind::Memory {
        range,
        physical,
        rights,
    } = mapping.kind
    else {
        return Err(Status::InvalidArgument);
    };
    let space = domains[mapping.domain.index as usize % OBJECTS]
        .space
        .as_mut()
        .ok_or(Status::Aborted)?;
    let access = Access {
        writable: rights.contains(MemoryRights::WRITE),
        executable: rights.contains(MemoryRights::EXECUTE),
        uncached: !ram
            .iter()
            .any(|&(start, end)| start <= physical.0 && physical.0 < end),
    };
    let base = range.base().get();
    let mut offset = 0;
    while offset < range.length() {
        if let Err(error) = space.map(base + offset, physical.0 + offset, access) {
            let mut undo = 0;
            while undo < offset {
                space.unmap(base + undo);
                undo += PAGE_4K;
            }
            return Err(match error {
                crate::address_space::MapError::OutOfMemory => Status::OutOfKernelMemory,
                crate::address_space::MapError::BadAddress => Status::BadAddress,
                crate::address_space::MapError::AlreadyMapped => Status::AlreadyMapped,
            });
        }
        offset += PAGE_4K;
    }
    Ok(())
}

fn thread_control(
    kernel: &mut Kernel,
    caller: ObjectId,
    current: u32,
    thread: sluice_abi::syscall::Selector,
    operation: ThreadOperation,
    value: u64,
) -> Result<Outcome, Status> {
    let id = kernel
        .model
        .thread_control(caller, thread, operation, value)?;
    let index = id.index;
    if index as usize >= OBJECTS || kernel.threads[index as usize].id != Some(id) {
        return Err(Status::Aborted);
    }
    let state = kernel.threads[index as usize].state;
    match operation {
        ThreadOperation::Start => {
            if matches!(state, RunState::Created | RunState::Suspended) {
                kernel.make_ready(index);
            }
        }
        ThreadOperation::Suspend => {
            if !matches!(state, RunState::Faulted | RunState::Free) {
                stop_thread(kernel, index, RunState::Suspended);
                if index == current {
                    return Ok(Outcome::Continue(Next::Reschedule));
                }
                crate::smp::poke(kernel.threads[index as usize].cpu);
            }
        }
        ThreadOperation::SetPriority | ThreadOperation::SetCpu => {
            let ready = state == RunState::Ready;
            if ready {
                let Kernel {
                    scheduler, threads, ..
                } = kernel;
                scheduler.remove(threads, index);
            }
            let thread = &mut kernel.threads[index as usize];
            if operation == ThreadOperation::SetPriority {
                thread.priority = value as u8;
            } else {
                thread.cpu = value as usize;
            }
            if ready {
                kernel.make_ready(index);
            }
        }
    }
    Ok(Outcome::Done(None))
}
