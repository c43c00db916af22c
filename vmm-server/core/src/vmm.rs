//! The per-guest exit dispatcher: [`Vmm::handle_exit`] turns one normalized exit message into a
//! reply (state written back, event injected, interrupt-window request), a wait for the timer,
//! or a stop report. It owns the port and MMIO buses with the standard devices (16550 UART,
//! debug-exit port, MMIO test device), the CPUID and MSR policies and the virtual timer.
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use iced_x86::Mnemonic;
use sluice_abi::vcpu::{
    Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr, GuestPhys, Interruptibility,
    Mtd, Reply, VcpuState,
};

use crate::bus::{Bus, BusError, BusKind};
use crate::cpuid::{CpuidPolicy, HostCpuid};
use crate::debug_exit::{DebugExit, DEBUG_EXIT_PORT_COUNT};
use crate::memory::{fetch_instruction, GuestMemory, MAX_INSTRUCTION_BYTES};
use crate::mmio::{emulate_mmio, EmulationError};
use crate::msr::MsrPolicy;
use crate::port_io::{emulate_port_io, instruction_length};
use crate::registers::{CpuMode, GprOperand, RegisterPart};
use crate::report::{ExitAction, StopReason, StopReport};
use crate::test_device::{TestDevice, TEST_DEVICE_SIZE};
use crate::timer::{TimerConfig, VirtualTimer};
use crate::uart::{PrefixedLines, Serial, UART_PORT_COUNT};

/// State groups the kernel must send with every exit.
pub const REQUIRED_STATE: Mtd = Mtd::GPR_ACDB
    .union(Mtd::GPR_BSD)
    .union(Mtd::GPR_R8_R15)
    .union(Mtd::RSP)
    .union(Mtd::RIP)
    .union(Mtd::RFLAGS)
    .union(Mtd::CONTROL_REGISTERS)
    .union(Mtd::EFER)
    .union(Mtd::SEGMENT_CS_SS)
    .union(Mtd::INTERRUPT_STATE)
    .union(Mtd::PENDING_EVENT);

/// RFLAGS.IF (SDM Vol. 1 section 3.4.3.3).
const RFLAGS_INTERRUPT_ENABLE: u64 = 1 << 9;

/// The guest platform a VMM presents.
#[derive(Clone, Debug)]
pub struct VmmConfig {
    /// Prefix of console lines.
    pub guest_name: String,
    /// 16550 base port (COM1 is 0x3f8).
    pub uart_port: Option<u16>,
    /// Debug-exit port.
    pub debug_exit_port: Option<u16>,
    /// Base of the MMIO test device.
    pub test_device: Option<GuestPhys>,
    /// The virtual timer.
    pub timer: Option<TimerConfig>,
    /// CPUID policy.
    pub cpuid: CpuidPolicy,
    /// MSR policy.
    pub msr: MsrPolicy,
}

impl VmmConfig {
    /// COM1 at 0x3f8, debug exit at 0xf4, test device at 0xfe00_0000, timer vector 0x20 every
    /// tick, standard CPUID and MSR policies.
    pub fn standard(guest_name: &str) -> VmmConfig {
        VmmConfig {
            guest_name: String::from(guest_name),
            uart_port: Some(0x3f8),
            debug_exit_port: Some(0xf4),
            test_device: Some(GuestPhys(0xfe00_0000)),
            timer: Some(TimerConfig {
                vector: 0x20,
                period: 1,
            }),
            cpuid: CpuidPolicy::standard(),
            msr: MsrPolicy::standard(),
        }
    }
}

type Console = Rc<RefCell<PrefixedLines<VecDeque<String>>>>;

/// One guest's VMM state.
pub struct Vmm<H: HostCpuid> {
    name: String,
    io_bus: Bus,
    mmio_bus: Bus,
    console: Console,
    uart_interrupt: Rc<Cell<bool>>,
    exit_status: Rc<Cell<Option<u32>>>,
    timer: Option<VirtualTimer>,
    cpuid: CpuidPolicy,
    msr: MsrPolicy,
    host: H,
    halted: Option<(ExitMessage, VcpuState, Mtd)>,
    exits: u64,
}

/// What handling one exit produced before injection is decided.
struct Handled {
    changed: Mtd,
    inject: Option<Event>,
}

