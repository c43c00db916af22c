//! System-call decoding: one typed decoder per call, from the raw registers to a
//! [`DecodedSyscall`] whose fields already satisfy every check that needs no kernel state
//! (selectors inside the caller's table, rights masks with no unknown bits, page alignment,
//! canonical user-half addresses, operation codes, unused registers zero). Decoding is a pure
//! function: it reads registers and changes nothing.

use sluice_abi::syscall::{
    MemoryRights, RawRegisters, Selector, ShutdownKind, Status, Syscall, ThreadOperation,
    ALL_RIGHTS_BITS, MAX_CPUS, PAGE_SIZE, PRIORITY_LEVELS, REVOKE_INCLUDING_SELF,
};

use crate::address::{UserSlice, UserVirt};
use crate::create::ThreadParameters;
use crate::object::IoPortRange;
use crate::quota::Resources;

/// Most bytes one `debug_write` may print.
pub const DEBUG_WRITE_MAX: u64 = 4096;

/// A system call with checked, typed arguments. See `docs/kernel.md` for each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodedSyscall {
    /// Print `buffer` on the debug console.
    DebugWrite { buffer: UserSlice },
    /// Create a domain with quota `limit` owning `cpu_mask`.
    CreateProtectionDomain {
        destination: Selector,
        limit: Resources,
        cpu_mask: u64,
        /// Up to 8 printable ASCII bytes, NUL-padded (checked).
        name: [u8; 8],
    },
    /// Create a thread in `domain`.
    CreateThread {
        domain: Selector,
        destination: Selector,
        parameters: ThreadParameters,
    },
    /// Create a portal served by `handler`.
    CreatePortal {
        handler: Selector,
        destination: Selector,
        portal_id: u64,
    },
    /// Create a notification.
    CreateNotification { destination: Selector },
    /// Carve a memory object out of `source`.
    CreateMemory {
        source: Selector,
        destination: Selector,
        offset: u64,
        size: u64,
    },
    /// Bind `line` of `source` to `bit` of `notification`.
    CreateInterrupt {
        source: Selector,
        destination: Selector,
        line: u32,
        notification: Selector,
        bit: u8,
    },
    /// Carve ports `first .. first + count` out of `source`.
    CreateIoRange {
        source: Selector,
        destination: Selector,
        first: u16,
        count: u32,
    },
    /// Copy `source` to `destination` with `rights` (no bit outside every type's rights).
    Derive {
        source: Selector,
        destination: Selector,
        rights: u64,
    },
    /// Revoke what was derived from `selector` (and it, with `REVOKE_INCLUDING_SELF`).
    Revoke { selector: Selector, flags: u64 },
    /// Delete `selector`.
    Delete { selector: Selector },
    /// Map `range` of `domain` to `memory` at `offset` with `rights` (READ plus W/X).
    Map {
        memory: Selector,
        domain: Selector,
        range: UserSlice,
        offset: u64,
        rights: MemoryRights,
    },
    /// Unmap exactly `range` from `domain`.
    Unmap { domain: Selector, range: UserSlice },
    /// Call through `portal`.
    Call { portal: Selector },
    /// Reply and wait for the next call.
    ReplyAndWait,
    /// Set `bits` (non-zero) in `notification`.
    Signal { notification: Selector, bits: u64 },
    /// Wait on `notification` for at most `timeout` ticks (`WAIT_FOREVER`, 0 = poll).
    Wait {
        notification: Selector,
        timeout: u64,
    },
    /// Control `thread`; `value` already checked for `operation`.
    ThreadControl {
        thread: Selector,
        operation: ThreadOperation,
        value: u64,
    },
    /// Yield the CPU.
    Yield,
    /// Power off or reboot; needs `SYSTEM` on `domain`.
    Shutdown {
        domain: Selector,
        kind: ShutdownKind,
        code: u32,
    },
    /// Physical address of byte `offset` of `memory`.
    MemoryPhysical { memory: Selector, offset: u64 },
    /// Acknowledge `interrupt`.
    InterruptAcknowledge { interrupt: Selector },
    /// Program the IOAPIC pin of the bound line `interrupt` in remappable format with
    /// interrupt remapping table entry `handle`.
    InterruptRemap { interrupt: Selector, handle: u16 },
    /// Create a VM at `destination`.
    CreateVm { destination: Selector },
    /// Create a vCPU of `vm` at `destination`.
    CreateVcpu { vm: Selector, destination: Selector },
    /// Map `size` bytes at `offset` of `memory` at `guest_physical` in `vm`.
    VmMap {
        memory: Selector,
        vm: Selector,
        guest_physical: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
    },
    /// Run `vcpu` until an exit needs the VMM.
    VcpuRun { vcpu: Selector },
    /// Make `vcpu`'s exits of `reason` (an `ExitReason` code, 0 = every reason) carry `groups`
    /// beyond the base state.
    VcpuSetExitState {
        vcpu: Selector,
        reason: u32,
        groups: sluice_abi::vcpu::Mtd,
    },
    /// Copy `source` into `destination` of `domain`'s table with `rights`.
    Delegate {
        source: Selector,
        domain: Selector,
        destination: Selector,
        rights: u64,
    },
    /// Let `domain` use the ports of `io_range`.
    IoAllow {
        io_range: Selector,
        domain: Selector,
    },
}

