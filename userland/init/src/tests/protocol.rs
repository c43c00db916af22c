//! The parent portal's state machine on its own: refusals of unexpected, repeated and
//! malformed requests, and the order the misbehave runs are driven in.

use sluice_abi::syscall::Status;
use sluice_rt::message::Message;
use sluice_rt::protocol::{check_reply, CallError, Refusal, Request};

use crate::error::{InitError, StepList};
use crate::kernel::OwnMappings;
use crate::service::{
    lifecycle_verdict, report_is_expected, LifecycleVerdict, Next, Service, FAULT_PORTAL_ID,
    VCPU_LIFECYCLE_ALL_STEPS, VCPU_LIFECYCLE_NO_VIRTUALIZATION,
};
use sluice_abi::syscall::{MemoryRights, Selector};

fn refused(reply: &Message) -> Option<Refusal> {
    match check_reply(reply, 0) {
        Err(CallError::Refused(refusal)) => Some(refusal),
        _ => None,
    }
}

#[test]
fn ready_is_accepted_once_per_server_and_only_from_servers() {
    sluice_rt::host::reset();
    let mut service = Service::new(false);
    let ready = Request::Ready.encode();
    assert_eq!(service.handle(1, &ready).1, Next::Continue);
    let (reply, next) = service.handle(1, &ready);
    assert_eq!(
        (refused(&reply), next),
        (Some(Refusal::NotExpected), Next::Continue)
    );
    let (reply, _) = service.handle(4, &ready);
    assert_eq!(
        refused(&reply),
        Some(Refusal::NotExpected),
        "misbehave is no server"
    );
    let (reply, _) = service.handle(FAULT_PORTAL_ID, &ready);
    assert_eq!(refused(&reply), Some(Refusal::NotExpected));
    assert_eq!(service.handle(3, &ready).1, Next::Continue);
    let (reply, next) = service.handle(2, &ready);
    assert_eq!((check_reply(&reply, 0), next), (Ok(()), Next::Finished));
    assert_eq!(service.servers_ready(), 3);
    let log = sluice_rt::host::take_output();
    assert!(log.contains("init: portal 1: ready twice"), "{log}");
}

#[test]
fn malformed_and_unknown_requests_are_refused_without_changing_state() {
    sluice_rt::host::reset();
    let mut service = Service::new(false);
    let (reply, next) = service.handle(1, &Message::new(77));
    assert_eq!(
        (refused(&reply), next),
        (Some(Refusal::UnknownLabel), Next::Continue)
    );
    let (reply, _) = service.handle(1, &Message::with_words(1, &[5]).unwrap());
    assert_eq!(refused(&reply), Some(Refusal::Malformed));
    let (reply, _) = service.handle(1, &Request::Hello { version: 1 }.encode());
    assert_eq!(refused(&reply), Some(Refusal::NotExpected));
    let report = Request::Report {
        mode: 1,
        first: 3,
        second: 5,
    }
    .encode();
    let (reply, _) = service.handle(4, &report);
    assert_eq!(
        refused(&reply),
        Some(Refusal::NotExpected),
        "no report before the servers"
    );
    assert_eq!(service.servers_ready(), 0);
}

#[test]
fn misbehave_is_driven_one_mode_at_a_time() {
    sluice_rt::host::reset();
    let mut service = Service::new(true);
    let ready = Request::Ready.encode();
    service.handle(1, &ready);
    service.handle(2, &ready);
    assert_eq!(
        service.handle(3, &ready).1,
        Next::StartMisbehave { mode: 1 }
    );
    let fault = Request::Fault { bits: 1 }.encode();
    let report = Request::Report {
        mode: 1,
        first: 3,
        second: 5,
    }
    .encode();
    // The report must come from mode 1's portal (child 4).
    assert_eq!(
        refused(&service.handle(5, &report).0),
        Some(Refusal::NotExpected)
    );
    // A fault before the report means mode 1 faulted: the boot fails.
    let mut early = service.clone();
    assert_eq!(
        early.handle(FAULT_PORTAL_ID, &fault).1,
        Next::Failed(InitError::UnexpectedFault { bits: 1 })
    );
    assert_eq!(
        service.handle(4, &report).1,
        Next::StartMisbehave { mode: 2 }
    );
    // A fault must come through the watcher's portal.
    assert_eq!(
        refused(&service.handle(5, &fault).0),
        Some(Refusal::NotExpected)
    );
    assert_eq!(
        service.handle(FAULT_PORTAL_ID, &fault).1,
        Next::StartMisbehave { mode: 3 }
    );
    assert_eq!(
        service.handle(FAULT_PORTAL_ID, &fault).1,
        Next::StartMisbehave { mode: 4 }
    );
    assert_eq!(
        service.handle(FAULT_PORTAL_ID, &fault).1,
        Next::StartMisbehave { mode: 5 }
    );
    let lifecycle = |passed, failed| {
        Request::Report {
            mode: 7,
            first: passed,
            second: failed,
        }
        .encode()
    };
    let passed = lifecycle(VCPU_LIFECYCLE_ALL_STEPS, 0);
    // Mode 7's report before mode 7 runs is not taken.
    assert_eq!(
        refused(&service.handle(10, &passed).0),
        Some(Refusal::NotExpected)
    );
    assert_eq!(
        service.handle(FAULT_PORTAL_ID, &fault).1,
        Next::StartMisbehave { mode: 7 }
    );
    assert_eq!(service.faults(), 4);
    // Mode 7 reports; it must not fault.
    let mut faulted = service.clone();
    assert_eq!(
        faulted.handle(FAULT_PORTAL_ID, &fault).1,
        Next::Failed(InitError::UnexpectedFault { bits: 1 })
    );
    // Only from mode 7's portal (child 10), and only as mode 7.
    assert_eq!(
        refused(&service.handle(4, &passed).0),
        Some(Refusal::NotExpected)
    );
    let as_mode_1 = Request::Report {
        mode: 1,
        first: 3,
        second: 5,
    }
    .encode();
    assert_eq!(
        refused(&service.handle(10, &as_mode_1).0),
        Some(Refusal::NotExpected)
    );
    let mut failing = service.clone();
    assert_eq!(
        failing.handle(10, &lifecycle(0b1, 0b10)).1,
        Next::Failed(InitError::MisbehaveLifecycle {
            passed: 0b1,
            failed: 0b10
        })
    );
    assert_eq!(service.handle(10, &passed).1, Next::Finished);
    // After the end, nothing more is expected.
    assert_eq!(
        service.handle(FAULT_PORTAL_ID, &fault).1,
        Next::Failed(InitError::UnexpectedFault { bits: 1 })
    );
}

