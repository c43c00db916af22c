//! Register-based invalidation (VT-d spec 6.5.1, registers CCMD 10.4.7 and IOTLB 10.4.8), for
//! units without queued invalidation (ECAP.QI = 0). Interrupt entry cache invalidation has no
//! register interface, so such units cannot use interrupt remapping.

use super::descriptor::{ContextGranularity, IotlbGranularity};
use crate::clock::{wait_until, Clock};
use crate::registers::{Register64, VtdRegisters};
use iommu_api::IommuError;

/// Bounded wait for a register-based invalidation, in nanoseconds: 100 ms.
pub const REGISTER_TIMEOUT: u64 = 100_000_000;

/// CCMD_REG.ICC, bit 63: invalidate context cache (hardware clears it when done).
pub const CONTEXT_COMMAND_INVALIDATE: u64 = 1 << 63;
/// IOTLB_REG.IVT, bit 63: invalidate IOTLB (hardware clears it when done).
pub const IOTLB_INVALIDATE: u64 = 1 << 63;

/// Encodes CCMD_REG: ICC, CIRG (62:61), FM (33:32), SID (31:16), DID (15:0).
pub fn context_command(granularity: ContextGranularity) -> u64 {
    CONTEXT_COMMAND_INVALIDATE
        | match granularity {
            ContextGranularity::Global => 1 << 61,
            ContextGranularity::Domain(domain) => (2 << 61) | u64::from(domain.0),
            ContextGranularity::Device {
                domain,
                source,
                function_mask,
            } => {
                (3 << 61)
                    | (u64::from(function_mask & 3) << 32)
                    | (u64::from(source.0) << 16)
                    | u64::from(domain.0)
            }
        }
}

/// Encodes (IVA_REG, IOTLB_REG): IVT, IIRG (61:60), DR (49), DW (48), DID (47:32); IVA holds
/// ADDR (63:12), IH (6), AM (5:0).
pub fn iotlb_command(
    granularity: IotlbGranularity,
    drain_reads: bool,
    drain_writes: bool,
) -> (u64, u64) {
    let drains = (u64::from(drain_reads) << 49) | (u64::from(drain_writes) << 48);
    match granularity {
        IotlbGranularity::Global => (0, IOTLB_INVALIDATE | (1 << 60) | drains),
        IotlbGranularity::Domain(domain) => (
            0,
            IOTLB_INVALIDATE | (2 << 60) | drains | (u64::from(domain.0) << 32),
        ),
        IotlbGranularity::Pages {
            domain,
            address,
            address_mask,
            invalidation_hint,
        } => (
            (address.0 & !0xfff)
                | (u64::from(invalidation_hint) << 6)
                | u64::from(address_mask & 0x3f),
            IOTLB_INVALIDATE | (3 << 60) | drains | (u64::from(domain.0) << 32),
        ),
    }
}

/// Invalidates the context cache through CCMD_REG and waits for ICC to clear.
pub fn invalidate_context<R: VtdRegisters, C: Clock>(
    registers: &mut R,
    clock: &mut C,
    granularity: ContextGranularity,
) -> Result<(), IommuError> {
    registers.write64(Register64::ContextCommand, context_command(granularity));
    wait_until(clock, REGISTER_TIMEOUT, || {
        registers.read64(Register64::ContextCommand) & CONTEXT_COMMAND_INVALIDATE == 0
    })
}

/// Invalidates the IOTLB through IVA_REG/IOTLB_REG and waits for IVT to clear.
pub fn invalidate_iotlb<R: VtdRegisters, C: Clock>(
    registers: &mut R,
    clock: &mut C,
    iotlb_offset: u16,
    granularity: IotlbGranularity,
    drain_reads: bool,
    drain_writes: bool,
) -> Result<(), IommuError> {
    let (address, command) = iotlb_command(granularity, drain_reads, drain_writes);
    if matches!(granularity, IotlbGranularity::Pages { .. }) {
        registers.write64(Register64::InvalidateAddress { iotlb_offset }, address);
    }
    registers.write64(Register64::IotlbInvalidate { iotlb_offset }, command);
    wait_until(clock, REGISTER_TIMEOUT, || {
        registers.read64(Register64::IotlbInvalidate { iotlb_offset }) & IOTLB_INVALIDATE == 0
    })
}
