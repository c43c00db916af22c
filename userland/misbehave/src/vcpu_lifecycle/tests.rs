//! Mode 7 against a behavioural fake of the kernel's capability and vCPU calls (through
//! `sluice_rt::host`): a correct kernel passes every step, and each kind of stale or wrong
//! answer a broken lookup cache could give fails the step that looks for it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sluice_rt::abi::ipc::{MessageTag, Utcb};
use sluice_rt::abi::syscall::{Status, Syscall, VcpuRights, VmRights};
use sluice_rt::abi::vcpu::{
    ExitMessage, ExitReason, GuestPhys, MemoryAccess, Mtd, Reply, VcpuState,
};
use sluice_rt::host;
use sluice_rt::utcb::MessageBuffer;

use super::*;

/// A wrong behaviour the fake can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// A run of the selector the thread ran last, after it lost its capability, runs the
    /// object it named then (a cached lookup that outlived the change).
    StaleLookup,
    /// A run of the selector the thread ran last, now naming another object, runs the one it
    /// named then.
    StaleObject,
    /// A refused run makes the thread's next run fail too.
    RefusalPoisons,
    /// Revoking the VM's capability stops its vCPUs (runs are refused `Aborted`).
    RevokeStopsVcpus,
    /// A successful run leaves the UTCB as it was (no exit written).
    NoExitWritten,
    /// A run ignores the reply in the UTCB.
    ReplyIgnored,
    /// A preemption exit before every real exit.
    PreemptFirst,
    /// Exit-state choices are accepted but ignored.
    ExitStateIgnored,
    /// A choice for one reason applies to every reason.
    ExitStateLeaks,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Vm,
    Vcpu,
}

#[derive(Clone, Copy, Debug)]
struct Capability {
    kind: Kind,
    object: usize,
    rights: u64,
}

#[derive(Clone, Copy, Debug)]
struct Vcpu {
    rip: u64,
    cs_base: u64,
    stopped: bool,
    vm: usize,
    /// Groups chosen per exit reason code on top of the fake's base (RIP).
    extra: [Mtd; 14],
}

#[derive(Default)]
struct Fake {
    slots: HashMap<u64, Capability>,
    vcpus: Vec<Vcpu>,
    vms: usize,
    bug: Option<Bug>,
    /// The selector and object of the last successful run.
    last_run: Option<(u64, usize)>,
    poisoned: bool,
    preempted: bool,
    runs: usize,
}

impl Fake {
    fn lookup(&self, selector: u64, kind: Kind, right: u64) -> Result<Capability, Status> {
        let capability = *self.slots.get(&selector).ok_or(Status::EmptySlot)?;
        if capability.kind != kind {
            return Err(Status::WrongType);
        }
        if capability.rights & right != right {
            return Err(Status::MissingRight);
        }
        Ok(capability)
    }

    fn free(&self, selector: u64) -> Result<(), Status> {
        match self.slots.contains_key(&selector) {
            true => Err(Status::SlotOccupied),
            false => Ok(()),
        }
    }

    fn run(&mut self, selector: u64, utcb: &mut Utcb) -> Result<u64, Status> {
        self.runs += 1;
        if std::mem::take(&mut self.poisoned) {
            return Err(Status::Aborted);
        }
        let looked_up = self.lookup(selector, Kind::Vcpu, VcpuRights::RUN.bits());
        let object = match (looked_up, self.bug, self.last_run) {
            (Ok(_), Some(Bug::StaleObject), Some((last, object))) if last == selector => object,
            (Ok(capability), _, _) => capability.object,
            (Err(_), Some(Bug::StaleLookup), Some((last, object))) if last == selector => object,
            (Err(status), bug, _) => {
                self.poisoned = bug == Some(Bug::RefusalPoisons);
                return Err(status);
            }
        };
        let vcpu = &mut self.vcpus[object];
        if vcpu.stopped {
            return Err(Status::Aborted);
        }
        let words = utcb.message_words().ok_or(Status::Overflow)?;
        let reply = Reply::from_words(words).map_err(|_| Status::InvalidArgument)?;
        if self.bug != Some(Bug::ReplyIgnored) {
            if reply.state.mtd.contains(Mtd::RIP) {
                vcpu.rip = reply.state.rip;
            }
            if reply.state.mtd.contains(Mtd::SEGMENT_CS_SS) {
                vcpu.cs_base = reply.state.cs.base;
            }
        }
        self.last_run = Some((selector, object));
        if self.bug == Some(Bug::NoExitWritten) {
            return Ok(0);
        }
        let reason = if self.bug == Some(Bug::PreemptFirst) && !self.preempted {
            ExitReason::Preempted
        } else {
            ExitReason::MemoryFault {
                gpa: GuestPhys(vcpu.cs_base + vcpu.rip),
                access: MemoryAccess::Execute,
            }
        };
        self.preempted = reason == ExitReason::Preempted;
        let extra = vcpu
            .extra
            .get(reason.code() as usize)
            .copied()
            .unwrap_or_default();
        let exit = ExitMessage {
            reason,
            instruction_length: None,
            hardware_exit_code: 0x400,
            state: VcpuState {
                mtd: Mtd::RIP.union(extra),
                rip: vcpu.rip,
                ..VcpuState::default()
            },
        };
        let count = exit
            .to_words(&mut utcb.untyped)
            .map_err(|_| Status::Overflow)?;
        utcb.tag = MessageTag {
            label: 0,
            untyped_words: count as u16,
            transfer_items: 0,
        };
        Ok(0)
    }
}