#[test]
fn the_report_must_carry_the_abis_errors() {
    let raw = |s: Status| s.as_raw();
    assert!(report_is_expected(
        raw(Status::EmptySlot),
        raw(Status::WrongType)
    ));
    assert!(report_is_expected(
        raw(Status::InvalidSelector),
        raw(Status::WrongType)
    ));
    assert!(!report_is_expected(
        raw(Status::Success),
        raw(Status::WrongType)
    ));
    assert!(!report_is_expected(
        raw(Status::EmptySlot),
        raw(Status::MissingRight)
    ));
    assert!(!report_is_expected(999, raw(Status::WrongType)));
}

#[test]
fn own_memory_access_is_limited_to_inits_own_mappings() {
    let mut mappings = OwnMappings::default();
    let own = Selector(0);
    mappings.record_map(own, 0x1000, 0x2000, MemoryRights::READ);
    mappings.record_map(
        Selector(130),
        0x8000,
        0x1000,
        MemoryRights::READ | MemoryRights::WRITE,
    );
    assert!(mappings.covering(0x1000, 0x2000, false).is_ok());
    assert!(mappings.covering(0x1800, 0x100, false).is_ok());
    assert!(
        mappings.covering(0x1800, 0x2000, false).is_err(),
        "runs past the end"
    );
    assert!(mappings.covering(0x1000, 0x10, true).is_err(), "read-only");
    assert!(
        mappings.covering(0x8000, 0x10, false).is_err(),
        "another domain's mapping"
    );
    assert!(mappings.covering(u64::MAX, 2, false).is_err(), "wraps");
    mappings.record_unmap(own, 0x1000, 0x2000);
    assert!(mappings.covering(0x1000, 0x10, false).is_err());
}

#[test]
fn the_lifecycle_report_passes_only_with_every_step_passed() {
    assert_eq!(
        lifecycle_verdict(VCPU_LIFECYCLE_ALL_STEPS, 0),
        LifecycleVerdict::Passed
    );
    assert_eq!(
        lifecycle_verdict(0, VCPU_LIFECYCLE_NO_VIRTUALIZATION),
        LifecycleVerdict::NotRun
    );
    for (passed, failed) in [
        (0, 0),
        (VCPU_LIFECYCLE_ALL_STEPS >> 1, 0),
        (VCPU_LIFECYCLE_ALL_STEPS, 1),
        (VCPU_LIFECYCLE_ALL_STEPS << 1 | 1, 0),
        (1, VCPU_LIFECYCLE_NO_VIRTUALIZATION),
        (0, VCPU_LIFECYCLE_NO_VIRTUALIZATION | 1),
        (u64::MAX, 0),
    ] {
        assert_eq!(
            lifecycle_verdict(passed, failed),
            LifecycleVerdict::Failed,
            "{passed:#x} {failed:#x}"
        );
    }
    assert_eq!(VCPU_LIFECYCLE_ALL_STEPS, 0b11_1111);
}

#[test]
fn step_lists_name_each_step_by_number() {
    assert_eq!(StepList(0).to_string(), "none");
    assert_eq!(StepList(0b10101).to_string(), "1, 3, 5");
    assert_eq!(StepList(1 << 63).to_string(), "64");
}
