//! System-call ABI: call numbers, the register calling convention, the one status enum,
//! capability selectors, object type codes and the per-type rights bits.
//!
//! # Calling convention (x86-64 `syscall` instruction)
//!
//! | register | on entry | on return |
//! |---|---|---|
//! | `rax` | [`Syscall`] number | [`Status`] (0 = success) |
//! | `rdi` | argument 0 | result 0, where the call has one (e.g. `wait` returns bits) |
//! | `rsi` | argument 1 | preserved |
//! | `rdx` | argument 2 | preserved |
//! | `r10` | argument 3 (`rcx` is taken by `syscall`, Intel SDM Vol. 2B "SYSCALL") | preserved |
//! | `r8`  | argument 4 | preserved |
//! | `r9`  | argument 5 | preserved |
//! | `rcx`, `r11` | - | clobbered (return RIP and RFLAGS, SDM Vol. 2B "SYSCALL"/"SYSRET") |
//!
//! Every argument register is a full 64-bit value; the kernel rejects a value with bits set
//! above the width the argument documents (a selector is 32 bits, so `rdi = 1 << 40` is
//! `InvalidSelector`, never silently truncated). IPC payloads travel in the per-thread message
//! buffer described in [`crate::ipc`], not in registers.

use core::fmt;

use bitflags::bitflags;

/// Architectural upper bound on capability selectors: no capability table has more slots.
/// A table may be smaller; its own capacity is checked at lookup.
pub const MAX_SELECTORS: u32 = 1 << 16;

/// Number of scheduling priorities; valid priorities are `0..PRIORITY_LEVELS` (higher runs first).
pub const PRIORITY_LEVELS: u8 = 64;

/// Largest number of CPUs the ABI can name (bits of a CPU mask).
pub const MAX_CPUS: u16 = 64;

/// Size of a page: the unit of `map`, `unmap` and memory objects (Intel SDM Vol. 3A 4.5, 4-KByte pages).
pub const PAGE_SIZE: u64 = 4096;

/// `wait` timeout meaning "block until signalled".
pub const WAIT_FOREVER: u64 = u64::MAX;

/// `revoke` flag: also delete the named capability itself, not only what was derived from it.
pub const REVOKE_INCLUDING_SELF: u64 = 1;

/// The raw register state of one system call, exactly as the entry stub saved it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawRegisters {
    /// `rax`: the call number.
    pub number: u64,
    /// `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` in that order.
    pub arguments: [u64; 6],
}

