//! Misbehave mode 7, the vCPU capability lifecycle: runs a vCPU, changes the capability
//! behind its selector, and runs again after every change.
//!
//! Why: the kernel keeps, per CPU, the capability lookup and UTCB translation of the last
//! well-formed `vcpu_control(run)` and reuses them when the same thread runs the same selector
//! while the kernel lock's acquisition count shows nobody took the lock in between
//! (`LastRun` in kernel/src/execution/vcpu_run.rs). Every capability change takes the lock, so
//! it must end that reuse. Each change below comes right after a successful run of the
//! selector, with no other system call in between (the lines are logged afterwards), so a
//! change that left the cached lookup standing would be served it, and show here.
//!
//! The two vCPUs are told apart by their state: no guest memory is mapped, so every run ends in
//! a memory fault on the first instruction fetch (`MemoryFault`, access `Execute`). A new vCPU
//! fetches at the reset vector (guest-physical 0xfffffff0: CS base 0xffff0000 + RIP 0xfff0,
//! Intel SDM Vol. 3A 10.1.4 "First Instruction Executed", the state `create_vcpu` gives both
//! backends); the first one is moved by a reply to 0000:a000 and from then on faults at 0xa000.
//! On QEMU (SVM with nested paging) the fault is exit code 0x400 (NPF) with EXITINFO1 bit 4
//! (instruction fetch) set, which the kernel reports as `MemoryFault` / `Execute`; with EPT it
//! is an EPT violation with its instruction-fetch qualification bit.
//!
//! | step | what | must hold |
//! |---|---|---|
//! | 1 | `create_vm`, `create_vcpu` at selector [`VCPU`]; run it twice in a row (the second run is the one the cache serves; its reply moves the vCPU) | fault at the reset vector, then at 0xa000 |
//! | 2 | run; derive [`VCPU`] into [`NO_RUN`] with every right but `RUN`; run the copy; run [`VCPU`] | 0xa000; `MissingRight`; 0xa000 (a refused lookup does not poison the next) |
//! | 3 | run; `delete` [`VCPU`]; run it twice; run the copy | 0xa000; `EmptySlot` twice; `MissingRight` (the old vCPU lives on through the copy, so a stale lookup would run it) |
//! | 4 | `create_vcpu` at [`VCPU`] again; run it twice | the reset vector both times: the new vCPU, not the old one's 0xa000 |
//! | 5 | run; `revoke` the VM's capability including itself; run; `create_vcpu` from [`VM`]; delete both vCPU capabilities | reset vector; the vCPU still runs (reset vector: a vCPU keeps its VM alive); `EmptySlot`; both deletes succeed |
//! | 6 | a new VM and vCPU; run; choose the exit state per reason (`vcpu_control(vcpu, VCPU_SET_EXIT_STATE, ..)`) and run after each choice; two malformed choices | the base groups; every group for memory faults; a CPUID choice leaves memory faults at the base; descriptor tables for every reason add exactly that group; an unknown reason and an unknown group bit are refused `InvalidArgument` and change nothing |
//!
//! A failed step ends the sequence (the later ones depend on it). The result goes to init as
//! `REPORT` (mode 7): the first word has bit `n - 1` set for each step `n` that passed, the
//! second for each that failed; [`NO_VIRTUALIZATION`] alone in the second word says the kernel
//! has no virtualization backend (`create_vm` refused `NotImplemented`), so nothing could run.
//! Init (`userland/init/src/service.rs`) reads the same encoding.

use core::fmt;

use sluice_rt::abi::syscall::{Selector, Status, Syscall, VcpuRights};
use sluice_rt::abi::vcpu::{
    DecodeError, ExitMessage, ExitReason, GuestPhys, MemoryAccess, Mtd, Reply, Segment,
    SegmentAttributes, VcpuState, ALL_EXIT_REASONS, MAX_EXIT_REASON_CODE, VCPU_SET_EXIT_STATE,
};
use sluice_rt::log;
use sluice_rt::sys;
use sluice_rt::utcb::MessageBuffer;

