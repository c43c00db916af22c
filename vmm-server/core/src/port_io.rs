//! Port I/O emulation from an I/O exit: OUT writes the low bytes of RAX to the port bus, IN
//! reads into AL/AX/EAX (EAX zero-extends into RAX). RIP advances by the instruction length the
//! hardware reported, or, where it did not (SVM without NRIP save), by the instruction at CS:RIP
//! (its fixed length when it is a prefix-free form of the expected one, else decoded). String
//! forms (INS/OUTS) are refused with a named error.
use iced_x86::Mnemonic;
use sluice_abi::vcpu::{Gpr, InstructionLength, IoDirection, IoExit, IoSize, Mtd, VcpuState};

use crate::bus::Bus;
use crate::fixed_length::fixed_length;
use crate::memory::{fetch_instruction, GuestMemory, MAX_INSTRUCTION_BYTES};
use crate::mmio::{decode, EmulationError};
use crate::registers::{CpuMode, GprOperand, RegisterPart};

/// Length of the instruction at CS:RIP, decoded from guest memory, checked to be one of
/// `expected` (so a wrong RIP cannot silently skip some other instruction).
pub fn decoded_length<M: GuestMemory + ?Sized>(
    memory: &M,
    state: &VcpuState,
    expected: &[Mnemonic],
) -> Result<usize, EmulationError> {
    let mode = CpuMode::of(state).map_err(EmulationError::MissingState)?;
    let mut bytes = [0u8; MAX_INSTRUCTION_BYTES];
    let count = fetch_instruction(memory, state, &mut bytes).map_err(EmulationError::Fetch)?;
    let fetched = bytes.get(..count).unwrap_or(&[]);
    // The common prefix-free forms (CPUID, RDMSR, WRMSR, HLT, IN, OUT) need no full decode.
    if let Some(length) = fixed_length(fetched, expected) {
        return Ok(length);
    }
    let instruction = decode(fetched, mode, state.rip)?;
    if !expected.contains(&instruction.mnemonic()) {
        return Err(EmulationError::Unsupported(instruction.mnemonic()));
    }
    Ok(instruction.len())
}

/// Length of the exiting instruction: the hardware's report if any, else decoded.
pub fn instruction_length<M: GuestMemory + ?Sized>(
    reported: Option<InstructionLength>,
    memory: &M,
    state: &VcpuState,
    expected: &[Mnemonic],
) -> Result<usize, EmulationError> {
    match reported {
        Some(length) => Ok(usize::from(length.bytes())),
        None => decoded_length(memory, state, expected),
    }
}

/// Emulates a non-string IN or OUT against `bus`, updating RAX (for IN) and RIP in `state`.
/// Returns the state groups changed.
pub fn emulate_port_io<M: GuestMemory + ?Sized>(
    io: &IoExit,
    reported_length: Option<InstructionLength>,
    memory: &M,
    state: &mut VcpuState,
    bus: &mut Bus,
) -> Result<Mtd, EmulationError> {
    let expected: &[Mnemonic] = match (io.string, io.direction) {
        (false, IoDirection::In) => &[Mnemonic::In],
        (false, IoDirection::Out) => &[Mnemonic::Out],
        (true, IoDirection::In) => return Err(EmulationError::Unsupported(Mnemonic::Insb)),
        (true, IoDirection::Out) => return Err(EmulationError::Unsupported(Mnemonic::Outsb)),
    };
    let needed = Mtd::GPR_ACDB | Mtd::RIP;
    if !state.mtd.contains(needed) {
        return Err(EmulationError::MissingState(needed.difference(state.mtd)));
    }
    let mode = CpuMode::of(state).map_err(EmulationError::MissingState)?;
    let length = instruction_length(reported_length, memory, state, expected)?;
    let part = match io.size {
        IoSize::Byte => RegisterPart::Low8,
        IoSize::Word => RegisterPart::Word,
        IoSize::Dword => RegisterPart::Dword,
    };
    let accumulator = GprOperand {
        register: Gpr::Rax,
        part,
    };
    let port = u64::from(io.port);
    let size = io.size.bytes();
    let mut changed = Mtd::RIP;
    match io.direction {
        IoDirection::Out => {
            let bytes = accumulator.read(state).to_le_bytes();
            let _ = bus.write(port, bytes.get(..size).unwrap_or(&[]));
        }
        IoDirection::In => {
            let mut data = [0u8; 8];
            let _ = bus.read(port, data.get_mut(..size).unwrap_or(&mut []));
            accumulator.write(state, u64::from_le_bytes(data));
            changed = changed | Mtd::GPR_ACDB;
        }
    }
    state.rip = mode.advance(state.rip, length as u64);
    Ok(changed)
}
