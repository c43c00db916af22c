//! The parent portal's state machine on its own: refusals of unexpected, repeated and
//! malformed requests, and the order the misbehave runs are driven in.

use sluice_abi::syscall::Status;
use sluice_rt::message::Message;
use sluice_rt::protocol::{check_reply, CallError, Refusal, Request};

use crate::error::InitError;
use crate::kernel::OwnMappings;
use crate::service::{report_is_expected, Next, Service, FAULT_PORTAL_ID};
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
    assert_eq!(service.handle(FAULT_PORTAL_ID, &fault).1, Next::Finished);
    assert_eq!(service.faults(), 4);
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
