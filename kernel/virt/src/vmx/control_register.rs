//! Control-register access exits (basic exit reason 28) the kernel handles itself.
//!
//! The CR0 / CR4 bits fixed in VMX operation are owned by the host through the guest/host
//! masks ([`super::controls::ControlRegisterPolicy`]); a guest MOV to CR0 / CR4, CLTS or LMSW
//! that changes one of them exits here. The exit message has no reason for it, so the kernel
//! emulates the write: the read shadow takes the guest's value, the real register the value
//! with the fixed bits forced, RIP moves past the instruction. A write the real CPU would
//! refuse becomes #GP(0) in the guest. Other accesses (CR3, CR8, MOV from CR) are not handled
//! here: the kernel forwards them to the VMM as an `Unknown` exit.
use heapless::Vec;
use sluice_abi::vcpu::Gpr;

use super::control_bits::EntryControls;
use super::controls::ControlRegisterPolicy;
use super::entry::VmcsWrite;
use super::fields::VmcsField;
use super::{read_field, VmcsRead};
use crate::error::ExitError;
use crate::state::SavedRegisters;

/// CR0.PE, CR0.TS, CR0.PG (SDM Vol. 3A section 2.5).
const CR0_PE: u64 = 1 << 0;
const CR0_TS: u64 = 1 << 3;
const CR0_PG: u64 = 1 << 31;
/// IA32_EFER.LME and LMA.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// CS access rights bit 13: L, 64-bit code (SDM Vol. 3C Table 25-2).
const ACCESS_RIGHTS_LONG: u64 = 1 << 13;
/// #GP(0) as VM-entry interruption information: vector 13, hardware exception, error code.
const INJECT_GENERAL_PROTECTION: u64 = 13 | 3 << 8 | 1 << 11 | 1 << 31;

/// A control-register access, decoded from the exit qualification (SDM Vol. 3C Table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRegisterAccess {
    /// MOV to CRn from a general-purpose register.
    MoveTo {
        /// Control register number.
        register: u8,
        /// Source register.
        source: Gpr,
    },
    /// MOV from CRn to a general-purpose register.
    MoveFrom {
        /// Control register number.
        register: u8,
        /// Destination register.
        destination: Gpr,
    },
    /// CLTS.
    Clts,
    /// LMSW with this 16-bit source.
    Lmsw {
        /// The operand.
        source: u16,
    },
}

impl ControlRegisterAccess {
    /// Decodes bits 3:0 (register), 5:4 (access type), 11:8 (GPR), 31:16 (LMSW source).
    pub fn decode(qualification: u64) -> ControlRegisterAccess {
        let register = (qualification & 0xf) as u8;
        let gpr = Gpr::ALL
            .get(((qualification >> 8) & 0xf) as usize)
            .copied()
            .unwrap_or(Gpr::Rax);
        match (qualification >> 4) & 3 {
            0 => ControlRegisterAccess::MoveTo {
                register,
                source: gpr,
            },
            1 => ControlRegisterAccess::MoveFrom {
                register,
                destination: gpr,
            },
            2 => ControlRegisterAccess::Clts,
            _ => ControlRegisterAccess::Lmsw {
                source: (qualification >> 16) as u16,
            },
        }
    }
}

/// What the kernel does with a control-register access exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRegisterOutcome {
    /// Emulated (or #GP(0) injected): VMWRITE these and resume without involving the VMM.
    Handled(Vec<VmcsWrite, 12>),
    /// Not the kernel's: forward the exit to the VMM.
    Forward,
}

fn read<V: VmcsRead + ?Sized>(vmcs: &V, field: VmcsField) -> Result<u64, ExitError> {
    read_field(vmcs, field, ExitError::FieldUnreadable)
}

fn push(writes: &mut Vec<VmcsWrite, 12>, field: VmcsField, value: u64) {
    // At most 8 writes are produced below; the capacity is 12.
    let _ = writes.push(VmcsWrite {
        field,
        value: field.truncate(value),
    });
}

