//! General-purpose register access with x86 width semantics (SDM Vol. 1 section 3.4.1.1): an
//! 8- or 16-bit write keeps the other bits, a 32-bit write zero-extends into the upper half,
//! AH/CH/DH/BH are bits 15:8. Also maps iced-x86 register names onto [`Gpr`] and the state
//! group that carries each register, and finds the guest's execution mode.
use iced_x86::Register;
use sluice_abi::vcpu::{Gpr, Mtd, VcpuState};

/// Which part of a 64-bit register an operand names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterPart {
    /// Bits 7:0.
    Low8,
    /// Bits 15:8 (AH, CH, DH, BH).
    High8,
    /// Bits 15:0.
    Word,
    /// Bits 31:0.
    Dword,
    /// Bits 63:0.
    Qword,
}

impl RegisterPart {
    /// Width in bytes.
    pub fn bytes(self) -> usize {
        match self {
            RegisterPart::Low8 | RegisterPart::High8 => 1,
            RegisterPart::Word => 2,
            RegisterPart::Dword => 4,
            RegisterPart::Qword => 8,
        }
    }
}

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GprOperand {
    /// The 64-bit register.
    pub register: Gpr,
    /// The part named.
    pub part: RegisterPart,
}

impl GprOperand {
    /// The operand's value, zero-extended.
    pub fn read(self, state: &VcpuState) -> u64 {
        let full = state.gpr.get(self.register);
        match self.part {
            RegisterPart::Low8 => full & 0xff,
            RegisterPart::High8 => full >> 8 & 0xff,
            RegisterPart::Word => full & 0xffff,
            RegisterPart::Dword => full & 0xffff_ffff,
            RegisterPart::Qword => full,
        }
    }

    /// Writes `value` (its low bits) with x86 merge/zero-extension rules.
    pub fn write(self, state: &mut VcpuState, value: u64) {
        let full = state.gpr.get(self.register);
        let merged = match self.part {
            RegisterPart::Low8 => full & !0xff | value & 0xff,
            RegisterPart::High8 => full & !0xff00 | (value & 0xff) << 8,
            RegisterPart::Word => full & !0xffff | value & 0xffff,
            RegisterPart::Dword => value & 0xffff_ffff,
            RegisterPart::Qword => value,
        };
        state.gpr.set(self.register, merged);
    }

    /// Maps an iced-x86 register to a general-purpose operand; `None` for any other register.
    pub fn from_iced(register: Register) -> Option<GprOperand> {
        let value = register as u32;
        let index_from = |first: Register, count: u32| {
            value
                .checked_sub(first as u32)
                .filter(|&index| index < count)
        };
        let gpr = |index: u32| Gpr::ALL.get(index as usize).copied();
        if let Some(index) = index_from(Register::AL, 20) {
            // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L.
            return match index {
                0..=3 => Some(GprOperand {
                    register: gpr(index)?,
                    part: RegisterPart::Low8,
                }),
                4..=7 => Some(GprOperand {
                    register: gpr(index - 4)?,
                    part: RegisterPart::High8,
                }),
                _ => Some(GprOperand {
                    register: gpr(index - 4)?,
                    part: RegisterPart::Low8,
                }),
            };
        }
        let parts = [
            (Register::AX, RegisterPart::Word),
            (Register::EAX, RegisterPart::Dword),
            (Register::RAX, RegisterPart::Qword),
        ];
        parts.into_iter().find_map(|(first, part)| {
            let index = index_from(first, 16)?;
            Some(GprOperand {
                register: gpr(index)?,
                part,
            })
        })
    }
}

/// The state group that carries `register`.
pub fn group_of(register: Gpr) -> Mtd {
    match register {
        Gpr::Rax | Gpr::Rcx | Gpr::Rdx | Gpr::Rbx => Mtd::GPR_ACDB,
        Gpr::Rsp => Mtd::RSP,
        Gpr::Rbp | Gpr::Rsi | Gpr::Rdi => Mtd::GPR_BSD,
        _ => Mtd::GPR_R8_R15,
    }
}