/// Installs a fake kernel with `bug` as the handler of every call mode 7 makes.
fn install(bug: Option<Bug>) -> Rc<RefCell<Fake>> {
    host::reset();
    let fake = Rc::new(RefCell::new(Fake {
        bug,
        ..Fake::default()
    }));
    let handle = fake.clone();
    host::set_handler(Syscall::CreateVm, move |arguments, _| {
        let mut fake = handle.borrow_mut();
        fake.free(arguments[0])?;
        let object = fake.vms;
        fake.vms += 1;
        let rights = VmRights::all().bits();
        let capability = Capability {
            kind: Kind::Vm,
            object,
            rights,
        };
        fake.slots.insert(arguments[0], capability);
        Ok(0)
    });
    let handle = fake.clone();
    host::set_handler(Syscall::CreateVcpu, move |arguments, _| {
        let mut fake = handle.borrow_mut();
        let vm = fake.lookup(arguments[0], Kind::Vm, VmRights::CREATE_VCPU.bits())?;
        fake.free(arguments[1])?;
        let object = fake.vcpus.len();
        fake.vcpus.push(Vcpu {
            rip: RESET_RIP,
            cs_base: RESET_VECTOR - RESET_RIP,
            stopped: false,
            vm: vm.object,
            extra: [Mtd::empty(); 14],
        });
        let rights = VcpuRights::all().bits();
        let capability = Capability {
            kind: Kind::Vcpu,
            object,
            rights,
        };
        fake.slots.insert(arguments[1], capability);
        Ok(0)
    });
    let handle = fake.clone();
    host::set_handler(Syscall::Derive, move |arguments, _| {
        let mut fake = handle.borrow_mut();
        let source = *fake.slots.get(&arguments[0]).ok_or(Status::EmptySlot)?;
        if arguments[2] & !source.rights != 0 {
            return Err(Status::InvalidRights);
        }
        fake.free(arguments[1])?;
        let copy = Capability {
            rights: arguments[2],
            ..source
        };
        fake.slots.insert(arguments[1], copy);
        Ok(0)
    });
    let handle = fake.clone();
    host::set_handler(Syscall::Delete, move |arguments, _| {
        let mut fake = handle.borrow_mut();
        fake.slots.remove(&arguments[0]).ok_or(Status::EmptySlot)?;
        Ok(0)
    });
    let handle = fake.clone();
    host::set_handler(Syscall::Revoke, move |arguments, _| {
        let mut fake = handle.borrow_mut();
        let capability = *fake.slots.get(&arguments[0]).ok_or(Status::EmptySlot)?;
        if arguments[1] != 0 {
            fake.slots.remove(&arguments[0]);
        }
        if fake.bug == Some(Bug::RevokeStopsVcpus) && capability.kind == Kind::Vm {
            for vcpu in fake.vcpus.iter_mut().filter(|v| v.vm == capability.object) {
                vcpu.stopped = true;
            }
        }
        Ok(0)
    });
    let handle = fake.clone();
    host::set_handler(Syscall::VcpuControl, move |arguments, utcb| {
        let mut fake = handle.borrow_mut();
        if arguments[1] != VCPU_SET_EXIT_STATE {
            return fake.run(arguments[0], utcb);
        }
        let capability = fake.lookup(arguments[0], Kind::Vcpu, VcpuRights::RUN.bits())?;
        let groups = Mtd::from_bits(arguments[3]).ok_or(Status::InvalidArgument)?;
        if arguments[2] > u64::from(MAX_EXIT_REASON_CODE) {
            return Err(Status::InvalidArgument);
        }
        let bug = fake.bug;
        let vcpu = &mut fake.vcpus[capability.object];
        match bug {
            Some(Bug::ExitStateIgnored) => {}
            _ if arguments[2] == ALL_EXIT_REASONS || bug == Some(Bug::ExitStateLeaks) => {
                vcpu.extra = [groups; 14];
            }
            _ => vcpu.extra[arguments[2] as usize] = groups,
        }
        Ok(0)
    });
    fake
}

