//! The exit dispatcher: port I/O to the UART and debug exit, MMIO to the test device, CPUID
//! (with the guest's CR4 and the host's XCR0), MSRs with #GP injection, HLT woken by the timer, interrupt windows, stop reports.
mod common;

use common::{long_mode, ram_with, FakeHost};
use iced_x86::Mnemonic;
use sluice_abi::vcpu::{
    Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr, GuestPhys, InstructionLength,
    Interruptibility, IoDirection, IoExit, IoSize, MemoryAccess, Mtd, Reply, VcpuState,
};
use vmm_core::mmio::EmulationError;
use vmm_core::timer::TimerConfig;
use vmm_core::{ExitAction, SliceMemory, StopReason, Vmm, VmmConfig};

fn vmm() -> Vmm<FakeHost> {
    let mut config = VmmConfig::standard("quail");
    config.timer = Some(TimerConfig {
        vector: 0x30,
        period: 5,
    });
    Vmm::new(config, FakeHost::default()).unwrap()
}

fn exit(reason: ExitReason, length: Option<u8>, state: VcpuState) -> ExitMessage {
    ExitMessage {
        reason,
        instruction_length: length.and_then(InstructionLength::new),
        hardware_exit_code: 0x7b,
        state,
    }
}

fn io(port: u16, direction: IoDirection) -> ExitReason {
    ExitReason::Io(IoExit {
        port,
        size: IoSize::Byte,
        direction,
        string: false,
        rep: false,
    })
}

fn resume(action: ExitAction) -> Reply {
    match action {
        ExitAction::Resume(reply) => reply,
        other => panic!("expected Resume, got {other:?}"),
    }
}

const NO_MEMORY: SliceMemory<'static> = SliceMemory::empty();

#[test]
fn uart_output_becomes_prefixed_console_lines() {
    let mut vmm = vmm();
    let mut state = long_mode(0x1000);
    for &byte in b"hello\n" {
        state.gpr.set(Gpr::Rax, 0xffff_ff00 | u64::from(byte));
        let reply = resume(vmm.handle_exit(
            &exit(io(0x3f8, IoDirection::Out), Some(1), state),
            &NO_MEMORY,
        ));
        assert_eq!(reply.state.mtd, Mtd::RIP);
        assert_eq!(reply.state.rip, state.rip + 1);
        assert_eq!(reply.inject, None);
        state.rip = reply.state.rip;
    }
    assert_eq!(vmm.take_console_lines(), ["[quail] hello"]);
}

