//! GCMD_REG bits (VT-d spec 10.4.4) and the one way to issue a global command.
//!
//! GCMD is write-only in effect: software reads GSTS, drops the one-shot bits, sets or clears
//! the one bit it wants, writes the result, and waits (bounded) for GSTS to reflect it.

use super::{GlobalStatus, Register32, VtdRegisters};
use crate::clock::{wait_until, Clock};
use bitflags::bitflags;
use iommu_api::IommuError;

bitflags! {
    /// Global command bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GlobalCommand: u32 {
        /// TE, bit 31: enable DMA remapping.
        const TRANSLATION_ENABLE = 1 << 31;
        /// SRTP, bit 30: latch RTADDR_REG as the root table pointer (one-shot).
        const SET_ROOT_TABLE_POINTER = 1 << 30;
        /// SFL, bit 29: set fault log (one-shot).
        const SET_FAULT_LOG = 1 << 29;
        /// EAFL, bit 28: enable advanced fault logging.
        const ENABLE_ADVANCED_FAULT_LOG = 1 << 28;
        /// WBF, bit 27: flush the write buffer (one-shot, needed when CAP.RWBF = 1).
        const WRITE_BUFFER_FLUSH = 1 << 27;
        /// QIE, bit 26: enable queued invalidation.
        const QUEUED_INVALIDATION_ENABLE = 1 << 26;
        /// IRE, bit 25: enable interrupt remapping.
        const INTERRUPT_REMAPPING_ENABLE = 1 << 25;
        /// SIRTP, bit 24: latch IRTA_REG as the interrupt remapping table pointer (one-shot).
        const SET_INTERRUPT_REMAPPING_TABLE_POINTER = 1 << 24;
        /// CFI, bit 23: let compatibility format interrupts through while IR is on.
        const COMPATIBILITY_FORMAT_INTERRUPT = 1 << 23;
    }
}

/// The one-shot command bits that must not be written back from GSTS (10.4.4: mask
/// 0x96FF_FFFF).
const ONE_SHOT: u32 = (1 << 30) | (1 << 29) | (1 << 27) | (1 << 24);

/// Bounded wait for any global command, in clock ticks (nanoseconds): 100 ms.
pub const COMMAND_TIMEOUT: u64 = 100_000_000;

/// Sets (`enable`) or clears one persistent command, or triggers one one-shot command, and
/// waits until GSTS reflects it.
pub fn issue_global_command<R: VtdRegisters, C: Clock>(
    registers: &mut R,
    clock: &mut C,
    command: GlobalCommand,
    enable: bool,
) -> Result<(), IommuError> {
    let status = registers.read32(Register32::GlobalStatus) & !ONE_SHOT;
    let value = if enable {
        status | command.bits()
    } else {
        status & !command.bits()
    };
    registers.write32(Register32::GlobalCommand, value);
    let wanted = GlobalStatus::from_bits_retain(command.bits());
    let done = |status: GlobalStatus| match command {
        // WBFS reads 1 while the flush is in progress.
        GlobalCommand::WRITE_BUFFER_FLUSH => !status.contains(GlobalStatus::WRITE_BUFFER_FLUSH),
        _ if enable => status.contains(wanted),
        _ => !status.intersects(wanted),
    };
    wait_until(clock, COMMAND_TIMEOUT, || {
        done(GlobalStatus::from_bits_retain(
            registers.read32(Register32::GlobalStatus),
        ))
    })
}
