//! A behavioural fake of the kernel for init's tests: capability tables per domain with typed
//! objects and rights, memory objects over a fake physical memory, mappings with the kernel's
//! overlap and exact-unmap rules, a record of every call, scripted requests for
//! `reply_and_wait`, and injected refusals ("the third `map` answers `QuotaExceeded`").

use std::collections::{BTreeMap, HashMap, VecDeque};

use sluice_abi::boot::selector::{FAULT_NOTIFICATION, SELF_DOMAIN, SELF_THREAD};
use sluice_abi::boot::BootInfo;
use sluice_abi::syscall::{
    MemoryRights, NotificationRights, PortalRights, ProtectionDomainRights, Selector, Status,
    Syscall, ThreadRights, PAGE_SIZE,
};
use sluice_rt::message::Message;
use sluice_rt::types::{DomainName, Quota, ThreadStart};

use crate::kernel::{Kernel, NotMapped};

/// A kernel object of the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Domain {
        name: u64,
        cpu_mask: u64,
        quota: Quota,
    },
    Thread {
        domain: usize,
        start: ThreadStart,
        started: bool,
    },
    Portal {
        handler: usize,
        portal_id: u64,
    },
    Notification,
    Memory {
        base: u64,
        size: u64,
    },
    /// I/O ports `first .. first + count`.
    IoPorts {
        first: u16,
        count: u32,
    },
    /// Every interrupt line (`line` = None), or one line bound to a notification bit.
    Interrupt {
        line: Option<u32>,
        notification: Option<usize>,
        bit: u8,
    },
}

/// A capability: an object index and rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub object: usize,
    pub rights: u64,
}

/// One mapping of a memory object into a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub domain: usize,
    pub address: u64,
    pub size: u64,
    pub memory: usize,
    pub offset: u64,
    pub rights: MemoryRights,
}

/// One call init made, with what the fake answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub call: Syscall,
    pub arguments: [u64; 6],
    pub status: Status,
}

/// The fake kernel.
pub struct FakeKernel {
    pub physical: Vec<u8>,
    pub objects: Vec<Object>,
    /// (domain object, selector) -> capability.
    pub tables: BTreeMap<(usize, u32), Capability>,
    pub mappings: Vec<Mapping>,
    pub events: Vec<Event>,
    pub incoming: VecDeque<(u64, Message)>,
    pub replies: Vec<Message>,
    pub shutdown_code: Option<u32>,
    failure: Option<(Syscall, usize, Status)>,
    counts: HashMap<Syscall, usize>,
}

/// Init's domain is object 0.
pub const INIT_DOMAIN: usize = 0;
/// Init's first thread is object 1.
pub const INIT_THREAD: usize = 1;

fn status_of(result: &Result<(), Status>) -> Status {
    match result {
        Ok(()) => Status::Success,
        Err(status) => *status,
    }
}

impl FakeKernel {
    /// A fake with init's boot capabilities from `boot` over `physical` memory.
    pub fn new(boot: &BootInfo, physical: Vec<u8>) -> FakeKernel {
        let mut fake = FakeKernel {
            physical,
            objects: vec![
                Object::Domain {
                    name: 0,
                    cpu_mask: u64::MAX,
                    quota: Quota {
                        bytes: u64::MAX,
                        objects: u32::MAX,
                        mappings: u32::MAX,
                    },
                },
                Object::Thread {
                    domain: INIT_DOMAIN,
                    start: ThreadStart {
                        instruction_pointer: 0,
                        stack_pointer: 0,
                        utcb: 0,
                        priority: 0,
                        cpu: 0,
                    },
                    started: true,
                },
                Object::Notification,
            ],
            tables: BTreeMap::new(),
            mappings: Vec::new(),
            events: Vec::new(),
            incoming: VecDeque::new(),
            replies: Vec::new(),
            shutdown_code: None,
            failure: None,
            counts: HashMap::new(),
        };
        let all_domain = ProtectionDomainRights::all().bits();
        fake.put(INIT_DOMAIN, SELF_DOMAIN, 0, all_domain);
        fake.put(
            INIT_DOMAIN,
            SELF_THREAD,
            INIT_THREAD,
            ThreadRights::all().bits(),
        );
        fake.put(
            INIT_DOMAIN,
            FAULT_NOTIFICATION,
            2,
            NotificationRights::all().bits(),
        );
        let interrupts = fake.objects.len();
        fake.objects.push(Object::Interrupt {
            line: None,
            notification: None,
            bit: 0,
        });
        fake.put(
            INIT_DOMAIN,
            sluice_abi::boot::selector::INTERRUPTS,
            interrupts,
            sluice_abi::syscall::InterruptRights::all().bits(),
        );
        for capability in boot.listed() {
            let object = fake.objects.len();
            fake.objects.push(Object::Memory {
                base: capability.base,
                size: capability.size,
            });
            let rights = match capability.kind {
                1 => MemoryRights::READ.bits(),
                _ => MemoryRights::all().bits(),
            };
            fake.put(INIT_DOMAIN, capability.selector, object, rights);
        }
        fake
    }