impl<H: HostCpuid> Vmm<H> {
    /// A VMM with the configured devices; fails if two device ranges overlap.
    pub fn new(config: VmmConfig, host: H) -> Result<Vmm<H>, BusError> {
        let console: Console = Rc::new(RefCell::new(PrefixedLines::new(
            &config.guest_name,
            VecDeque::new(),
        )));
        let uart_interrupt = Rc::new(Cell::new(false));
        let exit_status = Rc::new(Cell::new(None));
        let mut io_bus = Bus::new(BusKind::Port);
        let mut mmio_bus = Bus::new(BusKind::Mmio);
        if let Some(port) = config.uart_port {
            let serial = Serial::new(console.clone(), uart_interrupt.clone());
            io_bus.register(u64::from(port), UART_PORT_COUNT, Box::new(serial))?;
        }
        if let Some(port) = config.debug_exit_port {
            let device = DebugExit::new(exit_status.clone());
            io_bus.register(u64::from(port), DEBUG_EXIT_PORT_COUNT, Box::new(device))?;
        }
        if let Some(base) = config.test_device {
            mmio_bus.register(base.0, TEST_DEVICE_SIZE, Box::new(TestDevice::new()))?;
        }
        Ok(Vmm {
            name: config.guest_name,
            io_bus,
            mmio_bus,
            console,
            uart_interrupt,
            exit_status,
            timer: config.timer.map(VirtualTimer::new),
            cpuid: config.cpuid,
            msr: config.msr,
            host,
            halted: None,
            exits: 0,
        })
    }

    /// The port bus, to add devices.
    pub fn io_bus_mut(&mut self) -> &mut Bus {
        &mut self.io_bus
    }

    /// The MMIO bus, to add devices.
    pub fn mmio_bus_mut(&mut self) -> &mut Bus {
        &mut self.mmio_bus
    }

    /// The UART's interrupt line level (no interrupt controller is modelled yet).
    pub fn uart_interrupt(&self) -> bool {
        self.uart_interrupt.get()
    }

    /// Takes the console lines produced so far: guest output as `[name] text` and VMM
    /// diagnostics as `[name] vmm: ...`.
    /// (Without lines, the usual case per exit, nothing is drained or allocated.)
    pub fn take_console_lines(&mut self) -> Vec<String> {
        match self.console.try_borrow_mut() {
            Ok(mut console) => {
                let lines = console.sink_mut();
                if lines.is_empty() {
                    Vec::new()
                } else {
                    lines.drain(..).collect()
                }
            }
            Err(_) => Vec::new(),
        }
    }

    /// Advances the virtual timer.
    pub fn tick(&mut self, ticks: u64) {
        if let Some(timer) = self.timer.as_mut() {
            timer.tick(ticks);
        }
    }

    /// After [`ExitAction::WaitForInterrupt`]: the action once the timer is pending, or `None`
    /// while the guest must keep waiting (also `None` when no guest is halted).
    pub fn wake(&mut self) -> Option<ExitAction> {
        if !self.timer.is_some_and(|timer| timer.pending()) {
            return None;
        }
        let (exit, state, changed) = self.halted.take()?;
        Some(self.finish(
            &exit,
            state,
            Handled {
                changed,
                inject: None,
            },
        ))
    }

    fn diagnostic(&mut self, text: core::fmt::Arguments<'_>) {
        let line = alloc::format!("[{}] vmm: {}", self.name, text);
        if let Ok(mut console) = self.console.try_borrow_mut() {
            console.sink_mut().push_back(line);
        }
    }

    fn report_unhandled(&mut self) {
        // Nearly every exit has nothing to report: then nothing is taken.
        if !self.io_bus.has_unhandled() && !self.mmio_bus.has_unhandled() {
            return;
        }
        for bus in [BusKind::Port, BusKind::Mmio] {
            let (log, dropped) = match bus {
                BusKind::Port => self.io_bus.take_unhandled(),
                BusKind::Mmio => self.mmio_bus.take_unhandled(),
            };
            for access in log {
                self.diagnostic(format_args!("{access}"));
            }
            if dropped > 0 {
                self.diagnostic(format_args!("{dropped} more unhandled {bus} accesses"));
            }
        }
    }

