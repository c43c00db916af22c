//! Tests of the system-call wrappers against the recording fake: every wrapper passes exactly
//! its documented registers, zero in every unused one, and decodes results and refusals.

use sluice_abi::syscall::{
    MemoryRights, Selector, ShutdownKind, Status, Syscall, ThreadOperation, WAIT_FOREVER,
};

use crate::host::{self, RecordedCall};
use crate::sys;
use crate::types::{DomainName, Quota, ThreadStart};

fn accept_everything() {
    host::reset();
    for call in Syscall::ALL {
        host::set_handler(call, |_, _| Ok(0));
    }
}

fn recorded(call: Syscall, arguments: [u64; 6]) -> RecordedCall {
    RecordedCall { call, arguments }
}

#[test]
fn every_wrapper_passes_its_arguments_and_zeroes_the_rest() {
    accept_everything();
    let s = Selector;
    let name = DomainName::new("pci").unwrap();
    let quota = Quota {
        bytes: 0x1000,
        objects: 7,
        mappings: 9,
    };
    let start = ThreadStart {
        instruction_pointer: 0x4000_1000,
        stack_pointer: 0x7f00_0000_fff0,
        utcb: 0x7f00_0000_1000,
        priority: 10,
        cpu: 1,
    };
    sys::create_protection_domain(s(130), quota, 0b11, name).unwrap();
    sys::create_thread(s(130), s(131), start).unwrap();
    sys::create_portal(s(131), s(132), 77).unwrap();
    sys::create_notification(s(133)).unwrap();
    sys::create_memory(s(16), s(134), 0x2000, 0x3000).unwrap();
    sys::create_interrupt(s(4), s(135), 9, s(133), 5).unwrap();
    sys::create_io_range(s(3), s(136), 0x3f8, 8).unwrap();
    sys::derive(s(132), s(137), 1).unwrap();
    sys::revoke(s(137), true).unwrap();
    sys::revoke(s(137), false).unwrap();
    sys::delete(s(137)).unwrap();
    sys::map(
        s(134),
        s(0),
        0x5000_0000,
        0x1000,
        0x2000,
        MemoryRights::READ,
    )
    .unwrap();
    sys::unmap(s(0), 0x5000_0000, 0x2000).unwrap();
    sys::call(s(132)).unwrap();
    sys::reply_and_wait().unwrap();
    sys::signal(s(133), 0b100).unwrap();
    sys::wait(s(133), WAIT_FOREVER).unwrap();
    sys::thread_control(s(131), ThreadOperation::SetPriority, 12).unwrap();
    sys::start_thread(s(131)).unwrap();
    sys::yield_now();
    sys::shutdown(s(0), ShutdownKind::PowerOff, 3).unwrap();
    sys::memory_physical(s(134), 0x1000).unwrap();
    sys::interrupt_acknowledge(s(135)).unwrap();
    sys::io_allow(s(136), s(130)).unwrap();
    sys::delegate(s(132), s(130), s(2), 1).unwrap();
    let expected = [
        recorded(
            Syscall::CreateProtectionDomain,
            [
                130,
                0x1000,
                7,
                9,
                0b11,
                u64::from_le_bytes(*b"pci\0\0\0\0\0"),
            ],
        ),
        recorded(
            Syscall::CreateThread,
            [
                130,
                131,
                0x4000_1000,
                0x7f00_0000_fff0,
                0x7f00_0000_1000,
                10 | 1 << 8,
            ],
        ),
        recorded(Syscall::CreatePortal, [131, 132, 77, 0, 0, 0]),
        recorded(Syscall::CreateNotification, [133, 0, 0, 0, 0, 0]),
        recorded(Syscall::CreateMemory, [16, 134, 0x2000, 0x3000, 0, 0]),
        recorded(Syscall::CreateInterrupt, [4, 135, 9, 133, 5, 0]),
        recorded(Syscall::CreateIoRange, [3, 136, 0x3f8, 8, 0, 0]),
        recorded(Syscall::Derive, [132, 137, 1, 0, 0, 0]),
        recorded(Syscall::Revoke, [137, 1, 0, 0, 0, 0]),
        recorded(Syscall::Revoke, [137, 0, 0, 0, 0, 0]),
        recorded(Syscall::Delete, [137, 0, 0, 0, 0, 0]),
        recorded(Syscall::Map, [134, 0, 0x5000_0000, 0x1000, 0x2000, 1]),
        recorded(Syscall::Unmap, [0, 0x5000_0000, 0x2000, 0, 0, 0]),
        recorded(Syscall::Call, [132, 0, 0, 0, 0, 0]),
        recorded(Syscall::ReplyAndWait, [0; 6]),
        recorded(Syscall::Signal, [133, 0b100, 0, 0, 0, 0]),
        recorded(Syscall::Wait, [133, u64::MAX, 0, 0, 0, 0]),
        recorded(Syscall::ThreadControl, [131, 2, 12, 0, 0, 0]),
        recorded(Syscall::ThreadControl, [131, 0, 0, 0, 0, 0]),
        recorded(Syscall::Yield, [0; 6]),
        recorded(Syscall::Shutdown, [0, 0, 3, 0, 0, 0]),
        recorded(Syscall::MemoryPhysical, [134, 0x1000, 0, 0, 0, 0]),
        recorded(Syscall::InterruptAcknowledge, [135, 0, 0, 0, 0, 0]),
        recorded(Syscall::IoAllow, [136, 130, 0, 0, 0, 0]),
        recorded(Syscall::Delegate, [132, 130, 2, 1, 0, 0]),
    ];
    assert_eq!(host::calls(), expected);
}

