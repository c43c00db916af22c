//! MMIO instruction emulation. After an EPT violation / nested page fault on an address the
//! MMIO bus claims, the VMM fetches the instruction at CS:RIP, decodes it with iced-x86 in the
//! guest's mode (16/32/64-bit) and performs it against the bus: MOV loads and stores (register
//! or immediate source), MOVZX, MOVSX, MOVSXD, and single (non-REP) STOS. Registers are written
//! back with x86 width rules and RIP advances by the decoded length. Anything else is an
//! [`EmulationError`]; validation completes before the bus or the state is touched.
use core::fmt;

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind};
use sluice_abi::vcpu::{Gpr, GuestPhys, MemoryAccess, Mtd, VcpuState};

use crate::bus::Bus;
use crate::memory::MemoryError;
use crate::registers::{group_of, CpuMode, GprOperand, RegisterPart};

/// Why an instruction could not be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulationError {
    /// The instruction bytes could not be fetched.
    Fetch(MemoryError),
    /// The exit message lacks state groups the emulation needs.
    MissingState(Mtd),
    /// The bytes end before the instruction does.
    Truncated,
    /// Not a valid instruction in the guest's mode.
    InvalidInstruction,
    /// A valid instruction this emulator does not perform on MMIO.
    Unsupported(Mnemonic),
    /// A supported mnemonic with an operand form or size that is not (e.g. a segment register,
    /// a REP prefix, a 16-byte operand).
    UnsupportedOperands(Mnemonic),
    /// The instruction's access does not match the fault the hardware reported.
    AccessMismatch {
        /// What the decoded instruction does.
        instruction: MemoryAccess,
        /// What the exit reported.
        fault: MemoryAccess,
    },
    /// The guest tried to execute from MMIO.
    ExecuteFromMmio(GuestPhys),
}

impl fmt::Display for EmulationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmulationError::Fetch(error) => write!(f, "cannot fetch the instruction: {error}"),
            EmulationError::MissingState(mtd) => {
                write!(f, "exit message lacks state groups {:#x}", mtd.bits())
            }
            EmulationError::Truncated => f.write_str("instruction bytes end mid-instruction"),
            EmulationError::InvalidInstruction => f.write_str("invalid instruction"),
            EmulationError::Unsupported(mnemonic) => {
                write!(f, "instruction {mnemonic:?} is not emulated for MMIO")
            }
            EmulationError::UnsupportedOperands(mnemonic) => {
                write!(f, "operands of {mnemonic:?} are not emulated for MMIO")
            }
            EmulationError::AccessMismatch { instruction, fault } => write!(
                f,
                "instruction does a {instruction:?} but the fault reported a {fault:?}"
            ),
            EmulationError::ExecuteFromMmio(gpa) => {
                write!(f, "instruction fetch from MMIO at {:#x}", gpa.0)
            }
        }
    }
}

/// Decodes the first instruction of `bytes` at `rip` in `mode`.
pub fn decode(bytes: &[u8], mode: CpuMode, rip: u64) -> Result<Instruction, EmulationError> {
    let mut decoder = Decoder::try_with_ip(mode.bitness(), bytes, rip, DecoderOptions::NONE)
        .map_err(|_| EmulationError::InvalidInstruction)?;
    let instruction = decoder.decode();
    if instruction.is_invalid() {
        return Err(match decoder.last_error() {
            DecoderError::NoMoreBytes => EmulationError::Truncated,
            _ => EmulationError::InvalidInstruction,
        });
    }
    Ok(instruction)
}

/// How a loaded value is widened into its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extension {
    Zero,
    Sign,
}

/// A validated MMIO operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Load {
        destination: GprOperand,
        size: usize,
        extension: Extension,
    },
    Store {
        value: u64,
        size: usize,
    },
    /// STOS: store, then step the destination index.
    StoreString {
        value: u64,
        size: usize,
        index: GprOperand,
    },
}