#[test]
fn port_io_without_reported_length_decodes_the_instruction() {
    let mut vmm = vmm();
    let ram = ram_with(0x2000, 0x1000, &[0xec]); // in al, dx
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut state = long_mode(0x1000);
    state.cr0 &= !(1 << 31); // paging off: RIP is the physical address
    state.gpr.set(Gpr::Rax, 0x1234_5678_9abc_def0);
    let reply = resume(vmm.handle_exit(&exit(io(0x3fd, IoDirection::In), None, state), &memory));
    assert_eq!(
        reply.state.gpr.get(Gpr::Rax),
        0x1234_5678_9abc_de60,
        "LSR into AL only"
    );
    assert_eq!(reply.state.rip, 0x1001);
    assert_eq!(reply.state.mtd, Mtd::GPR_ACDB | Mtd::RIP);
    // A NOP where the OUT should be: a named error, not a wrong RIP.
    let ram = ram_with(0x2000, 0x1000, &[0x90]);
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    match vmm.handle_exit(&exit(io(0x3f8, IoDirection::Out), None, state), &memory) {
        ExitAction::Stop(report) => {
            assert_eq!(
                report.reason,
                StopReason::Emulation(EmulationError::Unsupported(Mnemonic::Nop))
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unhandled_port_reads_return_all_ones_and_are_logged() {
    let mut vmm = vmm();
    let state = long_mode(0x1000);
    let reply =
        resume(vmm.handle_exit(&exit(io(0x80, IoDirection::In), Some(2), state), &NO_MEMORY));
    assert_eq!(reply.state.gpr.get(Gpr::Rax) & 0xff, 0xff);
    assert_eq!(
        vmm.take_console_lines(),
        ["[quail] vmm: unhandled port read at 0x80 (1 bytes): no device"]
    );
}

#[test]
fn debug_exit_stops_with_the_status() {
    for (status, passed) in [(0u64, true), (3, false)] {
        let mut vmm = vmm();
        let mut state = long_mode(0x1000);
        state.gpr.set(Gpr::Rax, status);
        match vmm.handle_exit(
            &exit(io(0xf4, IoDirection::Out), Some(1), state),
            &NO_MEMORY,
        ) {
            ExitAction::Stop(report) => {
                assert_eq!(
                    report.reason,
                    StopReason::DebugExit {
                        status: status as u32
                    }
                );
                assert_eq!(report.passed(), passed);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn triple_fault_stops_with_a_report() {
    let mut vmm = vmm();
    let state = long_mode(0xdead_0000);
    let action = vmm.handle_exit(&exit(ExitReason::TripleFault, None, state), &NO_MEMORY);
    let ExitAction::Stop(report) = action else {
        panic!("{action:?}")
    };
    assert_eq!(report.reason, StopReason::TripleFault);
    assert_eq!(report.rip, 0xdead_0000);
    assert_eq!(report.last_exit, ExitReason::TripleFault);
    assert_eq!(report.exits, 1);
    assert!(!report.passed());
    let text = format!("{report}");
    assert!(
        text.starts_with("triple fault at RIP 0xdead0000; last exit TripleFault"),
        "{text}"
    );
    let lines = vmm.take_console_lines();
    assert!(lines
        .last()
        .unwrap()
        .starts_with("[quail] vmm: stopped: triple fault"));
}

#[test]
fn mmio_read_of_the_test_device_and_unsupported_instruction() {
    let mut vmm = vmm();
    let ram = ram_with(0x2000, 0x1000, &[0x8b, 0x03]); // mov eax, [rbx]
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut state = long_mode(0x1000);
    state.cr0 &= !(1 << 31);
    state.gpr.set(Gpr::Rbx, 0xfe00_0000);
    let fault = ExitReason::MemoryFault {
        gpa: GuestPhys(0xfe00_0000),
        access: MemoryAccess::Read,
    };
    let reply = resume(vmm.handle_exit(&exit(fault, None, state), &memory));
    assert_eq!(
        reply.state.gpr.get(Gpr::Rax),
        u64::from(vmm_core::test_device::TEST_DEVICE_ID)
    );
    assert_eq!(reply.state.rip, 0x1002);
    let ram = ram_with(0x2000, 0x1000, &[0x01, 0x03]); // add [rbx], eax
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let fault = ExitReason::MemoryFault {
        gpa: GuestPhys(0xfe00_0000),
        access: MemoryAccess::Write,
    };
    let ExitAction::Stop(report) = vmm.handle_exit(&exit(fault, None, state), &memory) else {
        panic!()
    };
    assert_eq!(
        report.reason,
        StopReason::Emulation(EmulationError::Unsupported(Mnemonic::Add))
    );
    assert_eq!(report.rip, 0x1000);
}

#[test]
fn cpuid_exit_answers_with_the_guest_cr4_and_the_host_xcr0() {
    let mut vmm = vmm();
    let osxsave = 1 << 27;
    for (guest_cr4, expected) in [(0x20, 0), (0x20 | 1 << 18, osxsave)] {
        let mut state = long_mode(0x1000);
        state.cr4 = guest_cr4;
        state.gpr.set(Gpr::Rax, 1);
        let reply = resume(vmm.handle_exit(&exit(ExitReason::Cpuid, Some(2), state), &NO_MEMORY));
        assert_eq!(
            reply.state.gpr.get(Gpr::Rcx) & osxsave,
            expected,
            "CPUID.1:ECX.OSXSAVE for guest CR4 {guest_cr4:#x}"
        );
    }
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rax, 0xd);
    state.gpr.set(Gpr::Rcx, 0);
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Cpuid, Some(2), state), &NO_MEMORY));
    assert_eq!(reply.state.gpr.get(Gpr::Rax), 0xe7, "XCR0 bits offered");
    state.gpr.set(Gpr::Rcx, 18);
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Cpuid, Some(2), state), &NO_MEMORY));
    assert_eq!(
        [Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx].map(|r| reply.state.gpr.get(r)),
        [0; 4],
        "AMX TILEDATA is not offered"
    );
}

#[test]
fn cpuid_and_msr_exits() {
    let mut vmm = vmm();
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rax, 0xffff_ffff_4000_0000);
    state.gpr.set(Gpr::Rbx, u64::MAX);
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Cpuid, Some(2), state), &NO_MEMORY));
    assert_eq!(
        reply.state.gpr.get(Gpr::Rbx),
        u64::from(u32::from_le_bytes(*b"Slui"))
    );
    assert_eq!(reply.state.gpr.get(Gpr::Rax), 0x4000_0000);
    assert_eq!(reply.state.rip, 0x1002);
    assert_eq!(reply.state.mtd, Mtd::GPR_ACDB | Mtd::RIP);

    let reply = resume(vmm.handle_exit(
        &exit(ExitReason::MsrRead { msr: 0x1b }, Some(2), state),
        &NO_MEMORY,
    ));
    assert_eq!(reply.state.gpr.get(Gpr::Rax), 0xfee0_0900);
    assert_eq!(reply.state.gpr.get(Gpr::Rdx), 0);
    let general_protection = Some(Event::Exception(
        Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0)).unwrap(),
    ));
    let reply = resume(vmm.handle_exit(
        &exit(ExitReason::MsrRead { msr: 0x1234 }, Some(2), state),
        &NO_MEMORY,
    ));
    assert_eq!(reply.inject, general_protection);
    assert_eq!(
        reply.state.mtd,
        Mtd::empty(),
        "RIP stays on the faulting RDMSR"
    );
    let write = ExitReason::MsrWrite {
        msr: 0x277,
        value: 0x0606_0606_0606_0606,
    };
    let reply = resume(vmm.handle_exit(&exit(write, Some(2), state), &NO_MEMORY));
    assert_eq!(
        (reply.state.mtd, reply.state.rip, reply.inject),
        (Mtd::RIP, 0x1002, None)
    );
    let write = ExitReason::MsrWrite {
        msr: 0x1b,
        value: 0,
    };
    assert_eq!(
        resume(vmm.handle_exit(&exit(write, Some(2), state), &NO_MEMORY)).inject,
        general_protection
    );
}