    fn stop(&mut self, exit: &ExitMessage, reason: StopReason) -> ExitAction {
        if let Ok(mut console) = self.console.try_borrow_mut() {
            console.flush();
        }
        self.report_unhandled();
        let report = StopReport {
            reason,
            rip: exit.state.rip,
            last_exit: exit.reason,
            hardware_exit_code: exit.hardware_exit_code,
            exits: self.exits,
        };
        self.diagnostic(format_args!("stopped: {report}"));
        ExitAction::Stop(report)
    }

    /// Handles one exit. Never panics: every problem becomes a stop report.
    pub fn handle_exit<M: GuestMemory + ?Sized>(
        &mut self,
        exit: &ExitMessage,
        memory: &M,
    ) -> ExitAction {
        self.exits = self.exits.saturating_add(1);
        self.halted = None;
        if !exit.state.mtd.contains(REQUIRED_STATE) {
            let missing = REQUIRED_STATE.difference(exit.state.mtd);
            return self.stop(exit, StopReason::MissingState(missing));
        }
        let mut state = exit.state;
        let handled = match self.dispatch(exit, memory, &mut state) {
            Ok(handled) => handled,
            Err(reason) => return self.stop(exit, reason),
        };
        if let Some(status) = self.exit_status.take() {
            return self.stop(exit, StopReason::DebugExit { status });
        }
        self.report_unhandled();
        if exit.reason == ExitReason::Hlt && handled.inject.is_none() {
            // Only IF matters here: an STI shadow (`sti; hlt`) ends with the HLT itself.
            if state.rflags & RFLAGS_INTERRUPT_ENABLE == 0 {
                return self.stop(exit, StopReason::HaltedWithInterruptsDisabled);
            }
            match self.timer {
                None => return self.stop(exit, StopReason::HaltedWithNothingPending),
                Some(timer) if !timer.pending() && exit.state.pending_event.is_none() => {
                    self.halted = Some((*exit, state, handled.changed));
                    return ExitAction::WaitForInterrupt;
                }
                Some(_) => {}
            }
        }
        self.finish(exit, state, handled)
    }