    fn put(&mut self, domain: usize, selector: u32, object: usize, rights: u64) {
        self.tables
            .insert((domain, selector), Capability { object, rights });
    }

    /// Makes the `nth` (0-based) call of `call` answer `status`.
    pub fn fail(&mut self, call: Syscall, nth: usize, status: Status) {
        self.failure = Some((call, nth, status));
    }

    /// Scripts a request arriving through `portal_id`.
    pub fn push_request(&mut self, portal_id: u64, message: Message) {
        self.incoming.push_back((portal_id, message));
    }

    /// The capability at `selector` of `domain`.
    pub fn capability(&self, domain: usize, selector: u32) -> Option<Capability> {
        self.tables.get(&(domain, selector)).copied()
    }

    /// The domain objects named `name`.
    pub fn domain_named(&self, name: &str) -> Option<usize> {
        let packed = DomainName::new(name).ok()?.to_raw();
        self.objects
            .iter()
            .position(|o| matches!(o, Object::Domain { name, .. } if *name == packed))
    }

    /// The table of `domain`, by selector.
    pub fn table(&self, domain: usize) -> BTreeMap<u32, Capability> {
        self.tables
            .iter()
            .filter(|((d, _), _)| *d == domain)
            .map(|((_, s), c)| (*s, *c))
            .collect()
    }

    /// Mappings of `domain`, by address.
    pub fn mappings_of(&self, domain: usize) -> Vec<Mapping> {
        let mut list: Vec<Mapping> = self
            .mappings
            .iter()
            .filter(|m| m.domain == domain)
            .copied()
            .collect();
        list.sort_by_key(|m| m.address);
        list
    }

    /// The physical bytes behind `size` bytes of `mapping` from its start.
    pub fn mapped_bytes(&self, mapping: &Mapping) -> &[u8] {
        let Some(Object::Memory { base, .. }) = self.objects.get(mapping.memory) else {
            return &[];
        };
        let start = (base + mapping.offset) as usize;
        &self.physical[start..start + mapping.size as usize]
    }

    fn lookup(&self, domain: usize, selector: Selector) -> Result<Capability, Status> {
        self.capability(domain, selector.0).ok_or(Status::EmptySlot)
    }

    fn typed(
        &self,
        selector: Selector,
        check: impl Fn(&Object) -> bool,
    ) -> Result<Capability, Status> {
        let capability = self.lookup(INIT_DOMAIN, selector)?;
        match self.objects.get(capability.object) {
            Some(object) if check(object) => Ok(capability),
            _ => Err(Status::WrongType),
        }
    }

    fn domain_cap(&self, selector: Selector) -> Result<usize, Status> {
        Ok(self
            .typed(selector, |o| matches!(o, Object::Domain { .. }))?
            .object)
    }

    fn memory(&self, selector: Selector) -> Result<(Capability, u64, u64), Status> {
        let capability = self.typed(selector, |o| matches!(o, Object::Memory { .. }))?;
        match self.objects.get(capability.object) {
            Some(Object::Memory { base, size }) => Ok((capability, *base, *size)),
            _ => Err(Status::WrongType),
        }
    }