/// The six argument registers with the caller's table size.
struct Arguments<'a> {
    values: &'a [u64; 6],
    selector_count: u32,
}

impl Arguments<'_> {
    fn raw(&self, index: usize) -> u64 {
        self.values.get(index).copied().unwrap_or(0)
    }

    fn selector(&self, index: usize) -> Result<Selector, Status> {
        let selector = Selector::from_raw(self.raw(index))?;
        if selector.0 >= self.selector_count {
            return Err(Status::InvalidSelector);
        }
        Ok(selector)
    }

    fn u32(&self, index: usize) -> Result<u32, Status> {
        u32::try_from(self.raw(index)).map_err(|_| Status::InvalidArgument)
    }

    fn page_multiple(&self, index: usize) -> Result<u64, Status> {
        let value = self.raw(index);
        if !value.is_multiple_of(PAGE_SIZE) {
            return Err(Status::Misaligned);
        }
        Ok(value)
    }

    /// Registers from `first` on are unused by the call and must be zero.
    fn unused_from(&self, first: usize) -> Result<(), Status> {
        match self.values.get(first..) {
            Some(rest) if rest.iter().any(|value| *value != 0) => Err(Status::InvalidArgument),
            _ => Ok(()),
        }
    }
}

pub use sluice_abi::vcpu::{VCPU_RUN, VCPU_SET_EXIT_STATE};