/// System-call numbers (the value in `rax`). See `docs/kernel.md` for each call's arguments and
/// errors; the argument list is repeated on each variant as `rdi, rsi, rdx, r10, r8, r9`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Syscall {
    /// `buffer, length`: write bytes to the kernel debug console.
    DebugWrite = 0,
    /// `destination, quota_bytes, quota_objects, quota_mappings, cpu_mask, name`: new protection
    /// domain. `name` packs up to 8 ASCII bytes little-endian (first byte in bits 7:0, NUL-padded);
    /// the kernel uses it in fault reports.
    CreateProtectionDomain = 1,
    /// `domain, destination, instruction_pointer, stack_pointer, utcb, priority | cpu << 8`.
    CreateThread = 2,
    /// `handler_thread, destination, portal_id`: IPC entry served by `handler_thread`.
    CreatePortal = 3,
    /// `destination`: a notification (64 signal bits).
    CreateNotification = 4,
    /// `source_memory, destination, offset, size`: carve a page range out of a memory object.
    CreateMemory = 5,
    /// `source_interrupt, destination, line, notification, bit`: one line bound to a notification.
    CreateInterrupt = 6,
    /// `source_io_range, destination, first_port, count`: carve a sub-range of I/O ports.
    CreateIoRange = 7,
    /// `source, destination, rights`: copy a capability with the same or fewer rights.
    Derive = 8,
    /// `selector, flags`: delete every capability derived from `selector` (in every table).
    Revoke = 9,
    /// `selector`: delete one capability; what was derived from it stays, one level up.
    Delete = 10,
    /// `memory, domain, address, offset, size, rights`: map pages into a domain's space.
    Map = 11,
    /// `domain, address, size`: remove exactly one earlier mapping.
    Unmap = 12,
    /// `portal`: send the message in the caller's buffer and wait for the reply.
    Call = 13,
    /// (none): reply to the current caller, then wait for the next call to this thread's portals.
    ReplyAndWait = 14,
    /// `notification, bits`: set signal bits.
    Signal = 15,
    /// `notification, timeout_ticks`: wait for and take the pending bits (result in `rdi`).
    Wait = 16,
    /// `thread, operation, value`: start, suspend, set priority or CPU.
    ThreadControl = 17,
    /// (none): give the CPU to the next thread of the same priority.
    Yield = 18,
    /// `domain, kind, code`: power off or reboot (needs the `SYSTEM` right, held by init only).
    Shutdown = 19,
    /// `memory, offset`: the host-physical address of a page (result in `rdi`; needs `DMA_MAP`).
    MemoryPhysical = 20,
    /// `interrupt`: acknowledge (unmask) the interrupt after handling it.
    InterruptAcknowledge = 21,
    /// `io_range, domain`: let `domain` access the ports (recorded like a mapping).
    IoAllow = 22,
    /// `source, domain, destination, rights`: copy the capability at `source` into slot
    /// `destination` of `domain`'s table with `rights` (a subset of the source's). Needs `MAP`
    /// on the domain capability. This is how a parent equips a domain before its first thread
    /// runs; later delegation goes through IPC transfer items.
    Delegate = 23,
    /// `interrupt, irte_handle`: program the IOAPIC pin of a bound line in remappable format
    /// (VT-d spec 5.1.5.1) so that it delivers through interrupt remapping table entry
    /// `irte_handle` (below 65536). Needs `REMAP` on the bound line, which only a server the
    /// system trusts with interrupt routing holds (the pci-server); the entry itself is
    /// checked by the iommu-server that programmed it.
    InterruptRemap = 24,
    /// `destination`: a VM (a guest-physical address space: EPT on Intel, NPT on AMD).
    CreateVm = 32,
    /// `vm, destination`: a virtual CPU of `vm` (needs `CREATE_VCPU`).
    CreateVcpu = 33,
    /// `memory, vm, guest_physical, offset, size, rights`: map pages of a memory object into the
    /// VM's guest-physical space (needs `MAP` on the VM; rights are the memory capability's,
    /// carried into EPT/NPT permissions).
    VmMap = 34,
    /// `vcpu, operation`: operation 0 = run: apply the reply in the caller's UTCB (a
    /// `sluice_abi::vcpu::Reply` in the untyped words, or none when the tag has no words), enter
    /// the guest, and return when an exit needs the VMM, with the `ExitMessage` in the UTCB.
    /// Needs `RUN`. The vCPU runs on the calling thread's CPU.
    VcpuControl = 35,
}

impl Syscall {
    /// Every call, in number order (for tests and tables).
    pub const ALL: [Syscall; 29] = [
        Syscall::DebugWrite,
        Syscall::CreateProtectionDomain,
        Syscall::CreateThread,
        Syscall::CreatePortal,
        Syscall::CreateNotification,
        Syscall::CreateMemory,
        Syscall::CreateInterrupt,
        Syscall::CreateIoRange,
        Syscall::Derive,
        Syscall::Revoke,
        Syscall::Delete,
        Syscall::Map,
        Syscall::Unmap,
        Syscall::Call,
        Syscall::ReplyAndWait,
        Syscall::Signal,
        Syscall::Wait,
        Syscall::ThreadControl,
        Syscall::Yield,
        Syscall::Shutdown,
        Syscall::MemoryPhysical,
        Syscall::InterruptAcknowledge,
        Syscall::IoAllow,
        Syscall::Delegate,
        Syscall::InterruptRemap,
        Syscall::CreateVm,
        Syscall::CreateVcpu,
        Syscall::VmMap,
        Syscall::VcpuControl,
    ];