    fn dispatch<M: GuestMemory + ?Sized>(
        &mut self,
        exit: &ExitMessage,
        memory: &M,
        state: &mut VcpuState,
    ) -> Result<Handled, StopReason> {
        let done = |changed| {
            Ok(Handled {
                changed,
                inject: None,
            })
        };
        let general_protection = || {
            let exception = Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0));
            Ok(Handled {
                changed: Mtd::empty(),
                inject: exception.ok().map(Event::Exception),
            })
        };
        match exit.reason {
            ExitReason::Io(io) => {
                let changed = emulate_port_io(
                    &io,
                    exit.instruction_length,
                    memory,
                    state,
                    &mut self.io_bus,
                )
                .map_err(StopReason::Emulation)?;
                done(changed)
            }
            ExitReason::MemoryFault { gpa, access } => {
                if let Some(event) = exit.state.pending_event {
                    return Err(StopReason::FaultDuringEventDelivery(event));
                }
                let mut bytes = [0u8; MAX_INSTRUCTION_BYTES];
                let count = fetch_instruction(memory, state, &mut bytes)
                    .map_err(|error| StopReason::Emulation(EmulationError::Fetch(error)))?;
                let fetched = bytes.get(..count).unwrap_or(&[]);
                let emulated = emulate_mmio(fetched, state, gpa, access, &mut self.mmio_bus)
                    .map_err(StopReason::Emulation)?;
                done(emulated.changed)
            }
            ExitReason::Cpuid => {
                let length = self.length(exit, memory, state, &[Mnemonic::Cpuid])?;
                let leaf = state.gpr.get(Gpr::Rax) as u32;
                let subleaf = state.gpr.get(Gpr::Rcx) as u32;
                let values = self.cpuid.evaluate(leaf, subleaf, state.cr4, &self.host);
                let results = [
                    (Gpr::Rax, values.eax),
                    (Gpr::Rbx, values.ebx),
                    (Gpr::Rcx, values.ecx),
                    (Gpr::Rdx, values.edx),
                ];
                for (register, value) in results {
                    // CPUID writes 32-bit registers: the upper halves are cleared.
                    state.gpr.set(register, u64::from(value));
                }
                advance(state, length)?;
                done(Mtd::GPR_ACDB | Mtd::RIP)
            }
            ExitReason::MsrRead { msr } => match self.msr.read(msr) {
                Ok(value) => {
                    let length = self.length(exit, memory, state, &[Mnemonic::Rdmsr])?;
                    let dword = |register| GprOperand {
                        register,
                        part: RegisterPart::Dword,
                    };
                    dword(Gpr::Rax).write(state, value);
                    dword(Gpr::Rdx).write(state, value >> 32);
                    advance(state, length)?;
                    done(Mtd::GPR_ACDB | Mtd::RIP)
                }
                Err(error) => {
                    self.diagnostic(format_args!("RDMSR refused, injecting #GP: {error}"));
                    general_protection()
                }
            },
            ExitReason::MsrWrite { msr, value } => {
                let length = self.length(exit, memory, state, &[Mnemonic::Wrmsr])?;
                match self.msr.write(msr, value) {
                    Ok(()) => {
                        advance(state, length)?;
                        done(Mtd::RIP)
                    }
                    Err(error) => {
                        self.diagnostic(format_args!("WRMSR refused, injecting #GP: {error}"));
                        general_protection()
                    }
                }
            }
            ExitReason::Hlt => {
                let length = self.length(exit, memory, state, &[Mnemonic::Hlt])?;
                advance(state, length)?;
                done(Mtd::RIP)
            }
            ExitReason::InterruptWindow | ExitReason::Preempted => done(Mtd::empty()),
            // An intercepted exception is reflected into the guest unchanged.
            ExitReason::Exception(exception) => Ok(Handled {
                changed: Mtd::empty(),
                inject: Some(Event::Exception(exception)),
            }),
            ExitReason::TripleFault => Err(StopReason::TripleFault),
            ExitReason::Shutdown => Err(StopReason::Shutdown),
            ExitReason::InvalidGuestState { detail } => {
                Err(StopReason::InvalidGuestState { detail })
            }
            ExitReason::Unknown { raw } => Err(StopReason::UnknownExit { raw }),
        }
    }

    fn length<M: GuestMemory + ?Sized>(
        &self,
        exit: &ExitMessage,
        memory: &M,
        state: &VcpuState,
        expected: &[Mnemonic],
    ) -> Result<usize, StopReason> {
        instruction_length(exit.instruction_length, memory, state, expected)
            .map_err(StopReason::Emulation)
    }

    /// Decides injection and builds the reply.
    fn finish(&mut self, exit: &ExitMessage, mut state: VcpuState, handled: Handled) -> ExitAction {
        let mut changed = handled.changed;
        // Completing an instruction ends the STI / MOV SS shadow (SDM Vol. 3A section 6.8.3).
        let shadow = Interruptibility::BLOCKING_BY_STI | Interruptibility::BLOCKING_BY_MOV_SS;
        if changed.contains(Mtd::RIP) && state.interruptibility.bits() & shadow != 0 {
            let bits = state.interruptibility.bits() & !shadow;
            if let Some(cleared) = Interruptibility::new(bits) {
                state.interruptibility = cleared;
                changed = changed | Mtd::INTERRUPT_STATE;
            }
        }
        // An interrupted delivery is re-injected first; then the handler's event; the timer
        // goes in only when nothing else is and the guest can take it.
        let mut inject = exit.state.pending_event.or(handled.inject);
        let timer_pending = self.timer.is_some_and(|timer| timer.pending());
        let mut request_interrupt_window = false;
        if timer_pending {
            if inject.is_none() && interruptible(&state) {
                inject = self
                    .timer
                    .as_mut()
                    .and_then(VirtualTimer::take)
                    .map(Event::ExternalInterrupt);
            } else {
                request_interrupt_window = true;
            }
        }
        state.mtd = changed;
        ExitAction::Resume(Reply {
            state,
            inject,
            request_interrupt_window,
        })
    }
}

/// Whether the guest can take a maskable interrupt now: RFLAGS.IF set, no STI or MOV SS shadow.
fn interruptible(state: &VcpuState) -> bool {
    let shadow = Interruptibility::BLOCKING_BY_STI | Interruptibility::BLOCKING_BY_MOV_SS;
    state.rflags & RFLAGS_INTERRUPT_ENABLE != 0 && state.interruptibility.bits() & shadow == 0
}

fn advance(state: &mut VcpuState, length: usize) -> Result<(), StopReason> {
    let mode = CpuMode::of(state).map_err(StopReason::MissingState)?;
    state.rip = mode.advance(state.rip, length as u64);
    Ok(())
}