/// Decode one system call. `selector_count` is the size of the caller's capability table.
///
/// Errors: `UnknownSyscall`, `InvalidSelector`,
/// `InvalidRights`, `BadAddress`, `Misaligned`, `Overflow`, `InvalidArgument`.
pub fn decode(registers: &RawRegisters, selector_count: u32) -> Result<DecodedSyscall, Status> {
    let call = Syscall::try_from(registers.number)?;
    let arguments = Arguments {
        values: &registers.arguments,
        selector_count,
    };
    let a = &arguments;
    let (decoded, used) = match call {
        Syscall::DebugWrite => {
            if a.raw(1) > DEBUG_WRITE_MAX {
                return Err(Status::Overflow);
            }
            let buffer = UserSlice::new(a.raw(0), a.raw(1))?;
            (DecodedSyscall::DebugWrite { buffer }, 2)
        }
        Syscall::CreateProtectionDomain => (decode_create_domain(a)?, 6),
        Syscall::CreateThread => (decode_create_thread(a)?, 6),
        Syscall::CreatePortal => {
            let handler = a.selector(0)?;
            let destination = a.selector(1)?;
            let portal_id = a.raw(2);
            (
                DecodedSyscall::CreatePortal {
                    handler,
                    destination,
                    portal_id,
                },
                3,
            )
        }
        Syscall::CreateNotification => (
            DecodedSyscall::CreateNotification {
                destination: a.selector(0)?,
            },
            1,
        ),
        Syscall::CreateMemory => {
            let source = a.selector(0)?;
            let destination = a.selector(1)?;
            let offset = a.page_multiple(2)?;
            let size = a.page_multiple(3)?;
            if size == 0 {
                return Err(Status::Misaligned);
            }
            offset.checked_add(size).ok_or(Status::Overflow)?;
            (
                DecodedSyscall::CreateMemory {
                    source,
                    destination,
                    offset,
                    size,
                },
                4,
            )
        }
        Syscall::CreateInterrupt => {
            let source = a.selector(0)?;
            let destination = a.selector(1)?;
            let line = a.u32(2)?;
            let notification = a.selector(3)?;
            let bit = u8::try_from(a.raw(4))
                .ok()
                .filter(|bit| *bit < 64)
                .ok_or(Status::InvalidArgument)?;
            (
                DecodedSyscall::CreateInterrupt {
                    source,
                    destination,
                    line,
                    notification,
                    bit,
                },
                5,
            )
        }
        Syscall::CreateIoRange => {
            let source = a.selector(0)?;
            let destination = a.selector(1)?;
            let first = u16::try_from(a.raw(2)).map_err(|_| Status::InvalidArgument)?;
            let count = a.u32(3)?;
            if !(IoPortRange { first, count }).is_well_formed() {
                return Err(Status::InvalidArgument);
            }
            (
                DecodedSyscall::CreateIoRange {
                    source,
                    destination,
                    first,
                    count,
                },
                4,
            )
        }
        Syscall::Derive => {
            let source = a.selector(0)?;
            let destination = a.selector(1)?;
            let rights = a.raw(2);
            if rights & !ALL_RIGHTS_BITS != 0 {
                return Err(Status::InvalidRights);
            }
            (
                DecodedSyscall::Derive {
                    source,
                    destination,
                    rights,
                },
                3,
            )
        }
        Syscall::Revoke => {
            let selector = a.selector(0)?;
            let flags = a.raw(1);
            if flags & !REVOKE_INCLUDING_SELF != 0 {
                return Err(Status::InvalidArgument);
            }
            (DecodedSyscall::Revoke { selector, flags }, 2)
        }
        Syscall::Delete => (
            DecodedSyscall::Delete {
                selector: a.selector(0)?,
            },
            1,
        ),
        Syscall::Map => (decode_map(a)?, 6),
        Syscall::Unmap => {
            let domain = a.selector(0)?;
            let range = UserSlice::new_pages(a.raw(1), a.raw(2))?;
            (DecodedSyscall::Unmap { domain, range }, 3)
        }
        Syscall::Call => (
            DecodedSyscall::Call {
                portal: a.selector(0)?,
            },
            1,
        ),
        Syscall::ReplyAndWait => (DecodedSyscall::ReplyAndWait, 0),
        Syscall::Signal => {
            let notification = a.selector(0)?;
            let bits = a.raw(1);
            if bits == 0 {
                return Err(Status::InvalidArgument);
            }
            (DecodedSyscall::Signal { notification, bits }, 2)
        }
        Syscall::Wait => {
            let notification = a.selector(0)?;
            (
                DecodedSyscall::Wait {
                    notification,
                    timeout: a.raw(1),
                },
                2,
            )
        }
        Syscall::ThreadControl => (decode_thread_control(a)?, 3),
        Syscall::Yield => (DecodedSyscall::Yield, 0),
        Syscall::Shutdown => {
            let domain = a.selector(0)?;
            let kind = ShutdownKind::try_from(a.raw(1))?;
            let code = a.u32(2)?;
            (DecodedSyscall::Shutdown { domain, kind, code }, 3)
        }
        Syscall::MemoryPhysical => {
            let memory = a.selector(0)?;
            (
                DecodedSyscall::MemoryPhysical {
                    memory,
                    offset: a.raw(1),
                },
                2,
            )
        }
        Syscall::InterruptAcknowledge => (
            DecodedSyscall::InterruptAcknowledge {
                interrupt: a.selector(0)?,
            },
            1,
        ),
        Syscall::InterruptRemap => {
            let interrupt = a.selector(0)?;
            // VT-d spec 5.1.5.1: the redirection entry carries a 16-bit interrupt_index.
            let handle = u16::try_from(a.raw(1)).map_err(|_| Status::InvalidArgument)?;
            (DecodedSyscall::InterruptRemap { interrupt, handle }, 2)
        }
        Syscall::IoAllow => {
            let io_range = a.selector(0)?;
            let domain = a.selector(1)?;
            (DecodedSyscall::IoAllow { io_range, domain }, 2)
        }
        Syscall::Delegate => {
            let source = a.selector(0)?;
            let domain = a.selector(1)?;
            let destination = a.selector(2)?;
            let rights = a.raw(3);
            if rights & !ALL_RIGHTS_BITS != 0 {
                return Err(Status::InvalidRights);
            }
            (
                DecodedSyscall::Delegate {
                    source,
                    domain,
                    destination,
                    rights,
                },
                4,
            )
        }
        Syscall::CreateVm => (
            DecodedSyscall::CreateVm {
                destination: a.selector(0)?,
            },
            1,
        ),
        Syscall::CreateVcpu => {
            let vm = a.selector(0)?;
            let destination = a.selector(1)?;
            (DecodedSyscall::CreateVcpu { vm, destination }, 2)
        }
        Syscall::VmMap => {
            let memory = a.selector(0)?;
            let vm = a.selector(1)?;
            let guest_physical = a.page_multiple(2)?;
            let offset = a.page_multiple(3)?;
            let size = a.page_multiple(4)?;
            if size == 0 {
                return Err(Status::Misaligned);
            }
            guest_physical.checked_add(size).ok_or(Status::Overflow)?;
            offset.checked_add(size).ok_or(Status::Overflow)?;
            let rights = MemoryRights::from_bits(a.raw(5)).ok_or(Status::InvalidRights)?;
            (
                DecodedSyscall::VmMap {
                    memory,
                    vm,
                    guest_physical,
                    offset,
                    size,
                    rights,
                },
                6,
            )
        }
        Syscall::VcpuControl => {
            let vcpu = a.selector(0)?;
            match a.raw(1) {
                VCPU_RUN => (DecodedSyscall::VcpuRun { vcpu }, 2),
                VCPU_SET_EXIT_STATE => {
                    let reason = a.u32(2)?;
                    if reason > sluice_abi::vcpu::MAX_EXIT_REASON_CODE {
                        return Err(Status::InvalidArgument);
                    }
                    let groups = sluice_abi::vcpu::Mtd::from_bits(a.raw(3))
                        .ok_or(Status::InvalidArgument)?;
                    (
                        DecodedSyscall::VcpuSetExitState {
                            vcpu,
                            reason,
                            groups,
                        },
                        4,
                    )
                }
                _ => return Err(Status::InvalidArgument),
            }
        }
    };
    arguments.unused_from(used)?;
    Ok(decoded)
}