    /// True for numbers reserved for calls the kernel does not implement (none at present).
    pub const fn is_reserved(self) -> bool {
        false
    }
}

impl TryFrom<u64> for Syscall {
    type Error = Status;

    fn try_from(number: u64) -> Result<Self, Status> {
        // A match compiles to a table lookup: this runs on every system call.
        Ok(match number {
            0 => Syscall::DebugWrite,
            1 => Syscall::CreateProtectionDomain,
            2 => Syscall::CreateThread,
            3 => Syscall::CreatePortal,
            4 => Syscall::CreateNotification,
            5 => Syscall::CreateMemory,
            6 => Syscall::CreateInterrupt,
            7 => Syscall::CreateIoRange,
            8 => Syscall::Derive,
            9 => Syscall::Revoke,
            10 => Syscall::Delete,
            11 => Syscall::Map,
            12 => Syscall::Unmap,
            13 => Syscall::Call,
            14 => Syscall::ReplyAndWait,
            15 => Syscall::Signal,
            16 => Syscall::Wait,
            17 => Syscall::ThreadControl,
            18 => Syscall::Yield,
            19 => Syscall::Shutdown,
            20 => Syscall::MemoryPhysical,
            21 => Syscall::InterruptAcknowledge,
            22 => Syscall::IoAllow,
            23 => Syscall::Delegate,
            24 => Syscall::InterruptRemap,
            32 => Syscall::CreateVm,
            33 => Syscall::CreateVcpu,
            34 => Syscall::VmMap,
            35 => Syscall::VcpuControl,
            _ => return Err(Status::UnknownSyscall),
        })
    }
}

/// The result of every system call, returned in `rax`. Zero is success; every other value names
/// exactly one reason for refusal. A refused call changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Status {
    /// The call did what it was asked.
    Success = 0,
    /// `rax` is not a system-call number.
    UnknownSyscall = 1,
    /// A selector is at or beyond the capability table's capacity, or wider than 32 bits.
    InvalidSelector = 2,
    /// A selector that must name a capability names an empty slot.
    EmptySlot = 3,
    /// A destination selector names a slot that already holds a capability.
    SlotOccupied = 4,
    /// The capability names an object of another type than the call needs.
    WrongType = 5,
    /// The capability lacks a right the call needs.
    MissingRight = 6,
    /// A rights mask has bits undefined for the object type, or asks for more than the source has.
    InvalidRights = 7,
    /// A user address is non-canonical, in the kernel half, or the range wraps or leaves the user half.
    BadAddress = 8,
    /// An address, offset or size is not a multiple of the page size (or is zero where it must not be).
    Misaligned = 9,
    /// An argument is outside its documented values (unknown operation, priority, CPU, flag bits...).
    InvalidArgument = 10,
    /// The charged domain's kernel-memory quota (bytes, objects or mappings) would be exceeded.
    QuotaExceeded = 11,
    /// A fixed-size kernel table is full although quota remained (the system was configured with
    /// more quota than table space).
    OutOfKernelMemory = 12,
    /// A range reaches beyond the object it names, or a count exceeds its limit.
    Overflow = 13,
    /// `wait` saw no signal before the timeout.
    Timeout = 14,
    /// The object is in use in a way that forbids the call (e.g. a thread already started).
    Busy = 15,
    /// The thing the call refers to does not exist (e.g. `unmap` of a range that is not mapped).
    NotFound = 16,
    /// The IPC partner disappeared (its capability was revoked or its thread deleted) mid-call.
    Aborted = 17,
    /// The call number is reserved for later work (VM/vCPU) and not implemented yet.
    NotImplemented = 18,
    /// The address range (or port range) overlaps a mapping the domain already has.
    AlreadyMapped = 19,
}