/// Handles exit reason 28 for the current VMCS.
pub fn handle_control_register_access<V: VmcsRead + ?Sized>(
    vmcs: &V,
    saved: &SavedRegisters,
    policy: &ControlRegisterPolicy,
) -> Result<ControlRegisterOutcome, ExitError> {
    let access = ControlRegisterAccess::decode(read(vmcs, VmcsField::ExitQualification)?);
    let operand = |gpr: Gpr| -> Result<u64, ExitError> {
        if gpr == Gpr::Rsp {
            read(vmcs, VmcsField::GuestRsp)
        } else {
            Ok(saved.gpr.get(gpr))
        }
    };
    let visible_cr0 = || -> Result<u64, ExitError> {
        Ok(ControlRegisterPolicy::visible(
            read(vmcs, VmcsField::GuestCr0)?,
            read(vmcs, VmcsField::Cr0ReadShadow)?,
            read(vmcs, VmcsField::Cr0GuestHostMask)?,
        ))
    };
    let (register, value) = match access {
        ControlRegisterAccess::MoveTo { register, source } if register == 0 || register == 4 => {
            (register, operand(source)?)
        }
        ControlRegisterAccess::Clts => (0, visible_cr0()? & !CR0_TS),
        ControlRegisterAccess::Lmsw { source } => {
            // LMSW loads PE, MP, EM, TS and cannot clear PE (SDM Vol. 2A LMSW).
            let old = visible_cr0()?;
            (0, (old & !0xf) | u64::from(source & 0xf) | (old & CR0_PE))
        }
        _ => return Ok(ControlRegisterOutcome::Forward),
    };
    let mut writes = Vec::new();
    let fixed = if register == 0 {
        policy.cr0
    } else {
        policy.cr4
    };
    let paging_without_protection = register == 0 && value & CR0_PG != 0 && value & CR0_PE == 0;
    if value & !fixed.fixed1 != 0 || paging_without_protection {
        push(
            &mut writes,
            VmcsField::EntryInterruptionInfo,
            INJECT_GENERAL_PROTECTION,
        );
        push(&mut writes, VmcsField::EntryExceptionErrorCode, 0);
        return Ok(ControlRegisterOutcome::Handled(writes));
    }
    if register == 0 {
        let old = visible_cr0()?;
        push(&mut writes, VmcsField::GuestCr0, policy.guest_cr0(value));
        push(&mut writes, VmcsField::Cr0ReadShadow, value);
        if (old ^ value) & CR0_PG != 0 {
            // Turning paging on or off with EFER.LME set enters or leaves IA-32e mode: the
            // CPU would update EFER.LMA, so the emulation does (SDM Vol. 3A section 10.8.5).
            let efer = read(vmcs, VmcsField::GuestEfer)?;
            if efer & EFER_LME != 0 {
                let entry = read(vmcs, VmcsField::EntryControls)?;
                let long_mode = u64::from(EntryControls::IA32E_MODE_GUEST.bits());
                let (efer, entry) = if value & CR0_PG != 0 {
                    (efer | EFER_LMA, entry | long_mode)
                } else {
                    (efer & !EFER_LMA, entry & !long_mode)
                };
                push(&mut writes, VmcsField::GuestEfer, efer);
                push(&mut writes, VmcsField::EntryControls, entry);
            }
        }
    } else {
        push(&mut writes, VmcsField::GuestCr4, policy.guest_cr4(value));
        push(&mut writes, VmcsField::Cr4ReadShadow, value);
    }
    let length = read(vmcs, VmcsField::ExitInstructionLength)?;
    if !(1..=15).contains(&length) {
        return Err(ExitError::BadInstructionLength {
            exit_code: 28,
            length,
        });
    }
    let rip = read(vmcs, VmcsField::GuestRip)?.wrapping_add(length);
    let long_code = read(vmcs, VmcsField::GuestCsAccessRights)? & ACCESS_RIGHTS_LONG != 0;
    push(
        &mut writes,
        VmcsField::GuestRip,
        if long_code { rip } else { rip & 0xffff_ffff },
    );
    // Completing the instruction ends an STI / MOV SS shadow (SDM Vol. 3A section 6.8.3).
    let interruptibility = read(vmcs, VmcsField::GuestInterruptibility)?;
    if interruptibility & 0b11 != 0 {
        push(
            &mut writes,
            VmcsField::GuestInterruptibility,
            interruptibility & !0b11,
        );
    }
    Ok(ControlRegisterOutcome::Handled(writes))
}
