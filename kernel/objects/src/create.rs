//! Creating objects: the boot-time roots the kernel hands to init, and the `create_*` calls.
//! Each call looks everything up and checks the quota and table space first; the commit that
//! follows cannot fail. The creating domain is charged; carved objects (memory, interrupt and
//! I/O ranges) get a capability that is a child of the source capability in the derivation
//! tree, so revoking the source reaches them.

use sluice_abi::syscall::{
    InterruptRights, IoPortRights, MemoryRights, NotificationRights, ObjectType, PortalRights,
    ProtectionDomainRights, Selector, Status, ThreadRights, MAX_CPUS, PAGE_SIZE, PRIORITY_LEVELS,
};

use crate::address::{HostPhys, UserVirt};
use crate::capability::{derive, Capability, CapabilityAddress};
use crate::model::ObjectModel;
use crate::object::{
    object_charge, Interrupt, InterruptBinding, IoPortRange, Memory, Notification, Object,
    ObjectEntry, ObjectId, Portal, ProtectionDomain, Thread, ThreadState,
};
use crate::quota::{Quota, Resources};

/// Arguments of `create_thread` after decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadParameters {
    /// Where it starts.
    pub instruction_pointer: UserVirt,
    /// Its initial stack pointer.
    pub stack_pointer: UserVirt,
    /// Its message-buffer page (page-aligned).
    pub utcb: UserVirt,
    /// Below `PRIORITY_LEVELS`.
    pub priority: u8,
    /// A CPU its domain owns.
    pub cpu: u16,
}

