//! Kernel objects and the fixed-size object table that holds them. An [`ObjectId`] is an index
//! plus a generation, so an id kept after its object was freed never names the next occupant.

use sluice_abi::syscall::{ObjectType, PAGE_SIZE};

use crate::address::{HostPhys, UserVirt};
use crate::quota::{Quota, Resources};

/// Names one object in the object table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// Slot in the object table.
    pub index: u32,
    /// Incremented each time the slot is freed.
    pub generation: u32,
}

/// A protection domain: an address space, a capability table, a quota and the CPUs it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionDomain {
    /// Index of its capability table in the model's table array.
    pub table: u16,
    /// What it may charge, and what is charged to it.
    pub quota: Quota,
    /// CPUs its threads may run on (bit n = CPU n).
    pub cpu_mask: u64,
    /// Set once its last capability went and its table was emptied; it then lingers only until
    /// everything charged to it has been freed.
    pub torn_down: bool,
}

/// Scheduling state of a thread as the object model records it (the kernel's scheduler owns
/// the run queues and reads this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Created, never started.
    Created,
    /// Started and not suspended.
    Runnable,
    /// Stopped by `thread_control(Suspend)`.
    Suspended,
}

/// A thread of execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thread {
    /// The domain it runs in (holds a reference).
    pub domain: ObjectId,
    /// Initial instruction pointer.
    pub instruction_pointer: UserVirt,
    /// Initial stack pointer.
    pub stack_pointer: UserVirt,
    /// Its message buffer page.
    pub utcb: UserVirt,
    /// Priority, below `PRIORITY_LEVELS`.
    pub priority: u8,
    /// The CPU it is pinned to (owned by its domain).
    pub cpu: u16,
    /// Scheduling state.
    pub state: ThreadState,
}

/// An IPC entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Portal {
    /// The thread that serves calls (holds a reference).
    pub handler: ObjectId,
    /// Delivered to the handler with each call so it knows which portal was called.
    pub portal_id: u64,
}

/// Asynchronous signal bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// Bits signalled and not yet taken by `wait`.
    pub pending: u64,
}

/// Whether a memory object is ordinary RAM or a device's MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM frames (mapped write-back).
    Ram,
    /// Device registers (mapped uncached).
    DeviceMmio,
}

/// A page-aligned physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// First byte (page-aligned).
    pub base: HostPhys,
    /// Size in bytes (a non-zero multiple of the page size).
    pub size: u64,
    /// RAM or MMIO.
    pub kind: MemoryKind,
}

impl Memory {
    /// True when base and size are page-aligned, the size non-zero and the end does not wrap.
    pub const fn is_well_formed(&self) -> bool {
        self.base.0.is_multiple_of(PAGE_SIZE)
            && self.size.is_multiple_of(PAGE_SIZE)
            && self.size != 0
            && self.base.0.checked_add(self.size).is_some()
    }
}

/// Where a bound interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptBinding {
    /// The notification signalled when the line fires (holds a reference).
    pub notification: ObjectId,
    /// The bit set in it (below 64).
    pub bit: u8,
}

/// A range of interrupt lines (GSIs). Ranges handed out at boot are unbound; `create_interrupt`
/// carves single lines bound to a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupt {
    /// First GSI.
    pub first_line: u32,
    /// Number of lines (at least 1).
    pub count: u32,
    /// Set for single lines created by `create_interrupt`.
    pub binding: Option<InterruptBinding>,
}

/// A range of x86 I/O ports `first .. first + count` (ports are 16-bit: Intel SDM Vol. 1, 18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPortRange {
    /// First port.
    pub first: u16,
    /// Number of ports, 1 ..= 65536, with `first + count <= 65536`.
    pub count: u32,
}

impl IoPortRange {
    /// Number of ports in the 16-bit I/O space.
    pub const PORT_SPACE: u32 = 1 << 16;

    /// True when the range is non-empty and inside the port space.
    pub const fn is_well_formed(&self) -> bool {
        self.count != 0 && (self.first as u32) + self.count <= Self::PORT_SPACE
    }
}

/// A kernel object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// See [`ProtectionDomain`].
    ProtectionDomain(ProtectionDomain),
    /// See [`Thread`].
    Thread(Thread),
    /// See [`Portal`].
    Portal(Portal),
    /// See [`Notification`].
    Notification(Notification),
    /// See [`Memory`].
    Memory(Memory),
    /// See [`Interrupt`].
    Interrupt(Interrupt),
    /// See [`IoPortRange`].
    IoPortRange(IoPortRange),
    /// See [`Vm`].
    Vm(Vm),
    /// See [`Vcpu`].
    Vcpu(Vcpu),
}

/// A guest-physical address space (the kernel keeps its EPT/NPT tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vm {
    /// One past the highest guest-physical address that may be mapped.
    pub guest_physical_limit: u64,
}

/// A virtual CPU of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vcpu {
    /// Its VM (holds a reference).
    pub vm: ObjectId,
}