/// This mode's number (argument word 0, and the `REPORT`'s mode).
pub const MODE: u64 = 7;
/// The number of steps; their bits in the report are `(1 << STEPS) - 1`.
pub const STEPS: u32 = 6;
/// In the report's second word: nothing ran, the kernel has no virtualization backend.
pub const NO_VIRTUALIZATION: u64 = 1 << 63;

/// Where the VM's capability goes (mode 7 gets no grants: selectors 3 and up are free).
pub const VM: Selector = Selector(10);
/// The vCPU selector whose capability the steps change.
pub const VCPU: Selector = Selector(11);
/// The copy of the first vCPU's capability without `RUN` (step 2 on).
pub const NO_RUN: Selector = Selector(12);
/// Where step 5 tries to create a vCPU after the VM's capability is gone.
pub const SPARE: Selector = Selector(13);

/// Where a vCPU fetches its first instruction: CS base 0xffff0000 + RIP 0xfff0.
pub const RESET_VECTOR: u64 = 0xffff_fff0;
/// RIP at reset.
pub const RESET_RIP: u64 = 0xfff0;
/// Where the reply of step 1's second run moves the first vCPU (CS base 0, RIP = this).
pub const MOVED_TO: u64 = 0xa000;
/// Preemption exits (the time slice ended while the guest ran) one run may take before its
/// real exit; each is answered with an empty reply and the vCPU run again.
const MAX_PREEMPTIONS: usize = 8;

/// What one run gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The run succeeded and the UTCB holds this exit (`rip` when the exit carries RIP).
    Exit {
        reason: ExitReason,
        rip: Option<u64>,
    },
    /// The kernel refused the run.
    Refused(Status),
    /// The run succeeded but the UTCB holds no well-formed exit message.
    Undecodable(DecodeError),
    /// The run succeeded but the UTCB's tag claims more than the buffer holds.
    Unreadable(Status),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exit {
                reason: ExitReason::MemoryFault { gpa, access },
                rip,
            } => {
                write!(f, "memory fault at {:#x} ({access:?})", gpa.0)?;
                match rip {
                    Some(rip) => write!(f, ", rip {rip:#x}"),
                    None => f.write_str(", no RIP in the exit"),
                }
            }
            Outcome::Exit { reason, .. } => write!(f, "exit {reason:?}"),
            Outcome::Refused(status) => write!(f, "refused {status:?} ({status})"),
            Outcome::Undecodable(error) => {
                write!(f, "success, but the UTCB holds no exit: {error}")
            }
            Outcome::Unreadable(status) => {
                write!(f, "success, but the UTCB is unreadable: {status:?}")
            }
        }
    }
}

/// What one run must give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// An instruction fetch from unmapped guest memory at `gpa`, with RIP `rip`.
    FetchFault { gpa: u64, rip: u64 },
    /// A refusal with exactly this status.
    Refused(Status),
}

impl Expected {
    /// The reset vector's fault (a vCPU that never ran, or whose state no reply changed).
    pub const RESET: Expected = Expected::FetchFault {
        gpa: RESET_VECTOR,
        rip: RESET_RIP,
    };
    /// The fault of the first vCPU once step 1 moved it.
    pub const MOVED: Expected = Expected::FetchFault {
        gpa: MOVED_TO,
        rip: MOVED_TO,
    };

    /// Whether `outcome` is exactly this.
    pub fn matches(&self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Expected::FetchFault { gpa, rip }, Outcome::Exit { reason, rip: got }) => {
                *reason
                    == ExitReason::MemoryFault {
                        gpa: GuestPhys(*gpa),
                        access: MemoryAccess::Execute,
                    }
                    && *got == Some(*rip)
            }
            (Expected::Refused(status), Outcome::Refused(got)) => status == got,
            _ => false,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::FetchFault { gpa, rip } => {
                write!(f, "memory fault at {gpa:#x} (Execute), rip {rip:#x}")
            }
            Expected::Refused(status) => write!(f, "refused {status:?}"),
        }
    }
}