impl Status {
    /// Every status, in number order.
    pub const ALL: [Status; 20] = [
        Status::Success,
        Status::UnknownSyscall,
        Status::InvalidSelector,
        Status::EmptySlot,
        Status::SlotOccupied,
        Status::WrongType,
        Status::MissingRight,
        Status::InvalidRights,
        Status::BadAddress,
        Status::Misaligned,
        Status::InvalidArgument,
        Status::QuotaExceeded,
        Status::OutOfKernelMemory,
        Status::Overflow,
        Status::Timeout,
        Status::Busy,
        Status::NotFound,
        Status::Aborted,
        Status::NotImplemented,
        Status::AlreadyMapped,
    ];

    /// The value placed in `rax`.
    pub const fn as_raw(self) -> u64 {
        self as u64
    }

    /// Decode a returned `rax` value (userland side).
    pub fn from_raw(raw: u64) -> Option<Status> {
        // `ALL` is in number order from 0 (checked by `status_values_are_distinct_and_described`), so the value is
        // the index.
        usize::try_from(raw)
            .ok()
            .and_then(|index| Status::ALL.get(index))
            .copied()
    }

    /// One-line description, also used by `Display`.
    pub const fn description(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::UnknownSyscall => "unknown system-call number",
            Status::InvalidSelector => "capability selector out of range",
            Status::EmptySlot => "capability selector names an empty slot",
            Status::SlotOccupied => "destination slot already holds a capability",
            Status::WrongType => "capability names an object of the wrong type",
            Status::MissingRight => "capability lacks a required right",
            Status::InvalidRights => "rights mask has unknown bits or widens the source rights",
            Status::BadAddress => "address is not a canonical user-half address range",
            Status::Misaligned => "address, offset or size is not page-aligned or is zero",
            Status::InvalidArgument => "argument outside its documented values",
            Status::QuotaExceeded => "kernel-memory quota exceeded",
            Status::OutOfKernelMemory => "kernel object table full",
            Status::Overflow => "range or count exceeds its limit",
            Status::Timeout => "timed out",
            Status::Busy => "object busy",
            Status::NotFound => "no such mapping or partner",
            Status::Aborted => "IPC partner went away",
            Status::NotImplemented => "reserved system call not implemented yet",
            Status::AlreadyMapped => "range overlaps an existing mapping",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.description())
    }
}

/// A capability selector: the index of a slot in the calling domain's capability table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector(pub u32);

impl Selector {
    /// Check a raw register value: it must be below [`MAX_SELECTORS`].
    pub fn from_raw(raw: u64) -> Result<Selector, Status> {
        match u32::try_from(raw) {
            Ok(value) if value < MAX_SELECTORS => Ok(Selector(value)),
            _ => Err(Status::InvalidSelector),
        }
    }

    /// The slot index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Object type codes, as stored in capabilities and reported to userland.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectType {
    /// An address space plus a capability table plus a kernel-memory quota.
    ProtectionDomain = 1,
    /// A thread of execution in a protection domain.
    Thread = 2,
    /// An IPC entry point served by a handler thread.
    Portal = 3,
    /// Asynchronous signal bits; interrupts arrive as notifications.
    Notification = 4,
    /// A page-aligned range of RAM frames or device MMIO.
    Memory = 5,
    /// A range of interrupt lines (GSIs); a single line may be bound to a notification.
    Interrupt = 6,
    /// A range of x86 I/O ports.
    IoPortRange = 7,
    /// A guest-physical space (EPT/NPT root).
    Vm = 8,
    /// A virtual CPU (VMCS/VMCB) of a VM.
    Vcpu = 9,
}

impl ObjectType {
    /// Every type code.
    pub const ALL: [ObjectType; 9] = [
        ObjectType::ProtectionDomain,
        ObjectType::Thread,
        ObjectType::Portal,
        ObjectType::Notification,
        ObjectType::Memory,
        ObjectType::Interrupt,
        ObjectType::IoPortRange,
        ObjectType::Vm,
        ObjectType::Vcpu,
    ];