/// Everything a validated creation needs to commit.
struct CreationPlan {
    id: ObjectId,
    payer: Option<ObjectId>,
    object: Object,
    charge: Resources,
    destination: CapabilityAddress,
    rights: u64,
    parent: Option<CapabilityAddress>,
}

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// Boot: create the root domain (init) with `limit` as its quota and a capability to
    /// itself, with every right including `SYSTEM`, at `self_selector`. Nobody is charged.
    pub fn create_root_domain(
        &mut self,
        limit: Resources,
        cpu_mask: u64,
        self_selector: Selector,
    ) -> Result<ObjectId, Status> {
        let table = self.free_table()?;
        let id = self.objects.free_id().ok_or(Status::OutOfKernelMemory)?;
        if self_selector.index() >= SLOTS {
            return Err(Status::InvalidSelector);
        }
        let object = Object::ProtectionDomain(ProtectionDomain {
            table,
            quota: Quota::new(limit),
            cpu_mask,
            torn_down: false,
        });
        if let Some(table) = self.tables.get_mut(usize::from(table)) {
            table.owner = Some(id);
        }
        self.commit(CreationPlan {
            id,
            payer: None,
            object,
            charge: Resources::ZERO,
            destination: CapabilityAddress {
                table,
                slot: self_selector.0,
            },
            rights: ProtectionDomainRights::all().bits(),
            parent: None,
        });
        Ok(id)
    }

    /// Boot: give `domain` an original capability to a resource the kernel discovered (a RAM or
    /// MMIO range, an unbound range of interrupt lines, a range of I/O ports). Nobody is charged.
    pub fn install_boot_object(
        &mut self,
        domain: ObjectId,
        selector: Selector,
        object: Object,
        rights: u64,
    ) -> Result<ObjectId, Status> {
        let well_formed = match &object {
            Object::Memory(memory) => memory.is_well_formed(),
            Object::Interrupt(interrupt) => {
                interrupt.binding.is_none()
                    && interrupt.count != 0
                    && interrupt.first_line.checked_add(interrupt.count).is_some()
            }
            Object::IoPortRange(range) => range.is_well_formed(),
            _ => false,
        };
        if !well_formed {
            return Err(Status::InvalidArgument);
        }
        if rights & !object.object_type().valid_rights() != 0 {
            return Err(Status::InvalidRights);
        }
        let destination = self.free_slot(domain, selector)?;
        let id = self.objects.free_id().ok_or(Status::OutOfKernelMemory)?;
        self.commit(CreationPlan {
            id,
            payer: None,
            object,
            charge: Resources::ZERO,
            destination,
            rights,
            parent: None,
        });
        Ok(id)
    }

    /// `create_protection_domain`: a new domain whose quota `limit` is donated out of the
    /// caller's, owning the CPUs in `cpu_mask` (a subset of the caller's). The caller is charged
    /// the domain itself plus `limit`, and gets a capability with `CREATE_THREAD | MAP`.
    pub fn create_domain(
        &mut self,
        caller: ObjectId,
        destination: Selector,
        limit: Resources,
        cpu_mask: u64,
    ) -> Result<ObjectId, Status> {
        let caller_domain = self.live_domain(caller)?;
        if cpu_mask & !caller_domain.cpu_mask != 0 {
            return Err(Status::InvalidArgument);
        }
        let destination = self.free_slot(caller, destination)?;
        let charge = Self::domain_charge()
            .checked_add(limit)
            .ok_or(Status::QuotaExceeded)?;
        self.check_charge(caller, charge)?;
        let table = self.free_table()?;
        let id = self.objects.free_id().ok_or(Status::OutOfKernelMemory)?;
        if let Some(table) = self.tables.get_mut(usize::from(table)) {
            table.owner = Some(id);
        }
        self.commit(CreationPlan {
            id,
            payer: Some(caller),
            object: Object::ProtectionDomain(ProtectionDomain {
                table,
                quota: Quota::new(limit),
                cpu_mask,
                torn_down: false,
            }),
            charge,
            destination,
            rights: (ProtectionDomainRights::CREATE_THREAD | ProtectionDomainRights::MAP).bits(),
            parent: None,
        });
        Ok(id)
    }

    /// `create_thread` in the domain named by `domain` (needs `CREATE_THREAD`). The thread starts
    /// in state `Created`; the caller gets `CONTROL | BIND_PORTAL`.
    pub fn create_thread(
        &mut self,
        caller: ObjectId,
        domain: Selector,
        destination: Selector,
        parameters: ThreadParameters,
    ) -> Result<ObjectId, Status> {
        let (_, domain_capability) = self.lookup(
            caller,
            domain,
            ObjectType::ProtectionDomain,
            ProtectionDomainRights::CREATE_THREAD.bits(),
        )?;
        let target = self.live_domain(domain_capability.object)?;
        if parameters.priority >= PRIORITY_LEVELS
            || parameters.cpu >= MAX_CPUS
            || target.cpu_mask & (1u64 << parameters.cpu) == 0
        {
            return Err(Status::InvalidArgument);
        }
        if !parameters.utcb.get().is_multiple_of(PAGE_SIZE) {
            return Err(Status::Misaligned);
        }
        let object = Object::Thread(Thread {
            domain: domain_capability.object,
            instruction_pointer: parameters.instruction_pointer,
            stack_pointer: parameters.stack_pointer,
            utcb: parameters.utcb,
            priority: parameters.priority,
            cpu: parameters.cpu,
            state: ThreadState::Created,
        });
        let rights = ThreadRights::all().bits();
        self.create_paid(caller, destination, object, rights, None)
    }

    /// `create_portal` served by the thread named by `handler` (needs `BIND_PORTAL`); the caller
    /// gets `CALL`.
    pub fn create_portal(
        &mut self,
        caller: ObjectId,
        handler: Selector,
        destination: Selector,
        portal_id: u64,
    ) -> Result<ObjectId, Status> {
        let (_, thread) = self.lookup(
            caller,
            handler,
            ObjectType::Thread,
            ThreadRights::BIND_PORTAL.bits(),
        )?;
        let object = Object::Portal(Portal {
            handler: thread.object,
            portal_id,
        });
        self.create_paid(
            caller,
            destination,
            object,
            PortalRights::all().bits(),
            None,
        )
    }

    /// `create_notification`; the caller gets every notification right.
    pub fn create_notification(
        &mut self,
        caller: ObjectId,
        destination: Selector,
    ) -> Result<ObjectId, Status> {
        let object = Object::Notification(Notification::default());
        self.create_paid(
            caller,
            destination,
            object,
            NotificationRights::all().bits(),
            None,
        )
    }

    /// `create_memory`: carve `offset .. offset + size` (page-aligned, non-empty, inside the
    /// source) out of the memory object named by `source` (needs `RETYPE`). The new capability
    /// has the source capability's rights and is its child.
    pub fn create_memory(
        &mut self,
        caller: ObjectId,
        source: Selector,
        destination: Selector,
        offset: u64,
        size: u64,
    ) -> Result<ObjectId, Status> {
        let (source_address, source_capability) = self.lookup(
            caller,
            source,
            ObjectType::Memory,
            MemoryRights::RETYPE.bits(),
        )?;
        let Some(Object::Memory(memory)) = self.object(source_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        if !offset.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || size == 0 {
            return Err(Status::Misaligned);
        }
        match offset.checked_add(size) {
            Some(end) if end <= memory.size => {}
            _ => return Err(Status::Overflow),
        }
        let object = Object::Memory(Memory {
            base: HostPhys(memory.base.0 + offset),
            size,
            kind: memory.kind,
        });
        let rights = derive(&source_capability, source_capability.rights)?.rights;
        self.create_paid(caller, destination, object, rights, Some(source_address))
    }

    /// `create_interrupt`: bind line `line` of the interrupt range named by `source` (needs
    /// `RETYPE`) to bit `bit` of the notification named by `notification` (needs
    /// `BIND_INTERRUPT`). A line can be bound once (`Busy` otherwise).
    pub fn create_interrupt(
        &mut self,
        caller: ObjectId,
        source: Selector,
        destination: Selector,
        line: u32,
        notification: Selector,
        bit: u8,
    ) -> Result<ObjectId, Status> {
        let (source_address, source_capability) = self.lookup(
            caller,
            source,
            ObjectType::Interrupt,
            InterruptRights::RETYPE.bits(),
        )?;
        let (_, notification_capability) = self.lookup(
            caller,
            notification,
            ObjectType::Notification,
            NotificationRights::BIND_INTERRUPT.bits(),
        )?;
        let Some(Object::Interrupt(range)) =
            self.object(source_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        if bit >= 64 {
            return Err(Status::InvalidArgument);
        }
        if line < range.first_line || line - range.first_line >= range.count {
            return Err(Status::Overflow);
        }
        let already_bound = self.objects.iter().any(|(_, entry)| {
            matches!(entry.object, Object::Interrupt(other)
                if other.binding.is_some() && other.first_line == line)
        });
        if already_bound {
            return Err(Status::Busy);
        }
        let object = Object::Interrupt(Interrupt {
            first_line: line,
            count: 1,
            binding: Some(InterruptBinding {
                notification: notification_capability.object,
                bit,
            }),
        });
        let rights = derive(&source_capability, source_capability.rights)?.rights;
        self.create_paid(caller, destination, object, rights, Some(source_address))
    }

    /// `create_io_range`: carve ports `first .. first + count` out of the range named by `source`
    /// (needs `RETYPE`).
    pub fn create_io_range(
        &mut self,
        caller: ObjectId,
        source: Selector,
        destination: Selector,
        first: u16,
        count: u32,
    ) -> Result<ObjectId, Status> {
        let (source_address, source_capability) = self.lookup(
            caller,
            source,
            ObjectType::IoPortRange,
            IoPortRights::RETYPE.bits(),
        )?;
        let Some(Object::IoPortRange(range)) =
            self.object(source_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        let carved = IoPortRange { first, count };
        let inside = u32::from(first) >= u32::from(range.first)
            && u32::from(first) + count <= u32::from(range.first) + range.count;
        if !carved.is_well_formed() {
            return Err(Status::InvalidArgument);
        }
        if !inside {
            return Err(Status::Overflow);
        }
        let rights = derive(&source_capability, source_capability.rights)?.rights;
        let object = Object::IoPortRange(carved);
        self.create_paid(caller, destination, object, rights, Some(source_address))
    }

    /// Validate destination, quota and table space for an object the caller pays for, then commit.
    pub(crate) fn create_paid(
        &mut self,
        caller: ObjectId,
        destination: Selector,
        object: Object,
        rights: u64,
        parent: Option<CapabilityAddress>,
    ) -> Result<ObjectId, Status> {
        let destination = self.free_slot(caller, destination)?;
        let charge = object_charge(object.object_type());
        self.check_charge(caller, charge)?;
        let id = self.objects.free_id().ok_or(Status::OutOfKernelMemory)?;
        self.commit(CreationPlan {
            id,
            payer: Some(caller),
            object,
            charge,
            destination,
            rights,
            parent,
        });
        Ok(id)
    }

    fn free_table(&self) -> Result<u16, Status> {
        self.tables
            .iter()
            .position(|table| table.owner.is_none())
            .and_then(|index| u16::try_from(index).ok())
            .ok_or(Status::OutOfKernelMemory)
    }

    /// The commit: every step was validated, nothing here can fail.
    fn commit(&mut self, plan: CreationPlan) {
        if let Some(payer) = plan.payer {
            self.adjust_quota(payer, plan.charge, true);
        }
        if let Some(referenced) = plan.object.references() {
            if let Some(target) = self.objects.get_mut(referenced) {
                target.internal_references = target.internal_references.saturating_add(1);
            }
        }
        let object_type = plan.object.object_type();
        let inserted = self.objects.insert_at(
            plan.id,
            ObjectEntry {
                object: plan.object,
                capabilities: 0,
                internal_references: 0,
                payer: plan.payer,
                charge: plan.charge,
                extra_bytes: 0,
            },
        );
        if inserted {
            let capability = Capability {
                object: plan.id,
                object_type,
                rights: plan.rights,
            };
            self.insert_capability(plan.destination, capability, plan.parent);
        }
    }
}