    fn free(&self, domain: usize, selector: Selector) -> Result<(), Status> {
        if self.tables.contains_key(&(domain, selector.0)) {
            return Err(Status::SlotOccupied);
        }
        Ok(())
    }

    fn create(&mut self, destination: Selector, object: Object, rights: u64) -> Result<(), Status> {
        self.free(INIT_DOMAIN, destination)?;
        let index = self.objects.len();
        self.objects.push(object);
        self.put(INIT_DOMAIN, destination.0, index, rights);
        Ok(())
    }

    /// Records the call and decides whether an injected failure answers it.
    fn enter(&mut self, call: Syscall) -> Result<(), Status> {
        let count = self.counts.entry(call).or_insert(0);
        let nth = *count;
        *count += 1;
        match self.failure {
            Some((failing, failing_nth, status)) if failing == call && failing_nth == nth => {
                Err(status)
            }
            _ => Ok(()),
        }
    }

    fn record(
        &mut self,
        call: Syscall,
        arguments: [u64; 6],
        result: Result<(), Status>,
    ) -> Result<(), Status> {
        self.events.push(Event {
            call,
            arguments,
            status: status_of(&result),
        });
        result
    }

    fn own_physical(&self, address: u64, length: u64, write: bool) -> Result<usize, NotMapped> {
        let refused = NotMapped { address, length };
        let mapping = self
            .mappings
            .iter()
            .find(|m| {
                m.domain == INIT_DOMAIN
                    && m.address <= address
                    && address + length <= m.address + m.size
                    && (!write || m.rights.contains(MemoryRights::WRITE))
            })
            .ok_or(refused)?;
        let Some(Object::Memory { base, .. }) = self.objects.get(mapping.memory) else {
            return Err(refused);
        };
        let start = base + mapping.offset + (address - mapping.address);
        if start + length > self.physical.len() as u64 {
            return Err(refused);
        }
        Ok(start as usize)
    }

    fn do_map(
        &mut self,
        memory: Selector,
        domain: Selector,
        address: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
    ) -> Result<(), Status> {
        let (capability, _, memory_size) = self.memory(memory)?;
        let domain = self.domain_cap(domain)?;
        if !address.is_multiple_of(PAGE_SIZE)
            || !offset.is_multiple_of(PAGE_SIZE)
            || !size.is_multiple_of(PAGE_SIZE)
            || size == 0
        {
            return Err(Status::Misaligned);
        }
        if address.checked_add(size).is_none_or(|end| end > 1 << 47) {
            return Err(Status::BadAddress);
        }
        if offset.checked_add(size).is_none_or(|end| end > memory_size) {
            return Err(Status::Overflow);
        }
        if rights.bits() & !capability.rights != 0 || !rights.contains(MemoryRights::READ) {
            return Err(Status::MissingRight);
        }
        if self.mappings.iter().any(|m| {
            m.domain == domain && m.address < address + size && address < m.address + m.size
        }) {
            return Err(Status::AlreadyMapped);
        }
        self.mappings.push(Mapping {
            domain,
            address,
            size,
            memory: capability.object,
            offset,
            rights,
        });
        Ok(())
    }
}