    /// The rights bits defined for this type; any other bit in a mask is `InvalidRights`.
    pub const fn valid_rights(self) -> u64 {
        match self {
            ObjectType::ProtectionDomain => ProtectionDomainRights::all().bits(),
            ObjectType::Thread => ThreadRights::all().bits(),
            ObjectType::Portal => PortalRights::all().bits(),
            ObjectType::Notification => NotificationRights::all().bits(),
            ObjectType::Memory => MemoryRights::all().bits(),
            ObjectType::Interrupt => InterruptRights::all().bits(),
            ObjectType::IoPortRange => IoPortRights::all().bits(),
            ObjectType::Vm => VmRights::all().bits(),
            ObjectType::Vcpu => VcpuRights::all().bits(),
        }
    }
}

impl TryFrom<u8> for ObjectType {
    type Error = Status;

    fn try_from(code: u8) -> Result<Self, Status> {
        ObjectType::ALL
            .iter()
            .copied()
            .find(|t| *t as u8 == code)
            .ok_or(Status::InvalidArgument)
    }
}

/// The union of the rights bits of every type: a raw mask with any other bit is never valid.
pub const ALL_RIGHTS_BITS: u64 = ProtectionDomainRights::all().bits()
    | ThreadRights::all().bits()
    | PortalRights::all().bits()
    | NotificationRights::all().bits()
    | MemoryRights::all().bits()
    | InterruptRights::all().bits()
    | IoPortRights::all().bits()
    | VmRights::all().bits()
    | VcpuRights::all().bits();

bitflags! {
    /// Rights on a protection-domain capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ProtectionDomainRights: u64 {
        /// Create threads that run in this domain.
        const CREATE_THREAD = 1 << 0;
        /// Change this domain's address space (`map`, `unmap`, `io_allow`).
        const MAP = 1 << 1;
        /// Power off or reboot the machine (`shutdown`); the kernel gives it to init only.
        const SYSTEM = 1 << 2;
    }
}

bitflags! {
    /// Rights on a VM capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VmRights: u64 {
        /// Map memory into the guest-physical space (`vm_map`).
        const MAP = 1 << 0;
        /// Create virtual CPUs (`create_vcpu`).
        const CREATE_VCPU = 1 << 1;
    }
}

bitflags! {
    /// Rights on a vCPU capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VcpuRights: u64 {
        /// Run the vCPU (`vcpu_control`).
        const RUN = 1 << 0;
    }
}

bitflags! {
    /// Rights on a thread capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ThreadRights: u64 {
        /// Start, suspend, set priority and CPU (`thread_control`).
        const CONTROL = 1 << 0;
        /// Make this thread the handler of a new portal (`create_portal`).
        const BIND_PORTAL = 1 << 1;
    }
}

bitflags! {
    /// Rights on a portal capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PortalRights: u64 {
        /// Send calls through the portal.
        const CALL = 1 << 0;
    }
}

bitflags! {
    /// Rights on a notification capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NotificationRights: u64 {
        /// Set signal bits.
        const SIGNAL = 1 << 0;
        /// Wait for and take signal bits.
        const WAIT = 1 << 1;
        /// Bind an interrupt line to this notification (`create_interrupt`).
        const BIND_INTERRUPT = 1 << 2;
    }
}

bitflags! {
    /// Rights on a memory capability (RAM frames or device MMIO).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemoryRights: u64 {
        /// Map readable.
        const READ = 1 << 0;
        /// Map writable.
        const WRITE = 1 << 1;
        /// Map executable.
        const EXECUTE = 1 << 2;
        /// Learn host-physical addresses (`memory_physical`) so that an IOMMU may map it for DMA.
        const DMA_MAP = 1 << 3;
        /// Carve sub-ranges into new memory objects (`create_memory`).
        const RETYPE = 1 << 4;
    }
}

