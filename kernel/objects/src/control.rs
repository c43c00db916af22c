//! Operations on existing objects that the scheduler and IPC paths need: thread control,
//! notification signal and wait, portal resolution for `call`, and interrupt delivery. The
//! object model records state; the kernel binary owns run queues and blocking.

use sluice_abi::syscall::{
    InterruptRights, NotificationRights, ObjectType, PortalRights, Selector, Status,
    ThreadOperation, ThreadRights, MAX_CPUS, PRIORITY_LEVELS,
};

use crate::model::ObjectModel;
use crate::object::{Object, ObjectId, ThreadState};

/// Where a `call` through a portal goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortalTarget {
    /// The portal called.
    pub portal: ObjectId,
    /// The thread that serves it.
    pub handler: ObjectId,
    /// The id the handler receives with the call.
    pub portal_id: u64,
}

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// `thread_control` on the thread named by `thread` (needs `CONTROL`). Returns the thread's
    /// id so the scheduler can act.
    ///
    /// Errors: lookup errors; `Busy` (start of a thread that runs already); `InvalidArgument`
    /// (non-zero value for start/suspend, priority or CPU out of range, CPU not owned by the
    /// thread's domain).
    pub fn thread_control(
        &mut self,
        caller: ObjectId,
        thread: Selector,
        operation: ThreadOperation,
        value: u64,
    ) -> Result<ObjectId, Status> {
        let (_, capability) = self.lookup(
            caller,
            thread,
            ObjectType::Thread,
            ThreadRights::CONTROL.bits(),
        )?;
        let Some(Object::Thread(current)) = self.object(capability.object).map(|e| e.object) else {
            return Err(Status::WrongType);
        };
        let mut updated = current;
        match operation {
            ThreadOperation::Start | ThreadOperation::Suspend if value != 0 => {
                return Err(Status::InvalidArgument)
            }
            ThreadOperation::Start => {
                if current.state == ThreadState::Runnable {
                    return Err(Status::Busy);
                }
                updated.state = ThreadState::Runnable;
            }
            ThreadOperation::Suspend => updated.state = ThreadState::Suspended,
            ThreadOperation::SetPriority => {
                updated.priority = u8::try_from(value)
                    .ok()
                    .filter(|priority| *priority < PRIORITY_LEVELS)
                    .ok_or(Status::InvalidArgument)?;
            }
            ThreadOperation::SetCpu => {
                let cpu = u16::try_from(value)
                    .ok()
                    .filter(|cpu| *cpu < MAX_CPUS)
                    .ok_or(Status::InvalidArgument)?;
                let owned = self.live_domain(current.domain)?.cpu_mask & (1u64 << cpu) != 0;
                if !owned {
                    return Err(Status::InvalidArgument);
                }
                updated.cpu = cpu;
            }
        }
        if let Some(entry) = self.objects.get_mut(capability.object) {
            entry.object = Object::Thread(updated);
        }
        Ok(capability.object)
    }

    /// `signal`: set `bits` (non-zero) in the notification named by `notification` (needs
    /// `SIGNAL`). Returns its id so the kernel can wake a waiter.
    pub fn signal(
        &mut self,
        caller: ObjectId,
        notification: Selector,
        bits: u64,
    ) -> Result<ObjectId, Status> {
        if bits == 0 {
            return Err(Status::InvalidArgument);
        }
        let (_, capability) = self.lookup(
            caller,
            notification,
            ObjectType::Notification,
            NotificationRights::SIGNAL.bits(),
        )?;
        self.signal_object(capability.object, bits);
        Ok(capability.object)
    }

    /// `wait` without blocking: take and clear the pending bits of the notification named by
    /// `notification` (needs `WAIT`). Zero means nothing was pending: the kernel blocks the
    /// thread (or returns `Timeout` for a zero timeout).
    pub fn take_signals(
        &mut self,
        caller: ObjectId,
        notification: Selector,
    ) -> Result<u64, Status> {
        let (_, capability) = self.lookup(
            caller,
            notification,
            ObjectType::Notification,
            NotificationRights::WAIT.bits(),
        )?;
        match self
            .objects
            .get_mut(capability.object)
            .map(|e| &mut e.object)
        {
            Some(Object::Notification(state)) => Ok(core::mem::take(&mut state.pending)),
            _ => Err(Status::WrongType),
        }
    }

    /// Set bits in a notification by id (interrupt delivery). False if it is gone.
    pub fn signal_object(&mut self, notification: ObjectId, bits: u64) -> bool {
        match self.objects.get_mut(notification).map(|e| &mut e.object) {
            Some(Object::Notification(state)) => {
                state.pending |= bits;
                true
            }
            _ => false,
        }
    }

    /// Deliver interrupt line `line`: signal the notification it is bound to. Returns the
    /// notification's id, or `None` when no bound interrupt object exists for the line (the
    /// kernel leaves it masked).
    pub fn interrupt_fired(&mut self, line: u32) -> Option<ObjectId> {
        let binding = self
            .objects
            .iter()
            .find_map(|(_, entry)| match entry.object {
                Object::Interrupt(interrupt) if interrupt.first_line == line => interrupt.binding,
                _ => None,
            })?;
        self.signal_object(binding.notification, 1u64 << binding.bit)
            .then_some(binding.notification)
    }

    /// `interrupt_acknowledge` on the interrupt named by `interrupt` (needs `ACKNOWLEDGE`).
    /// Returns the line for the kernel to unmask. `NotFound` for an unbound range.
    pub fn interrupt_acknowledge(
        &self,
        caller: ObjectId,
        interrupt: Selector,
    ) -> Result<u32, Status> {
        let (_, capability) = self.lookup(
            caller,
            interrupt,
            ObjectType::Interrupt,
            InterruptRights::ACKNOWLEDGE.bits(),
        )?;
        match self.object(capability.object).map(|e| e.object) {
            Some(Object::Interrupt(interrupt)) if interrupt.binding.is_some() => {
                Ok(interrupt.first_line)
            }
            Some(Object::Interrupt(_)) => Err(Status::NotFound),
            _ => Err(Status::WrongType),
        }
    }

    /// Resolve `call`: the portal named by `portal` (needs `CALL`) and the thread serving it.
    #[inline]
    pub fn portal_target(
        &self,
        caller: ObjectId,
        portal: Selector,
    ) -> Result<PortalTarget, Status> {
        let (_, capability) = self.lookup(
            caller,
            portal,
            ObjectType::Portal,
            PortalRights::CALL.bits(),
        )?;
        // Matched by reference: copying the whole object out costs more than the lookup.
        match self.object(capability.object).map(|e| &e.object) {
            Some(Object::Portal(state)) => Ok(PortalTarget {
                portal: capability.object,
                handler: state.handler,
                portal_id: state.portal_id,
            }),
            _ => Err(Status::WrongType),
        }
    }
}