fn decode_create_domain(a: &Arguments<'_>) -> Result<DecodedSyscall, Status> {
    let destination = a.selector(0)?;
    let limit = Resources {
        bytes: a.raw(1),
        objects: a.u32(2)?,
        mappings: a.u32(3)?,
    };
    let cpu_mask = a.raw(4);
    let name = a.raw(5).to_le_bytes();
    let length = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let printable = name[..length]
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b'-' || *b == b'_');
    if !printable || name[length..].iter().any(|b| *b != 0) {
        return Err(Status::InvalidArgument);
    }
    Ok(DecodedSyscall::CreateProtectionDomain {
        destination,
        limit,
        cpu_mask,
        name,
    })
}

fn decode_create_thread(a: &Arguments<'_>) -> Result<DecodedSyscall, Status> {
    let domain = a.selector(0)?;
    let destination = a.selector(1)?;
    let instruction_pointer = UserVirt::new(a.raw(2))?;
    let stack_pointer = UserVirt::new(a.raw(3))?;
    let utcb = UserVirt::new_page_aligned(a.raw(4))?;
    let placement = a.raw(5);
    if placement >> 24 != 0 {
        return Err(Status::InvalidArgument);
    }
    let priority = (placement & 0xff) as u8;
    let cpu = ((placement >> 8) & 0xffff) as u16;
    if priority >= PRIORITY_LEVELS || cpu >= MAX_CPUS {
        return Err(Status::InvalidArgument);
    }
    let parameters = ThreadParameters {
        instruction_pointer,
        stack_pointer,
        utcb,
        priority,
        cpu,
    };
    Ok(DecodedSyscall::CreateThread {
        domain,
        destination,
        parameters,
    })
}

fn decode_map(a: &Arguments<'_>) -> Result<DecodedSyscall, Status> {
    let memory = a.selector(0)?;
    let domain = a.selector(1)?;
    let range = UserSlice::new_pages(a.raw(2), a.raw(4))?;
    let offset = a.page_multiple(3)?;
    offset.checked_add(range.length()).ok_or(Status::Overflow)?;
    let page_rights = MemoryRights::READ | MemoryRights::WRITE | MemoryRights::EXECUTE;
    let rights = MemoryRights::from_bits(a.raw(5))
        .filter(|rights| page_rights.contains(*rights) && rights.contains(MemoryRights::READ))
        .ok_or(Status::InvalidRights)?;
    Ok(DecodedSyscall::Map {
        memory,
        domain,
        range,
        offset,
        rights,
    })
}

fn decode_thread_control(a: &Arguments<'_>) -> Result<DecodedSyscall, Status> {
    let thread = a.selector(0)?;
    let operation = ThreadOperation::try_from(a.raw(1))?;
    let value = a.raw(2);
    let valid = match operation {
        ThreadOperation::Start | ThreadOperation::Suspend => value == 0,
        ThreadOperation::SetPriority => value < u64::from(PRIORITY_LEVELS),
        ThreadOperation::SetCpu => value < u64::from(MAX_CPUS),
    };
    if !valid {
        return Err(Status::InvalidArgument);
    }
    Ok(DecodedSyscall::ThreadControl {
        thread,
        operation,
        value,
    })
}