/// Why a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A run of `run` gave `got` instead of `expected`.
    Run {
        run: &'static str,
        expected: Expected,
        got: Outcome,
    },
    /// System call `call` gave `got` instead of `expected` (`None`: success).
    Call {
        call: &'static str,
        expected: Option<Status>,
        got: Option<Status>,
    },
    /// `create_vm` was refused `NotImplemented`: the kernel has no virtualization backend,
    /// so no step can run.
    NoVirtualization,
    /// A run of `run` carried the state groups `got` instead of `expected` (raw `Mtd` bits).
    Groups {
        run: &'static str,
        expected: u64,
        got: u64,
    },
    /// A run of `run` gave no exit message at all.
    NoExit { run: &'static str, got: Outcome },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |f: &mut fmt::Formatter<'_>, status: &Option<Status>| match status {
            None => f.write_str("Success"),
            Some(status) => write!(f, "{status:?}"),
        };
        match self {
            Failure::Run { run, expected, got } => {
                write!(f, "{run}: {got}, expected {expected}")
            }
            Failure::Call {
                call,
                expected,
                got,
            } => {
                write!(f, "{call}: ")?;
                name(f, got)?;
                f.write_str(", expected ")?;
                name(f, expected)
            }
            Failure::NoVirtualization => {
                f.write_str("create_vm: NotImplemented: the kernel has no virtualization backend")
            }
            Failure::Groups { run, expected, got } => write!(
                f,
                "{run}: the exit carried state groups {got:#x}, expected {expected:#x}"
            ),
            Failure::NoExit { run, got } => write!(f, "{run}: {got}, expected an exit message"),
        }
    }
}

fn check_run(run: &'static str, expected: Expected, got: Outcome) -> Result<(), Failure> {
    if expected.matches(&got) {
        Ok(())
    } else {
        Err(Failure::Run { run, expected, got })
    }
}

fn check_call(
    call: &'static str,
    expected: Option<Status>,
    got: Result<(), Status>,
) -> Result<(), Failure> {
    let got = got.err();
    if got == expected {
        Ok(())
    } else {
        Err(Failure::Call {
            call,
            expected,
            got,
        })
    }
}

/// Runs vCPUs from this thread, putting a reply in the UTCB before each run.
pub struct Runner {
    buffer: MessageBuffer,
}

impl Runner {
    pub fn new(buffer: MessageBuffer) -> Runner {
        Runner { buffer }
    }

    /// Puts `reply` in the UTCB and runs `vcpu`; a preemption exit is answered with an empty
    /// reply and the vCPU run again (at most [`MAX_PREEMPTIONS`] times). Between the reply and
    /// the run there is no system call.
    pub fn run(&mut self, vcpu: Selector, reply: &Reply) -> Outcome {
        self.run_observed(vcpu, reply, &mut Mtd::empty())
    }

    /// Runs `vcpu` with no state change and returns the state groups its exit carried (a
    /// preemption exit is answered and the vCPU run again, as in [`Runner::run`]).
    pub fn run_groups(&mut self, run: &'static str, vcpu: Selector) -> Result<Mtd, Failure> {
        let mut groups = Mtd::empty();
        match self.run_observed(vcpu, &unchanged(), &mut groups) {
            Outcome::Exit { .. } => Ok(groups),
            got => Err(Failure::NoExit { run, got }),
        }
    }

    /// [`Runner::run`], also recording the state groups of the last exit in `groups`.
    fn run_observed(&mut self, vcpu: Selector, reply: &Reply, groups: &mut Mtd) -> Outcome {
        let mut outcome = self.run_once_observed(vcpu, reply, groups);
        for _ in 0..MAX_PREEMPTIONS {
            if !matches!(
                outcome,
                Outcome::Exit {
                    reason: ExitReason::Preempted,
                    ..
                }
            ) {
                break;
            }
            outcome = self.run_once_observed(vcpu, &unchanged(), groups);
        }
        outcome
    }