#[test]
fn results_come_from_rdi_and_refusals_are_typed() {
    host::reset();
    host::set_handler(Syscall::Wait, |_, _| Ok(0b101));
    host::set_handler(Syscall::MemoryPhysical, |arguments, _| {
        Ok(0x1234_0000 + arguments[1])
    });
    host::set_handler(Syscall::ReplyAndWait, |_, _| Ok(9));
    assert_eq!(sys::wait(Selector(2), 0), Ok(0b101));
    assert_eq!(sys::memory_physical(Selector(5), 0x10), Ok(0x1234_0010));
    assert_eq!(sys::reply_and_wait(), Ok(9));
    for status in Status::ALL.into_iter().skip(1) {
        host::set_handler(Syscall::Delete, move |_, _| Err(status));
        assert_eq!(sys::delete(Selector(1)), Err(status));
    }
    // A call without a handler is refused like an unknown call.
    assert_eq!(sys::signal(Selector(1), 1), Err(Status::UnknownSyscall));
    // A value that is no status at all does not pass as success.
    assert_eq!(
        sys::decode(sys::RawResult {
            status: 999,
            result: 5
        }),
        Err(Status::InvalidArgument)
    );
}

#[test]
fn out_of_range_thread_placement_is_refused_without_a_call() {
    host::reset();
    let start = ThreadStart {
        instruction_pointer: 0x4000_0000,
        stack_pointer: 0x5000_0000,
        utcb: 0x6000_0000,
        priority: 64,
        cpu: 0,
    };
    assert_eq!(
        sys::create_thread(Selector(1), Selector(2), start),
        Err(Status::InvalidArgument)
    );
    assert!(host::calls().is_empty());
}

#[test]
fn debug_write_checks_addresses_like_the_kernel() {
    host::reset();
    sys::debug_write(b"hi\n").unwrap();
    assert_eq!(host::take_output(), "hi\n");
    assert_eq!(
        sys::debug_write_raw(0xffff_8000_0000_0000, 16),
        Err(Status::BadAddress)
    );
    assert_eq!(sys::debug_write_raw(0, 16), Err(Status::BadAddress));
    assert_eq!(
        host::calls()[1],
        recorded(Syscall::DebugWrite, [0xffff_8000_0000_0000, 16, 0, 0, 0, 0])
    );
}