fn memory_bytes(size: MemorySize) -> Option<usize> {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => Some(1),
        MemorySize::UInt16 | MemorySize::Int16 => Some(2),
        MemorySize::UInt32 | MemorySize::Int32 => Some(4),
        MemorySize::UInt64 | MemorySize::Int64 => Some(8),
        _ => None,
    }
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn classify(instruction: &Instruction, state: &VcpuState) -> Result<Operation, EmulationError> {
    let mnemonic = instruction.mnemonic();
    let supported = [
        Mnemonic::Mov,
        Mnemonic::Movzx,
        Mnemonic::Movsx,
        Mnemonic::Movsxd,
        Mnemonic::Stosb,
        Mnemonic::Stosw,
        Mnemonic::Stosd,
        Mnemonic::Stosq,
    ];
    if !supported.contains(&mnemonic) {
        return Err(EmulationError::Unsupported(mnemonic));
    }
    let bad = EmulationError::UnsupportedOperands(mnemonic);
    let size = memory_bytes(instruction.memory_size()).ok_or(bad)?;
    let register = |operand| GprOperand::from_iced(instruction.op_register(operand)).ok_or(bad);
    let kinds = (instruction.op0_kind(), instruction.op1_kind());
    match mnemonic {
        Mnemonic::Mov => match kinds {
            (OpKind::Register, OpKind::Memory) => {
                let destination = register(0)?;
                if destination.part.bytes() != size {
                    return Err(bad);
                }
                Ok(Operation::Load {
                    destination,
                    size,
                    extension: Extension::Zero,
                })
            }
            (OpKind::Memory, OpKind::Register) => {
                let source = register(1)?;
                if source.part.bytes() != size {
                    return Err(bad);
                }
                Ok(Operation::Store {
                    value: source.read(state),
                    size,
                })
            }
            (OpKind::Memory, kind) if is_immediate(kind) => Ok(Operation::Store {
                value: instruction.immediate(1),
                size,
            }),
            _ => Err(bad),
        },
        Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => {
            if kinds.1 != OpKind::Memory || kinds.0 != OpKind::Register {
                return Err(bad);
            }
            let extension = if mnemonic == Mnemonic::Movzx {
                Extension::Zero
            } else {
                Extension::Sign
            };
            Ok(Operation::Load {
                destination: register(0)?,
                size,
                extension,
            })
        }
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
            if instruction.has_rep_prefix() || instruction.has_repne_prefix() {
                return Err(bad);
            }
            let part = match size {
                1 => RegisterPart::Low8,
                2 => RegisterPart::Word,
                4 => RegisterPart::Dword,
                _ => RegisterPart::Qword,
            };
            let index_part = match kinds.0 {
                OpKind::MemoryESDI => RegisterPart::Word,
                OpKind::MemoryESEDI => RegisterPart::Dword,
                OpKind::MemoryESRDI => RegisterPart::Qword,
                _ => return Err(bad),
            };
            let value = GprOperand {
                register: Gpr::Rax,
                part,
            }
            .read(state);
            let index = GprOperand {
                register: Gpr::Rdi,
                part: index_part,
            };
            Ok(Operation::StoreString { value, size, index })
        }
        other => Err(EmulationError::Unsupported(other)),
    }
}

fn widen(value: u64, size: usize, extension: Extension) -> u64 {
    let bits = (size * 8) as u32;
    if extension == Extension::Zero || bits >= 64 {
        return value;
    }
    let shift = 64 - bits;
    (((value << shift) as i64) >> shift) as u64
}

/// What an emulated instruction changed in the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emulated {
    /// State groups written (always includes [`Mtd::RIP`]).
    pub changed: Mtd,
    /// Instruction length in bytes.
    pub length: usize,
}

/// Emulates the instruction in `bytes` (fetched at the guest's CS:RIP) that faulted on `gpa`
/// with `access`, against `bus`, updating `state` (registers and RIP). Needs the GPR groups the
/// instruction uses, RIP, RFLAGS (for STOS), and the mode groups (CR0, EFER, CS).
pub fn emulate_mmio(
    bytes: &[u8],
    state: &mut VcpuState,
    gpa: GuestPhys,
    access: MemoryAccess,
    bus: &mut Bus,
) -> Result<Emulated, EmulationError> {
    if access == MemoryAccess::Execute {
        return Err(EmulationError::ExecuteFromMmio(gpa));
    }
    let mode = CpuMode::of(state).map_err(EmulationError::MissingState)?;
    let needed = Mtd::RIP | Mtd::RFLAGS | Mtd::GPR_ACDB | Mtd::GPR_BSD | Mtd::GPR_R8_R15 | Mtd::RSP;
    if !state.mtd.contains(needed) {
        return Err(EmulationError::MissingState(needed.difference(state.mtd)));
    }
    let instruction = decode(bytes, mode, state.rip)?;
    let operation = classify(&instruction, state)?;
    let instruction_access = match operation {
        Operation::Load { .. } => MemoryAccess::Read,
        Operation::Store { .. } | Operation::StoreString { .. } => MemoryAccess::Write,
    };
    if instruction_access != access {
        return Err(EmulationError::AccessMismatch {
            instruction: instruction_access,
            fault: access,
        });
    }
    // Validated: now touch the bus, then the state. Unhandled bus accesses are recorded by
    // the bus (reads give all ones) and do not stop the guest.
    let length = instruction.len();
    let mut changed = Mtd::RIP;
    match operation {
        Operation::Load {
            destination,
            size,
            extension,
        } => {
            let mut data = [0u8; 8];
            let buffer = data
                .get_mut(..size)
                .ok_or(EmulationError::UnsupportedOperands(instruction.mnemonic()))?;
            let _ = bus.read(gpa.0, buffer);
            let value = widen(u64::from_le_bytes(data), size, extension);
            destination.write(state, value);
            changed = changed | group_of(destination.register);
        }
        Operation::Store { value, size } => {
            let _ = bus.write(gpa.0, value.to_le_bytes().get(..size).unwrap_or(&[]));
        }
        Operation::StoreString { value, size, index } => {
            let _ = bus.write(gpa.0, value.to_le_bytes().get(..size).unwrap_or(&[]));
            const RFLAGS_DIRECTION: u64 = 1 << 10;
            let step = size as u64;
            let current = index.read(state);
            let next = if state.rflags & RFLAGS_DIRECTION != 0 {
                current.wrapping_sub(step)
            } else {
                current.wrapping_add(step)
            };
            index.write(state, next);
            changed = changed | group_of(Gpr::Rdi);
        }
    }
    state.rip = mode.advance(state.rip, length as u64);
    Ok(Emulated { changed, length })
}