fn steps_with(bug: Option<Bug>) -> (Summary, String) {
    let _fake = install(bug);
    let buffer = MessageBuffer::current().expect("the host fake has a UTCB");
    let summary = run_steps(&mut Runner::new(buffer));
    (summary, host::take_output())
}

fn bits(steps: &[u32]) -> u64 {
    steps.iter().map(|step| 1u64 << (step - 1)).sum()
}

#[test]
fn a_correct_kernel_passes_every_step() {
    let (summary, log) = steps_with(None);
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1, 2, 3, 4, 5, 6]),
            failed: 0
        },
        "{log}"
    );
    for step in 1..=STEPS {
        assert!(
            log.contains(&format!("misbehave: vcpu step {step} passed: ")),
            "{log}"
        );
    }
    assert!(!log.contains("FAILED"), "{log}");
}

#[test]
fn every_change_sits_right_between_two_runs_of_the_selector() {
    let _fake = install(None);
    let buffer = MessageBuffer::current().expect("the host fake has a UTCB");
    run_steps(&mut Runner::new(buffer));
    let calls: Vec<(Syscall, u64)> = host::calls()
        .into_iter()
        .filter(|call| call.call != Syscall::DebugWrite)
        .map(|call| (call.call, call.arguments[0]))
        .collect();
    let run = |selector: Selector| (Syscall::VcpuControl, u64::from(selector.0));
    for change in [
        (Syscall::Derive, u64::from(VCPU.0)),
        (Syscall::Delete, u64::from(VCPU.0)),
        (Syscall::Revoke, u64::from(VM.0)),
    ] {
        let at = calls.iter().position(|call| *call == change).unwrap();
        assert_eq!(calls[at - 1], run(VCPU), "a run right before {change:?}");
        assert_eq!(
            calls[at + 1].0,
            Syscall::VcpuControl,
            "a run right after {change:?}"
        );
    }
    // Step 1: two runs in a row with nothing between them.
    let first = calls.iter().position(|call| *call == run(VCPU)).unwrap();
    assert_eq!(calls[first + 1], run(VCPU));
}

#[test]
fn a_stale_lookup_after_delete_fails_step_3() {
    let (summary, log) = steps_with(Some(Bug::StaleLookup));
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1, 2]),
            failed: bits(&[3])
        },
        "{log}"
    );
    assert!(log.contains("misbehave: vcpu step 3 FAILED: first run after delete: memory fault at 0xa000 (Execute), rip 0xa000, expected refused EmptySlot"), "{log}");
}

#[test]
fn the_old_vcpu_run_through_its_reused_selector_fails_step_4() {
    let (summary, log) = steps_with(Some(Bug::StaleObject));
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1, 2, 3]),
            failed: bits(&[4])
        },
        "{log}"
    );
    assert!(log.contains("misbehave: vcpu step 4 FAILED: first run of the new vCPU: memory fault at 0xa000 (Execute), rip 0xa000, expected memory fault at 0xfffffff0 (Execute), rip 0xfff0"), "{log}");
}

#[test]
fn a_refusal_that_poisons_the_next_run_fails_step_2() {
    let (summary, log) = steps_with(Some(Bug::RefusalPoisons));
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1]),
            failed: bits(&[2])
        },
        "{log}"
    );
    assert!(
        log.contains("misbehave: vcpu step 2 FAILED: run of the original after: refused Aborted"),
        "{log}"
    );
}