impl Object {
    /// The type code of this object.
    pub const fn object_type(&self) -> ObjectType {
        match self {
            Object::ProtectionDomain(_) => ObjectType::ProtectionDomain,
            Object::Thread(_) => ObjectType::Thread,
            Object::Portal(_) => ObjectType::Portal,
            Object::Notification(_) => ObjectType::Notification,
            Object::Memory(_) => ObjectType::Memory,
            Object::Interrupt(_) => ObjectType::Interrupt,
            Object::IoPortRange(_) => ObjectType::IoPortRange,
            Object::Vm(_) => ObjectType::Vm,
            Object::Vcpu(_) => ObjectType::Vcpu,
        }
    }

    /// The objects this one keeps alive (a thread its domain, a portal its handler, a bound
    /// interrupt its notification).
    pub fn references(&self) -> Option<ObjectId> {
        match self {
            Object::Thread(thread) => Some(thread.domain),
            Object::Portal(portal) => Some(portal.handler),
            Object::Interrupt(interrupt) => interrupt.binding.map(|binding| binding.notification),
            Object::Vcpu(vcpu) => Some(vcpu.vm),
            _ => None,
        }
    }
}

/// Kernel memory in bytes charged for one object of each type, besides its object-table entry.
/// These are budgets the kernel binary allocates backing storage against (a domain's
/// page-table root, a thread's kernel stack and saved state).
pub const fn object_bytes(object_type: ObjectType) -> u64 {
    match object_type {
        ObjectType::ProtectionDomain => 2 * PAGE_SIZE,
        ObjectType::Thread => 4 * PAGE_SIZE,
        ObjectType::Portal | ObjectType::Notification => 64,
        ObjectType::Memory | ObjectType::Interrupt | ObjectType::IoPortRange => 64,
        ObjectType::Vm | ObjectType::Vcpu => 2 * PAGE_SIZE,
    }
}

/// The charge for creating one object of `object_type` (one table entry plus its bytes).
pub const fn object_charge(object_type: ObjectType) -> Resources {
    Resources {
        bytes: object_bytes(object_type),
        objects: 1,
        mappings: 0,
    }
}

/// An occupied object-table entry: the object and its bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object.
    pub object: Object,
    /// Capabilities naming it, in every table.
    pub capabilities: u32,
    /// Other objects that refer to it (see [`Object::references`]).
    pub internal_references: u32,
    /// The domain charged for it (`None` for objects the kernel made at boot).
    pub payer: Option<ObjectId>,
    /// Exactly what was charged, refunded when it is freed.
    pub charge: Resources,
    /// The part of `charge.bytes` added after creation ([`crate::ObjectModel::charge_to_object`]).
    pub extra_bytes: u64,
}

/// One slot of the object table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectSlot {
    pub(crate) generation: u32,
    pub(crate) entry: Option<ObjectEntry>,
}

/// The fixed-size table of every kernel object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectTable<const OBJECTS: usize> {
    slots: [ObjectSlot; OBJECTS],
}

impl<const OBJECTS: usize> ObjectTable<OBJECTS> {
    /// An empty table.
    pub const fn new() -> Self {
        ObjectTable {
            slots: [ObjectSlot {
                generation: 0,
                entry: None,
            }; OBJECTS],
        }
    }

    /// The entry for a live id.
    #[inline]
    pub fn get(&self, id: ObjectId) -> Option<&ObjectEntry> {
        let slot = self.slots.get(usize::try_from(id.index).ok()?)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    /// The entry for a live id, mutable.
    pub fn get_mut(&mut self, id: ObjectId) -> Option<&mut ObjectEntry> {
        let slot = self.slots.get_mut(usize::try_from(id.index).ok()?)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    /// The id a new object would get, if the table has room.
    pub fn free_id(&self) -> Option<ObjectId> {
        self.slots
            .iter()
            .enumerate()
            .find(|(_, slot)| slot.entry.is_none())
            .and_then(|(index, slot)| {
                Some(ObjectId {
                    index: u32::try_from(index).ok()?,
                    generation: slot.generation,
                })
            })
    }

    /// Put an entry at an id from [`ObjectTable::free_id`]; false if that slot is not free.
    pub(crate) fn insert_at(&mut self, id: ObjectId, entry: ObjectEntry) -> bool {
        match usize::try_from(id.index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            Some(slot) if slot.entry.is_none() && slot.generation == id.generation => {
                slot.entry = Some(entry);
                true
            }
            _ => false,
        }
    }

    /// Free a slot, returning its entry; the generation moves on.
    pub(crate) fn remove(&mut self, id: ObjectId) -> Option<ObjectEntry> {
        let slot = self.slots.get_mut(usize::try_from(id.index).ok()?)?;
        if slot.generation != id.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        Some(entry)
    }

    /// Every live object with its id.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, &ObjectEntry)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let entry = slot.entry.as_ref()?;
            Some((
                ObjectId {
                    index: u32::try_from(index).ok()?,
                    generation: slot.generation,
                },
                entry,
            ))
        })
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.entry.is_some())
            .count()
    }

    /// True when no object is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<const OBJECTS: usize> Default for ObjectTable<OBJECTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const OBJECTS: usize> ObjectTable<OBJECTS> {
    /// The live entry at a raw slot index, with its id (a copy, for scans that mutate).
    pub(crate) fn entry_at(&self, index: usize) -> Option<(ObjectId, ObjectEntry)> {
        let slot = self.slots.get(index)?;
        let entry = slot.entry?;
        Some((
            ObjectId {
                index: u32::try_from(index).ok()?,
                generation: slot.generation,
            },
            entry,
        ))
    }
}