bitflags! {
    /// Rights on an interrupt capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct InterruptRights: u64 {
        /// Carve single lines bound to notifications (`create_interrupt`).
        const RETYPE = 1 << 0;
        /// Acknowledge (unmask) a bound line.
        const ACKNOWLEDGE = 1 << 1;
        /// Point a bound IOAPIC line at an interrupt remapping table entry
        /// (`interrupt_remap`). Kept by the server that routes INTx; an owner gets only
        /// `ACKNOWLEDGE`, so it cannot aim its pin at another entry.
        const REMAP = 1 << 2;
    }
}

bitflags! {
    /// Rights on an I/O port range capability.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IoPortRights: u64 {
        /// Let a domain access the ports (`io_allow`).
        const ACCESS = 1 << 0;
        /// Carve sub-ranges (`create_io_range`).
        const RETYPE = 1 << 1;
    }
}

/// Operations of `thread_control` (argument 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ThreadOperation {
    /// Make a created or suspended thread runnable. `value` must be 0.
    Start = 0,
    /// Stop a thread from being scheduled. `value` must be 0.
    Suspend = 1,
    /// Set the priority to `value` (below [`PRIORITY_LEVELS`]).
    SetPriority = 2,
    /// Pin the thread to CPU `value` (below [`MAX_CPUS`], and owned by the thread's domain).
    SetCpu = 3,
}

impl TryFrom<u64> for ThreadOperation {
    type Error = Status;

    fn try_from(raw: u64) -> Result<Self, Status> {
        match raw {
            0 => Ok(ThreadOperation::Start),
            1 => Ok(ThreadOperation::Suspend),
            2 => Ok(ThreadOperation::SetPriority),
            3 => Ok(ThreadOperation::SetCpu),
            _ => Err(Status::InvalidArgument),
        }
    }
}

/// `shutdown` kinds (argument 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ShutdownKind {
    /// Power the machine off (on emulators: exit with `code`).
    PowerOff = 0,
    /// Reset the machine.
    Reboot = 1,
}

impl TryFrom<u64> for ShutdownKind {
    type Error = Status;

    fn try_from(raw: u64) -> Result<Self, Status> {
        match raw {
            0 => Ok(ShutdownKind::PowerOff),
            1 => Ok(ShutdownKind::Reboot),
            _ => Err(Status::InvalidArgument),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers_round_trip_and_unknown_numbers_fail() {
        for call in Syscall::ALL {
            assert_eq!(Syscall::try_from(call as u64), Ok(call));
        }
        for number in [25u64, 31, 36, 1000, u64::MAX] {
            assert_eq!(Syscall::try_from(number), Err(Status::UnknownSyscall));
        }
    }

    #[test]
    fn status_values_are_distinct_and_described() {
        for (index, status) in Status::ALL.iter().enumerate() {
            assert_eq!(status.as_raw(), index as u64);
            assert_eq!(Status::from_raw(index as u64), Some(*status));
            assert!(!status.description().is_empty());
        }
        assert_eq!(Status::from_raw(Status::ALL.len() as u64), None);
    }

    #[test]
    fn selectors_wider_than_the_limit_are_rejected() {
        assert_eq!(Selector::from_raw(5), Ok(Selector(5)));
        assert_eq!(
            Selector::from_raw(u64::from(MAX_SELECTORS)),
            Err(Status::InvalidSelector)
        );
        assert_eq!(Selector::from_raw(1 << 40), Err(Status::InvalidSelector));
    }

    #[test]
    fn virtualization_types_have_their_rights_and_codes_round_trip() {
        assert_eq!(ObjectType::Vm.valid_rights(), 0b11);
        assert_eq!(ObjectType::Vcpu.valid_rights(), 0b1);
        for object_type in ObjectType::ALL {
            assert_eq!(ObjectType::try_from(object_type as u8), Ok(object_type));
        }
        assert_eq!(ObjectType::try_from(0), Err(Status::InvalidArgument));
        assert_eq!(MemoryRights::all().bits(), 0b1_1111);
        assert_eq!(ObjectType::Interrupt.valid_rights(), 0b111);
        assert_eq!(Syscall::try_from(24), Ok(Syscall::InterruptRemap));
    }
}