    fn run_once_observed(&mut self, vcpu: Selector, reply: &Reply, groups: &mut Mtd) -> Outcome {
        // A reply within the UTCB's 64 words always encodes (it carries no pending event).
        let _ = self.buffer.write_words(0, |words| reply.to_words(words));
        if let Err(status) = sys::vcpu_run(vcpu) {
            return Outcome::Refused(status);
        }
        let decoded = self
            .buffer
            .read_words(|_, words| ExitMessage::from_words(words));
        match decoded {
            Err(status) => Outcome::Unreadable(status),
            Ok(Err(error)) => Outcome::Undecodable(error),
            Ok(Ok(exit)) => {
                *groups = exit.state.mtd;
                Outcome::Exit {
                    reason: exit.reason,
                    rip: exit.state.mtd.contains(Mtd::RIP).then_some(exit.state.rip),
                }
            }
        }
    }
}

/// No state change: the vCPU goes on where it stopped.
fn unchanged() -> Reply {
    Reply::default()
}

/// Real mode at 0000:[`MOVED_TO`] with flat 64 KiB code and stack segments (the rest of the
/// state stays as it is).
pub fn move_reply() -> Reply {
    let segment = |attributes| Segment {
        selector: 0,
        attributes: SegmentAttributes::new(attributes).unwrap_or_default(),
        limit: 0xffff,
        base: 0,
    };
    Reply {
        state: VcpuState {
            mtd: Mtd::RIP.union(Mtd::RFLAGS).union(Mtd::SEGMENT_CS_SS),
            rip: MOVED_TO,
            // Bit 1 of RFLAGS is reserved as one (SDM Vol. 1 3.4.3).
            rflags: 0x2,
            // Present, accessed, read/execute code; read/write data (SDM Vol. 3A 3.4.5.1).
            cs: segment(0x9b),
            ss: segment(0x93),
            ..VcpuState::default()
        },
        inject: None,
        request_interrupt_window: false,
    }
}

/// Step 1: a new vCPU, run twice in a row.
fn create_and_run_twice(runner: &mut Runner) -> Result<(), Failure> {
    match sys::create_vm(VM) {
        Err(Status::NotImplemented) => return Err(Failure::NoVirtualization),
        result => check_call("create_vm", None, result)?,
    }
    check_call("create_vcpu", None, sys::create_vcpu(VM, VCPU))?;
    let first = runner.run(VCPU, &unchanged());
    let second = runner.run(VCPU, &move_reply());
    check_run("first run", Expected::RESET, first)?;
    check_run("second run (reply moves it)", Expected::MOVED, second)
}

/// Step 2: a copy without `RUN` is refused, and the refusal leaves the original working.
fn copy_without_run(runner: &mut Runner) -> Result<(), Failure> {
    let rights = VcpuRights::all().difference(VcpuRights::RUN).bits();
    let primed = runner.run(VCPU, &unchanged());
    let derived = sys::derive(VCPU, NO_RUN, rights);
    let copy = runner.run(NO_RUN, &unchanged());
    let original = runner.run(VCPU, &unchanged());
    check_run("run before derive", Expected::MOVED, primed)?;
    check_call("derive without RUN", None, derived)?;
    check_run(
        "run of the copy without RUN",
        Expected::Refused(Status::MissingRight),
        copy,
    )?;
    check_run("run of the original after", Expected::MOVED, original)
}

