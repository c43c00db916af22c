//! Init's parent portal: what it expects from its children and in which order. A pure state
//! machine (requests in, replies and next steps out) so every path is tested on the host.
//!
//! Without the `init.misbehave` flag: `READY` from the iommu-, pci- and vmm-server (any order)
//! finishes. With it, once the servers are ready init starts misbehave mode 1, waits for its
//! `REPORT`, then starts modes 2, 3, 4 and 5 one at a time, each after the previous fault
//! arrived (the fault notification has one bit, so faults are counted one at a time), then mode
//! 7 (the vCPU capability lifecycle) and waits for its `REPORT`. A fault outside that sequence,
//! a mode 1 report with other errors than the ABI prescribes, or a mode 7 report with a step
//! not passed ([`lifecycle_verdict`]) fails the boot.
//! Requests from the wrong child, repeated or malformed requests are refused and logged.

use sluice_abi::syscall::Status;
use sluice_rt::message::Message;
use sluice_rt::protocol::{self, Refusal, Request};

use crate::error::{InitError, StepList};
use crate::programs::number;

/// The portal id of init's fault watcher (no child has this number).
pub const FAULT_PORTAL_ID: u64 = 0xfa17;

/// The servers, by child number.
pub const SERVERS: [(u64, &str); 3] = [
    (number::IOMMU_SERVER, "iommu-server"),
    (number::PCI_SERVER, "pci-server"),
    (number::VMM_SERVER, "vmm-server"),
];

/// The last misbehave mode that faults on purpose.
pub const LAST_MISBEHAVE_MODE: u64 = 5;
/// The misbehave mode that checks the vCPU capability lifecycle, started after the faulting
/// modes; it reports instead of faulting.
pub const VCPU_LIFECYCLE_MODE: u64 = 7;
/// Mode 7's steps (`userland/misbehave/src/vcpu_lifecycle.rs`): its report's first word has bit
/// `n - 1` set for each step `n` that passed, its second word for each that failed.
pub const VCPU_LIFECYCLE_STEPS: u32 = 6;
/// Every step's bit: the first word of a report in which all passed.
pub const VCPU_LIFECYCLE_ALL_STEPS: u64 = (1 << VCPU_LIFECYCLE_STEPS) - 1;
/// Mode 7's second word when nothing could run: `create_vm` was refused `NotImplemented` (the
/// kernel has no virtualization backend).
pub const VCPU_LIFECYCLE_NO_VIRTUALIZATION: u64 = 1 << 63;

/// What init does after answering a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep serving.
    Continue,
    /// Start misbehave in this mode, then keep serving.
    StartMisbehave { mode: u64 },
    /// Everything expected arrived: log the summary and power off with success.
    Finished,
    /// Give up with this error.
    Failed(InitError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Servers,
    /// Everything else is done; waiting for the guests to end.
    Guests,
    /// Waiting for misbehave `mode`'s report.
    AwaitReport {
        mode: u64,
    },
    AwaitFault {
        mode: u64,
    },
    Done,
}

/// Most servers init waits for (iommu, pci and one vmm-server per guest).
pub const MAX_SERVERS: usize = 10;

/// The service state.
#[derive(Clone, Debug)]
pub struct Service {
    misbehave: bool,
    /// (child number, name, ready) of every server init started.
    servers: heapless::Vec<(u64, &'static str, bool), MAX_SERVERS>,
    /// (child number, guest index, done, status) of every vmm-server running a guest.
    guests: heapless::Vec<(u64, u64, bool, u64), MAX_SERVERS>,
    phase: Phase,
    faults: u64,
}

/// True when the report of mode 1 shows the errors the ABI prescribes: an empty (or, in a
/// smaller table, out-of-range) selector, and a capability of the wrong type.
pub fn report_is_expected(empty_slot: u64, wrong_type: u64) -> bool {
    let empty_ok = [Status::EmptySlot, Status::InvalidSelector]
        .iter()
        .any(|s| s.as_raw() == empty_slot);
    empty_ok && wrong_type == Status::WrongType.as_raw()
}

/// What misbehave mode 7's report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleVerdict {
    /// Every step passed and none failed.
    Passed,
    /// Nothing ran: the kernel has no virtualization backend (accepted: there is nothing to
    /// check on such a machine; the QEMU boot test requires [`LifecycleVerdict::Passed`]).
    NotRun,
    /// Anything else: a step failed, or a report that passed fewer steps than there are.
    Failed,
}