impl Kernel for FakeKernel {
    fn create_protection_domain(
        &mut self,
        destination: Selector,
        quota: Quota,
        cpu_mask: u64,
        name: DomainName,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(destination.0),
            quota.bytes,
            u64::from(quota.objects),
            u64::from(quota.mappings),
            cpu_mask,
            name.to_raw(),
        ];
        let result = self.enter(Syscall::CreateProtectionDomain).and_then(|()| {
            let rights =
                (ProtectionDomainRights::CREATE_THREAD | ProtectionDomainRights::MAP).bits();
            self.create(
                destination,
                Object::Domain {
                    name: name.to_raw(),
                    cpu_mask,
                    quota,
                },
                rights,
            )
        });
        self.record(Syscall::CreateProtectionDomain, arguments, result)
    }

    fn create_thread(
        &mut self,
        domain: Selector,
        destination: Selector,
        start: ThreadStart,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(domain.0),
            u64::from(destination.0),
            start.instruction_pointer,
            start.stack_pointer,
            start.utcb,
            start.placement().unwrap_or(u64::MAX),
        ];
        let result = self.enter(Syscall::CreateThread).and_then(|()| {
            let domain = self.domain_cap(domain)?;
            if let Some(Object::Domain { cpu_mask, .. }) = self.objects.get(domain) {
                if cpu_mask & (1 << start.cpu) == 0 {
                    return Err(Status::InvalidArgument);
                }
            }
            self.create(
                destination,
                Object::Thread {
                    domain,
                    start,
                    started: false,
                },
                ThreadRights::all().bits(),
            )
        });
        self.record(Syscall::CreateThread, arguments, result)
    }

    fn create_portal(
        &mut self,
        handler: Selector,
        destination: Selector,
        portal_id: u64,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(handler.0),
            u64::from(destination.0),
            portal_id,
            0,
            0,
            0,
        ];
        let result = self.enter(Syscall::CreatePortal).and_then(|()| {
            let handler = self
                .typed(handler, |o| matches!(o, Object::Thread { .. }))?
                .object;
            self.create(
                destination,
                Object::Portal { handler, portal_id },
                PortalRights::CALL.bits(),
            )
        });
        self.record(Syscall::CreatePortal, arguments, result)
    }

    fn create_notification(&mut self, destination: Selector) -> Result<(), Status> {
        let arguments = [u64::from(destination.0), 0, 0, 0, 0, 0];
        let result = self.enter(Syscall::CreateNotification).and_then(|()| {
            self.create(
                destination,
                Object::Notification,
                NotificationRights::all().bits(),
            )
        });
        self.record(Syscall::CreateNotification, arguments, result)
    }

    fn create_interrupt(
        &mut self,
        source: Selector,
        destination: Selector,
        line: u32,
        notification: Selector,
        bit: u8,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(source.0),
            u64::from(destination.0),
            u64::from(line),
            u64::from(notification.0),
            u64::from(bit),
            0,
        ];
        let result = self.enter(Syscall::CreateInterrupt).and_then(|()| {
            let range = self.typed(source, |o| {
                matches!(o, Object::Interrupt { line: None, .. })
            })?;
            let target = self.typed(notification, |o| matches!(o, Object::Notification))?;
            if bit >= 64 {
                return Err(Status::InvalidArgument);
            }
            let busy = self.objects.iter().any(
                |o| matches!(o, Object::Interrupt { line: Some(bound), .. } if *bound == line),
            );
            if busy {
                return Err(Status::Busy);
            }
            let object = Object::Interrupt {
                line: Some(line),
                notification: Some(target.object),
                bit,
            };
            self.create(destination, object, range.rights)
        });
        self.record(Syscall::CreateInterrupt, arguments, result)
    }

    fn create_io_range(
        &mut self,
        source: Selector,
        destination: Selector,
        first: u16,
        count: u32,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(source.0),
            u64::from(destination.0),
            u64::from(first),
            u64::from(count),
            0,
            0,
        ];
        let result = self.enter(Syscall::CreateIoRange).and_then(|()| {
            if source.0 != sluice_abi::boot::selector::IO_PORTS {
                return Err(Status::WrongType);
            }
            if count == 0 || u32::from(first) + count > 65536 {
                return Err(Status::InvalidArgument);
            }
            self.create(destination, Object::IoPorts { first, count }, 1)
        });
        self.record(Syscall::CreateIoRange, arguments, result)
    }
    fn create_memory(
        &mut self,
        source: Selector,
        destination: Selector,
        offset: u64,
        size: u64,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(source.0),
            u64::from(destination.0),
            offset,
            size,
            0,
            0,
        ];
        let result = self.enter(Syscall::CreateMemory).and_then(|()| {
            let (capability, base, source_size) = self.memory(source)?;
            if !offset.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || size == 0 {
                return Err(Status::Misaligned);
            }
            if offset.checked_add(size).is_none_or(|end| end > source_size) {
                return Err(Status::Overflow);
            }
            self.create(
                destination,
                Object::Memory {
                    base: base + offset,
                    size,
                },
                capability.rights,
            )
        });
        self.record(Syscall::CreateMemory, arguments, result)
    }

    fn map(
        &mut self,
        memory: Selector,
        domain: Selector,
        address: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(memory.0),
            u64::from(domain.0),
            address,
            offset,
            size,
            rights.bits(),
        ];
        let result = self
            .enter(Syscall::Map)
            .and_then(|()| self.do_map(memory, domain, address, offset, size, rights));
        self.record(Syscall::Map, arguments, result)
    }

    fn unmap(&mut self, domain: Selector, address: u64, size: u64) -> Result<(), Status> {
        let arguments = [u64::from(domain.0), address, size, 0, 0, 0];
        let result = self.enter(Syscall::Unmap).and_then(|()| {
            let domain = self.domain_cap(domain)?;
            let index = self
                .mappings
                .iter()
                .position(|m| m.domain == domain && m.address == address && m.size == size)
                .ok_or(Status::NotFound)?;
            self.mappings.remove(index);
            Ok(())
        });
        self.record(Syscall::Unmap, arguments, result)
    }

    fn delegate(
        &mut self,
        source: Selector,
        domain: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), Status> {
        let arguments = [
            u64::from(source.0),
            u64::from(domain.0),
            u64::from(destination.0),
            rights,
            0,
            0,
        ];
        let result = self.enter(Syscall::Delegate).and_then(|()| {
            let capability = self.lookup(INIT_DOMAIN, source)?;
            let domain = self.domain_cap(domain)?;
            if rights & !capability.rights != 0 {
                return Err(Status::InvalidRights);
            }
            self.free(domain, destination)?;
            self.put(domain, destination.0, capability.object, rights);
            Ok(())
        });
        self.record(Syscall::Delegate, arguments, result)
    }

    fn start_thread(&mut self, thread: Selector) -> Result<(), Status> {
        let arguments = [u64::from(thread.0), 0, 0, 0, 0, 0];
        let result = self.enter(Syscall::ThreadControl).and_then(|()| {
            let capability = self.typed(thread, |o| matches!(o, Object::Thread { .. }))?;
            match self.objects.get_mut(capability.object) {
                Some(Object::Thread { started, .. }) if !*started => {
                    *started = true;
                    Ok(())
                }
                _ => Err(Status::Busy),
            }
        });
        self.record(Syscall::ThreadControl, arguments, result)
    }

    fn reply_and_wait(&mut self, reply: &Message) -> Result<(u64, Message), Status> {
        self.replies.push(*reply);
        let entered = self.enter(Syscall::ReplyAndWait);
        let next = entered.and_then(|()| self.incoming.pop_front().ok_or(Status::Timeout));
        let result = next.as_ref().map(|_| ()).map_err(|status| *status);
        let _ = self.record(Syscall::ReplyAndWait, [0; 6], result);
        next
    }

    fn shutdown(&mut self, code: u32) -> Result<(), Status> {
        self.shutdown_code = Some(code);
        self.record(Syscall::Shutdown, [0, 0, u64::from(code), 0, 0, 0], Ok(()))
    }

    fn read_own(&self, address: u64, length: u64) -> Result<&[u8], NotMapped> {
        let start = self.own_physical(address, length, false)?;
        Ok(&self.physical[start..start + length as usize])
    }

    fn copy_own(&mut self, destination: u64, source: u64, length: u64) -> Result<(), NotMapped> {
        let from = self.own_physical(source, length, false)?;
        let to = self.own_physical(destination, length, true)?;
        self.physical.copy_within(from..from + length as usize, to);
        Ok(())
    }

    fn write_own(&mut self, destination: u64, bytes: &[u8]) -> Result<(), NotMapped> {
        let to = self.own_physical(destination, bytes.len() as u64, true)?;
        self.physical[to..to + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn zero_own(&mut self, destination: u64, length: u64) -> Result<(), NotMapped> {
        let to = self.own_physical(destination, length, true)?;
        self.physical[to..to + length as usize].fill(0);
        Ok(())
    }
}