/// Step 3: after `delete`, the selector is refused every time, while the object lives on.
fn delete_and_run(runner: &mut Runner) -> Result<(), Failure> {
    let primed = runner.run(VCPU, &unchanged());
    let deleted = sys::delete(VCPU);
    let first = runner.run(VCPU, &unchanged());
    let second = runner.run(VCPU, &unchanged());
    let copy = runner.run(NO_RUN, &unchanged());
    check_run("run before delete", Expected::MOVED, primed)?;
    check_call("delete", None, deleted)?;
    check_run(
        "first run after delete",
        Expected::Refused(Status::EmptySlot),
        first,
    )?;
    check_run(
        "second run after delete",
        Expected::Refused(Status::EmptySlot),
        second,
    )?;
    check_run(
        "run of the copy without RUN",
        Expected::Refused(Status::MissingRight),
        copy,
    )
}

/// Step 4: a new vCPU at the same selector is the one that runs.
fn recreate_and_run(runner: &mut Runner) -> Result<(), Failure> {
    let created = sys::create_vcpu(VM, VCPU);
    let first = runner.run(VCPU, &unchanged());
    let second = runner.run(VCPU, &unchanged());
    check_call("create_vcpu at the same selector", None, created)?;
    check_run("first run of the new vCPU", Expected::RESET, first)?;
    check_run("second run of the new vCPU", Expected::RESET, second)
}

/// Step 5: the VM's capability revoked including itself: the vCPU still runs (it holds a
/// reference to its VM), the VM's selector is empty; then both vCPUs are deleted.
fn revoke_vm_and_run(runner: &mut Runner) -> Result<(), Failure> {
    let primed = runner.run(VCPU, &unchanged());
    let revoked = sys::revoke(VM, true);
    let after = runner.run(VCPU, &unchanged());
    let gone = sys::create_vcpu(VM, SPARE);
    check_run("run before revoke", Expected::RESET, primed)?;
    check_call("revoke of the VM including itself", None, revoked)?;
    check_run("run after the VM's revoke", Expected::RESET, after)?;
    check_call(
        "create_vcpu from the revoked VM selector",
        Some(Status::EmptySlot),
        gone,
    )?;
    check_call("delete of the vCPU", None, sys::delete(VCPU))?;
    check_call("delete of the copy without RUN", None, sys::delete(NO_RUN))?;
    check_run(
        "run after the vCPU's delete",
        Expected::Refused(Status::EmptySlot),
        runner.run(VCPU, &unchanged()),
    )
}

/// `vcpu_control(vcpu, VCPU_SET_EXIT_STATE, reason, groups)` with raw words (so malformed
/// choices can be made too).
fn set_exit_state(vcpu: Selector, reason: u64, groups: u64) -> Result<(), Status> {
    let words = [u64::from(vcpu.0), VCPU_SET_EXIT_STATE, reason, groups, 0, 0];
    sys::decode(sys::raw(Syscall::VcpuControl, words)).map(|_| ())
}

fn check_groups(run: &'static str, expected: Mtd, got: Mtd) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::Groups {
            run,
            expected: expected.bits(),
            got: got.bits(),
        })
    }
}