/// The guest's code size, which decides instruction decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// Real mode, virtual-8086, or a 16-bit protected-mode code segment.
    Bits16,
    /// 32-bit protected mode or compatibility mode.
    Bits32,
    /// 64-bit mode.
    Bits64,
}

impl CpuMode {
    /// The mode from CR0.PE, EFER.LMA, CS.L and CS.D (SDM Vol. 3A section 5.2.1); needs
    /// [`Mtd::CONTROL_REGISTERS`], [`Mtd::EFER`] and [`Mtd::SEGMENT_CS_SS`], else `Err` with
    /// the missing groups.
    pub fn of(state: &VcpuState) -> Result<CpuMode, Mtd> {
        let needed = Mtd::CONTROL_REGISTERS | Mtd::EFER | Mtd::SEGMENT_CS_SS;
        if !state.mtd.contains(needed) {
            return Err(needed.difference(state.mtd));
        }
        const CR0_PROTECTION_ENABLE: u64 = 1;
        const EFER_LONG_MODE_ACTIVE: u64 = 1 << 10;
        const RFLAGS_VIRTUAL_8086: u64 = 1 << 17;
        let attributes = state.cs.attributes;
        Ok(
            if state.cr0 & CR0_PROTECTION_ENABLE == 0 || state.rflags & RFLAGS_VIRTUAL_8086 != 0 {
                CpuMode::Bits16
            } else if state.efer & EFER_LONG_MODE_ACTIVE != 0 && attributes.long_mode() {
                CpuMode::Bits64
            } else if attributes.default_big() {
                CpuMode::Bits32
            } else {
                CpuMode::Bits16
            },
        )
    }

    /// The decoder bitness.
    pub fn bitness(self) -> u32 {
        match self {
            CpuMode::Bits16 => 16,
            CpuMode::Bits32 => 32,
            CpuMode::Bits64 => 64,
        }
    }

    /// RIP after an instruction of `length` bytes: IP and EIP wrap at their width.
    pub fn advance(self, rip: u64, length: u64) -> u64 {
        let next = rip.wrapping_add(length);
        match self {
            CpuMode::Bits16 => next & 0xffff,
            CpuMode::Bits32 => next & 0xffff_ffff,
            CpuMode::Bits64 => next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_rules() {
        let mut state = VcpuState::default();
        state.gpr.set(Gpr::Rax, 0x1122_3344_5566_7788);
        let operand = |register| GprOperand::from_iced(register).unwrap();
        operand(Register::AH).write(&mut state, 0xab);
        assert_eq!(state.gpr.get(Gpr::Rax), 0x1122_3344_5566_ab88);
        operand(Register::AL).write(&mut state, 0x1ff);
        assert_eq!(state.gpr.get(Gpr::Rax), 0x1122_3344_5566_abff);
        operand(Register::AX).write(&mut state, 0xdead_beef);
        assert_eq!(state.gpr.get(Gpr::Rax), 0x1122_3344_5566_beef);
        operand(Register::EAX).write(&mut state, 0xffff_ffff_0000_0001);
        assert_eq!(
            state.gpr.get(Gpr::Rax),
            1,
            "32-bit writes zero the upper half"
        );
        assert_eq!(
            operand(Register::SIL),
            GprOperand {
                register: Gpr::Rsi,
                part: RegisterPart::Low8
            }
        );
        assert_eq!(
            operand(Register::BH),
            GprOperand {
                register: Gpr::Rbx,
                part: RegisterPart::High8
            }
        );
        assert_eq!(
            operand(Register::R15L),
            GprOperand {
                register: Gpr::R15,
                part: RegisterPart::Low8
            }
        );
        assert_eq!(operand(Register::R9W).register, Gpr::R9);
        assert_eq!(
            operand(Register::R13D),
            GprOperand {
                register: Gpr::R13,
                part: RegisterPart::Dword
            }
        );
        assert_eq!(
            operand(Register::R15),
            GprOperand {
                register: Gpr::R15,
                part: RegisterPart::Qword
            }
        );
        assert_eq!(GprOperand::from_iced(Register::EIP), None);
        assert_eq!(GprOperand::from_iced(Register::ES), None);
        assert_eq!(GprOperand::from_iced(Register::XMM0), None);
    }
}