#[test]
fn hlt_waits_for_the_timer_then_injects_it() {
    let mut vmm = vmm();
    let mut state = long_mode(0x1000);
    state.interruptibility = Interruptibility::new(Interruptibility::BLOCKING_BY_STI).unwrap(); // sti; hlt
    assert_eq!(
        vmm.handle_exit(&exit(ExitReason::Hlt, Some(1), state), &NO_MEMORY),
        ExitAction::WaitForInterrupt
    );
    assert_eq!(vmm.wake(), None);
    vmm.tick(4);
    assert_eq!(vmm.wake(), None);
    vmm.tick(1);
    let reply = resume(vmm.wake().unwrap());
    assert_eq!(reply.inject, Some(Event::ExternalInterrupt(0x30)));
    assert_eq!(reply.state.rip, 0x1001);
    assert_eq!(
        reply.state.interruptibility.bits(),
        0,
        "shadow ends with the HLT"
    );
    assert!(reply.state.mtd.contains(Mtd::RIP | Mtd::INTERRUPT_STATE));
    assert_eq!(vmm.wake(), None, "woken once");
    // Timer already pending at HLT: inject at once.
    vmm.tick(5);
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Hlt, Some(1), state), &NO_MEMORY));
    assert_eq!(reply.inject, Some(Event::ExternalInterrupt(0x30)));
    // HLT with IF clear can never wake.
    state.rflags = 0x2;
    let ExitAction::Stop(report) =
        vmm.handle_exit(&exit(ExitReason::Hlt, Some(1), state), &NO_MEMORY)
    else {
        panic!()
    };
    assert_eq!(report.reason, StopReason::HaltedWithInterruptsDisabled);
}

#[test]
fn pending_timer_with_interrupts_masked_requests_a_window() {
    let mut vmm = vmm();
    vmm.tick(5);
    let mut state = long_mode(0x1000);
    state.rflags = 0x2;
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Preempted, None, state), &NO_MEMORY));
    assert_eq!((reply.inject, reply.request_interrupt_window), (None, true));
    state.rflags = 0x202;
    let reply =
        resume(vmm.handle_exit(&exit(ExitReason::InterruptWindow, None, state), &NO_MEMORY));
    assert_eq!(
        (reply.inject, reply.request_interrupt_window),
        (Some(Event::ExternalInterrupt(0x30)), false)
    );
    assert_eq!(reply.state.mtd, Mtd::empty());
}

#[test]
fn interrupted_delivery_is_reinjected_before_the_timer() {
    let mut vmm = vmm();
    vmm.tick(5);
    let mut state = long_mode(0x1000);
    let page_fault =
        Event::Exception(Exception::new(ExceptionVector::PAGE_FAULT, Some(2)).unwrap());
    state.pending_event = Some(page_fault);
    let reply = resume(vmm.handle_exit(&exit(ExitReason::Preempted, None, state), &NO_MEMORY));
    assert_eq!(
        (reply.inject, reply.request_interrupt_window),
        (Some(page_fault), true)
    );
    let fault = ExitReason::MemoryFault {
        gpa: GuestPhys(0xfe00_0000),
        access: MemoryAccess::Write,
    };
    let ExitAction::Stop(report) = vmm.handle_exit(&exit(fault, None, state), &NO_MEMORY) else {
        panic!()
    };
    assert_eq!(
        report.reason,
        StopReason::FaultDuringEventDelivery(page_fault)
    );
}

#[test]
fn missing_state_and_unknown_exits_stop() {
    let mut vmm = vmm();
    let mut state = long_mode(0x1000);
    state.mtd = Mtd::GPR_ACDB | Mtd::RIP;
    let ExitAction::Stop(report) =
        vmm.handle_exit(&exit(ExitReason::Cpuid, Some(2), state), &NO_MEMORY)
    else {
        panic!()
    };
    assert!(
        matches!(report.reason, StopReason::MissingState(missing) if missing.contains(Mtd::RFLAGS))
    );
    let state = long_mode(0x1000);
    let ExitAction::Stop(report) = vmm.handle_exit(
        &exit(ExitReason::Unknown { raw: 55 }, None, state),
        &NO_MEMORY,
    ) else {
        panic!()
    };
    assert_eq!(report.reason, StopReason::UnknownExit { raw: 55 });
    let exception = Exception::new(ExceptionVector::INVALID_OPCODE, None).unwrap();
    let reply = resume(vmm.handle_exit(
        &exit(ExitReason::Exception(exception), None, state),
        &NO_MEMORY,
    ));
    assert_eq!(
        reply.inject,
        Some(Event::Exception(exception)),
        "intercepted exceptions are reflected"
    );
}