/// Judges mode 7's report words (`passed`, `failed`): only exactly every step passed and none
/// failed, or exactly [`VCPU_LIFECYCLE_NO_VIRTUALIZATION`] with nothing passed, is accepted.
pub fn lifecycle_verdict(passed: u64, failed: u64) -> LifecycleVerdict {
    match (passed, failed) {
        (VCPU_LIFECYCLE_ALL_STEPS, 0) => LifecycleVerdict::Passed,
        (0, VCPU_LIFECYCLE_NO_VIRTUALIZATION) => LifecycleVerdict::NotRun,
        _ => LifecycleVerdict::Failed,
    }
}

impl Service {
    /// A service that expects the three servers (and the misbehave runs when `misbehave`).
    pub fn new(misbehave: bool) -> Service {
        let servers = SERVERS
            .iter()
            .map(|(number, name)| (*number, *name, false))
            .collect();
        Service::with(misbehave, servers, heapless::Vec::new())
    }

    /// A service that expects `servers` (child number, name) to say ready and the vmm-servers
    /// in `guests` (child number, guest index) to report their guest's end.
    pub fn with(
        misbehave: bool,
        servers: heapless::Vec<(u64, &'static str, bool), MAX_SERVERS>,
        guests: heapless::Vec<(u64, u64, bool, u64), MAX_SERVERS>,
    ) -> Service {
        Service {
            misbehave,
            servers,
            guests,
            phase: Phase::Servers,
            faults: 0,
        }
    }

    /// Guests that ended, and how many of them failed.
    pub fn guests_done(&self) -> (usize, usize) {
        let done = self.guests.iter().filter(|g| g.2).count();
        let failed = self.guests.iter().filter(|g| g.2 && g.3 != 0).count();
        (done, failed)
    }

    /// Faults counted so far.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Servers that said ready.
    pub fn servers_ready(&self) -> usize {
        self.servers.iter().filter(|s| s.2).count()
    }

    /// What comes after the last expected event of a phase: the guests, or the end.
    fn after_servers_and_tests(&mut self) -> Next {
        if self.guests.iter().all(|g| g.2) {
            self.phase = Phase::Done;
            Next::Finished
        } else {
            self.phase = Phase::Guests;
            Next::Continue
        }
    }

    fn guest_done(
        &mut self,
        portal_id: u64,
        guest: u64,
        status: u64,
        exits: u64,
    ) -> (Message, Next) {
        let Some(entry) = self
            .guests
            .iter_mut()
            .find(|g| g.0 == portal_id && g.1 == guest && !g.2)
        else {
            sluice_rt::log!("init: portal {portal_id}: guest {guest} end not expected");
            return (Refusal::NotExpected.reply(), Next::Continue);
        };
        entry.2 = true;
        entry.3 = status;
        let verdict = if status == 0 { "passed" } else { "FAILED" };
        sluice_rt::log!("init: guest {guest} {verdict} (status {status:#x}, {exits} exits)");
        let all_done = self.guests.iter().all(|g| g.2);
        if all_done && self.phase == Phase::Guests {
            self.phase = Phase::Done;
            return (protocol::success(&[]), Next::Finished);
        }
        (protocol::success(&[]), Next::Continue)
    }

    /// Answers one request that arrived through portal `portal_id`.
    pub fn handle(&mut self, portal_id: u64, message: &Message) -> (Message, Next) {
        let request = match Request::decode(message) {
            Ok(request) => request,
            Err(error) => {
                sluice_rt::log!("init: portal {portal_id}: refused: {error}");
                return (error.refusal().reply(), Next::Continue);
            }
        };
        match (request, self.phase) {
            (Request::Ready, _) => self.ready(portal_id),
            (
                Request::GuestDone {
                    guest,
                    status,
                    exits,
                },
                _,
            ) => self.guest_done(portal_id, guest, status, exits),
            (
                Request::Report {
                    mode: 1,
                    first,
                    second,
                },
                Phase::AwaitReport { mode: 1 },
            ) if portal_id == number::MISBEHAVE_BASE + 1 => self.report(first, second),
            (
                Request::Report {
                    mode: VCPU_LIFECYCLE_MODE,
                    first,
                    second,
                },
                Phase::AwaitReport {
                    mode: VCPU_LIFECYCLE_MODE,
                },
            ) if portal_id == number::MISBEHAVE_BASE + VCPU_LIFECYCLE_MODE => {
                self.lifecycle_report(first, second)
            }
            (Request::Fault { .. }, Phase::AwaitFault { mode }) if portal_id == FAULT_PORTAL_ID => {
                self.faults += 1;
                sluice_rt::log!(
                    "init: fault reported for misbehave mode {mode} (fault {})",
                    self.faults
                );
                let next = if mode >= LAST_MISBEHAVE_MODE {
                    self.phase = Phase::AwaitReport {
                        mode: VCPU_LIFECYCLE_MODE,
                    };
                    Next::StartMisbehave {
                        mode: VCPU_LIFECYCLE_MODE,
                    }
                } else {
                    self.phase = Phase::AwaitFault { mode: mode + 1 };
                    Next::StartMisbehave { mode: mode + 1 }
                };
                (protocol::success(&[]), next)
            }
            (Request::Fault { bits }, _) if portal_id == FAULT_PORTAL_ID => (
                protocol::success(&[]),
                Next::Failed(InitError::UnexpectedFault { bits }),
            ),
            (other, _) => {
                sluice_rt::log!("init: portal {portal_id}: {other:?} not expected now");
                (Refusal::NotExpected.reply(), Next::Continue)
            }
        }
    }

    fn ready(&mut self, portal_id: u64) -> (Message, Next) {
        let phase = self.phase;
        let Some(entry) = self.servers.iter_mut().find(|s| s.0 == portal_id) else {
            sluice_rt::log!("init: portal {portal_id}: ready not expected");
            return (Refusal::NotExpected.reply(), Next::Continue);
        };
        if entry.2 || phase != Phase::Servers {
            sluice_rt::log!("init: portal {portal_id}: ready twice");
            return (Refusal::NotExpected.reply(), Next::Continue);
        }
        entry.2 = true;
        sluice_rt::log!("init: {} ready", entry.1);
        if self.servers_ready() < self.servers.len() {
            return (protocol::success(&[]), Next::Continue);
        }
        let next = if self.misbehave {
            self.phase = Phase::AwaitReport { mode: 1 };
            Next::StartMisbehave { mode: 1 }
        } else {
            self.after_servers_and_tests()
        };
        (protocol::success(&[]), next)
    }

    fn report(&mut self, empty_slot: u64, wrong_type: u64) -> (Message, Next) {
        let name = |raw| Status::from_raw(raw).map_or("not a status", Status::description);
        sluice_rt::log!(
            "init: misbehave mode 1 reported: empty selector -> {}, wrong type -> {}",
            name(empty_slot),
            name(wrong_type)
        );
        if !report_is_expected(empty_slot, wrong_type) {
            return (
                protocol::success(&[]),
                Next::Failed(InitError::MisbehaveReport {
                    empty_slot,
                    wrong_type,
                }),
            );
        }
        self.phase = Phase::AwaitFault { mode: 2 };
        (protocol::success(&[]), Next::StartMisbehave { mode: 2 })
    }

    fn lifecycle_report(&mut self, passed: u64, failed: u64) -> (Message, Next) {
        let verdict = lifecycle_verdict(passed, failed);
        match verdict {
            LifecycleVerdict::Passed => sluice_rt::log!(
                "init: misbehave mode 7 reported: vcpu capability lifecycle: all {VCPU_LIFECYCLE_STEPS} steps passed"
            ),
            LifecycleVerdict::NotRun => sluice_rt::log!(
                "init: misbehave mode 7 reported: vcpu capability lifecycle not run: the kernel has no virtualization backend"
            ),
            LifecycleVerdict::Failed => sluice_rt::log!(
                "init: misbehave mode 7 reported: vcpu capability lifecycle: steps passed: {}; failed: {}",
                StepList(passed),
                StepList(failed)
            ),
        }
        if verdict == LifecycleVerdict::Failed {
            return (
                protocol::success(&[]),
                Next::Failed(InitError::MisbehaveLifecycle { passed, failed }),
            );
        }
        (protocol::success(&[]), self.after_servers_and_tests())
    }
}