/// Step 6: the VMM chooses per exit reason which state groups exits carry.
fn exit_state_per_reason(runner: &mut Runner) -> Result<(), Failure> {
    let memory_fault = u64::from(
        ExitReason::MemoryFault {
            gpa: GuestPhys(0),
            access: MemoryAccess::Execute,
        }
        .code(),
    );
    let cpuid = u64::from(ExitReason::Cpuid.code());
    check_call("create_vm", None, sys::create_vm(VM))?;
    check_call("create_vcpu", None, sys::create_vcpu(VM, VCPU))?;
    let base = runner.run_groups("run with the base state", VCPU)?;
    check_call(
        "every group for memory faults",
        None,
        set_exit_state(VCPU, memory_fault, Mtd::ALL.bits()),
    )?;
    let all = runner.run_groups("run after choosing every group for memory faults", VCPU)?;
    check_groups(
        "run after choosing every group for memory faults",
        Mtd::ALL,
        all,
    )?;
    check_call(
        "memory faults back to the base",
        None,
        set_exit_state(VCPU, memory_fault, 0),
    )?;
    check_call(
        "descriptor tables for CPUID exits",
        None,
        set_exit_state(VCPU, cpuid, Mtd::DESCRIPTOR_TABLES.bits()),
    )?;
    let back = runner.run_groups("run after the CPUID choice", VCPU)?;
    check_groups("run after the CPUID choice", base, back)?;
    check_call(
        "descriptor tables for every reason",
        None,
        set_exit_state(VCPU, ALL_EXIT_REASONS, Mtd::DESCRIPTOR_TABLES.bits()),
    )?;
    let tables = base.union(Mtd::DESCRIPTOR_TABLES);
    let every = runner.run_groups("run after choosing tables for every reason", VCPU)?;
    check_groups("run after choosing tables for every reason", tables, every)?;
    check_call(
        "an unknown exit reason",
        Some(Status::InvalidArgument),
        set_exit_state(VCPU, u64::from(MAX_EXIT_REASON_CODE) + 1, 0),
    )?;
    check_call(
        "an unknown state-group bit",
        Some(Status::InvalidArgument),
        set_exit_state(VCPU, memory_fault, 1 << 63),
    )?;
    let kept = runner.run_groups("run after the refused choices", VCPU)?;
    check_groups("run after the refused choices", tables, kept)?;
    check_call("delete of the vCPU", None, sys::delete(VCPU))?;
    check_call("delete of the VM", None, sys::delete(VM))
}

/// A step: its function and the line logged when it passed.
type Step = (fn(&mut Runner) -> Result<(), Failure>, &'static str);

const SEQUENCE: [Step; STEPS as usize] = [
    (
        create_and_run_twice,
        "selector 11 ran twice in a row: fault at the reset vector 0xfffffff0, then at 0xa000 where the reply moved it",
    ),
    (
        copy_without_run,
        "the copy without RUN (selector 12) was refused MissingRight; selector 11 then ran on (fault at 0xa000)",
    ),
    (
        delete_and_run,
        "after delete, selector 11 was refused EmptySlot twice; the copy still names the live vCPU (MissingRight)",
    ),
    (
        recreate_and_run,
        "the new vCPU at selector 11 ran from the reset vector twice, not from the old vCPU's 0xa000",
    ),
    (
        revoke_vm_and_run,
        "with the VM's capability revoked the vCPU still ran (its VM lives while a vCPU refers to it); selector 10 is empty; both vCPUs deleted",
    ),
    (
        exit_state_per_reason,
        "exit state per reason: every group for memory faults, a CPUID choice left them at the base, tables for every reason added exactly that group, an unknown reason and group bit were refused InvalidArgument",
    ),
];

/// The report words: steps passed, steps failed (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
}

/// Runs the steps in order until one fails, logging one line per step.
pub fn run_steps(runner: &mut Runner) -> Summary {
    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    for (number, (step, description)) in (1u32..).zip(SEQUENCE.iter()) {
        let bit = 1u64 << (number - 1);
        match step(runner) {
            Ok(()) => {
                log!("misbehave: vcpu step {number} passed: {description}");
                summary.passed |= bit;
            }
            Err(Failure::NoVirtualization) => {
                log!(
                    "misbehave: vcpu steps not run: {}",
                    Failure::NoVirtualization
                );
                summary.failed = NO_VIRTUALIZATION;
                return summary;
            }
            Err(failure) => {
                log!("misbehave: vcpu step {number} FAILED: {failure}");
                summary.failed |= bit;
                return summary;
            }
        }
    }
    summary
}

/// Mode 7: the steps, then the report to init.
pub fn vcpu_lifecycle() {
    let Some(buffer) = MessageBuffer::current() else {
        log!("misbehave: no UTCB recorded at entry");
        return;
    };
    let mut runner = Runner::new(buffer);
    let summary = run_steps(&mut runner);
    let passed = summary.passed.count_ones();
    log!("misbehave: vcpu capability lifecycle: {passed} of {STEPS} steps passed");
    crate::report(&mut runner.buffer, MODE, summary.passed, summary.failed);
}

#[cfg(test)]
mod tests;