#[test]
fn vcpus_stopped_by_the_vms_revoke_fail_step_5() {
    let (summary, log) = steps_with(Some(Bug::RevokeStopsVcpus));
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1, 2, 3, 4]),
            failed: bits(&[5])
        },
        "{log}"
    );
    assert!(
        log.contains("misbehave: vcpu step 5 FAILED: run after the VM's revoke: refused Aborted"),
        "{log}"
    );
}

#[test]
fn ignored_or_leaking_exit_state_choices_fail_step_6() {
    let (summary, log) = steps_with(Some(Bug::ExitStateIgnored));
    assert_eq!(
        summary,
        Summary {
            passed: bits(&[1, 2, 3, 4, 5]),
            failed: bits(&[6])
        },
        "{log}"
    );
    assert!(log.contains("misbehave: vcpu step 6 FAILED: run after choosing every group for memory faults: the exit carried state groups 0x10"), "{log}");
    let (summary, log) = steps_with(Some(Bug::ExitStateLeaks));
    assert_eq!(summary.failed, bits(&[6]), "{log}");
    assert!(
        log.contains("misbehave: vcpu step 6 FAILED: run after the CPUID choice: the exit carried state groups"),
        "{log}"
    );
}

#[test]
fn a_run_that_writes_no_exit_or_ignores_the_reply_fails_step_1() {
    for bug in [Bug::NoExitWritten, Bug::ReplyIgnored] {
        let (summary, log) = steps_with(Some(bug));
        assert_eq!(
            summary,
            Summary {
                passed: 0,
                failed: bits(&[1])
            },
            "{bug:?}: {log}"
        );
        assert!(log.contains("misbehave: vcpu step 1 FAILED: "), "{log}");
    }
}

#[test]
fn preemption_exits_are_answered_and_the_run_repeated() {
    let (summary, log) = steps_with(Some(Bug::PreemptFirst));
    assert_eq!(summary.passed, bits(&[1, 2, 3, 4, 5, 6]), "{log}");
}

#[test]
fn no_virtualization_backend_is_reported_as_not_run() {
    host::reset();
    host::set_handler(Syscall::CreateVm, |_, _| Err(Status::NotImplemented));
    let buffer = MessageBuffer::current().expect("the host fake has a UTCB");
    let summary = run_steps(&mut Runner::new(buffer));
    assert_eq!(
        summary,
        Summary {
            passed: 0,
            failed: NO_VIRTUALIZATION
        }
    );
    let log = host::take_output();
    assert!(log.contains("misbehave: vcpu steps not run: create_vm: NotImplemented: the kernel has no virtualization backend"), "{log}");
}

#[test]
fn a_refused_setup_call_names_the_call_and_both_statuses() {
    host::reset();
    host::set_handler(Syscall::CreateVm, |_, _| Err(Status::QuotaExceeded));
    let buffer = MessageBuffer::current().expect("the host fake has a UTCB");
    let summary = run_steps(&mut Runner::new(buffer));
    assert_eq!(summary.failed, bits(&[1]));
    let log = host::take_output();
    assert!(
        log.contains("misbehave: vcpu step 1 FAILED: create_vm: QuotaExceeded, expected Success"),
        "{log}"
    );
}

#[test]
fn expectations_match_exactly() {
    let fault = |gpa: u64, access, rip| Outcome::Exit {
        reason: ExitReason::MemoryFault {
            gpa: GuestPhys(gpa),
            access,
        },
        rip,
    };
    let execute = MemoryAccess::Execute;
    assert!(Expected::RESET.matches(&fault(RESET_VECTOR, execute, Some(RESET_RIP))));
    assert!(!Expected::RESET.matches(&fault(RESET_VECTOR, MemoryAccess::Read, Some(RESET_RIP))));
    assert!(!Expected::RESET.matches(&fault(RESET_VECTOR, execute, None)));
    assert!(!Expected::RESET.matches(&fault(MOVED_TO, execute, Some(MOVED_TO))));
    assert!(!Expected::MOVED.matches(&Outcome::Refused(Status::EmptySlot)));
    let refused = Expected::Refused(Status::EmptySlot);
    assert!(refused.matches(&Outcome::Refused(Status::EmptySlot)));
    assert!(!refused.matches(&Outcome::Refused(Status::InvalidSelector)));
    assert!(!refused.matches(&fault(RESET_VECTOR, execute, Some(RESET_RIP))));
}
