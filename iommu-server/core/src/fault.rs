//! Fault reporting (VT-d spec 7.3, fault recording registers 10.4.14, status 10.4.9).
//!
//! Faults are read from the recording registers starting at FSTS.FRI, each cleared by writing
//! its F bit, and formatted as exactly one line (a contract other tools grep for):
//! `iommu: fault bdf=BB:DD.F addr=0x... kind=read|write reason=0xNN (name)`.

use crate::registers::{Capability, FaultStatus, Register32, Register64, VtdRegisters};
use core::fmt;
use iommu_api::{Bdf, FaultReport};

/// Direction of the faulting request (fault record T bit 126: 1 read, 0 write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Read (or atomic) request.
    Read,
    /// Write request (interrupt requests are writes).
    Write,
}

/// One decoded fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// SID, bits 79:64: requester id.
    pub source: Bdf,
    /// FI, bits 63:12: page address of the request (interrupt faults: index in bits 63:48).
    pub address: u64,
    /// T, bit 126.
    pub kind: FaultKind,
    /// FR, bits 103:96: fault reason.
    pub reason: u8,
}

impl FaultRecord {
    /// Decodes the two qwords of a fault recording register; `None` when F (bit 127) is clear.
    pub fn decode(low: u64, high: u64) -> Option<Self> {
        if high >> 63 == 0 {
            return None;
        }
        Some(Self {
            source: Bdf((high & 0xffff) as u16),
            address: low & !0xfff,
            kind: if (high >> 62) & 1 == 1 {
                FaultKind::Read
            } else {
                FaultKind::Write
            },
            reason: ((high >> 32) & 0xff) as u8,
        })
    }

    /// The name of the reason code.
    pub fn reason_name(&self) -> &'static str {
        reason_name(self.reason)
    }

    /// The IPC message for the device's owner.
    pub fn report(&self) -> FaultReport {
        FaultReport {
            device: self.source,
            reason: self.reason,
            kind: u8::from(self.kind == FaultKind::Read),
            reserved: 0,
            address: self.address,
        }
    }
}

impl fmt::Display for FaultRecord {
    /// The one-line fault report (format is a contract).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FaultKind::Read => "read",
            FaultKind::Write => "write",
        };
        write!(
            f,
            "iommu: fault bdf={} addr={:#x} kind={} reason={:#04x} ({})",
            self.source,
            self.address,
            kind,
            self.reason,
            self.reason_name()
        )
    }
}

/// Names of fault reasons: legacy-mode DMA remapping (VT-d spec 7.1.3) and interrupt remapping
/// (7.1.4).
pub fn reason_name(reason: u8) -> &'static str {
    match reason {
        0x01 => "root entry not present",
        0x02 => "context entry not present",
        0x03 => "invalid context entry",
        0x04 => "address beyond address width",
        0x05 => "write not permitted",
        0x06 => "read not permitted",
        0x07 => "paging entry access error",
        0x08 => "root table access error",
        0x09 => "context table access error",
        0x0a => "root entry reserved bits set",
        0x0b => "context entry reserved bits set",
        0x0c => "paging entry reserved bits set",
        0x0d => "request type blocked by context entry",
        0x0e => "output address in interrupt range",
        0x20 => "interrupt request reserved bits set",
        0x21 => "interrupt index beyond table size",
        0x22 => "interrupt remapping entry not present",
        0x23 => "interrupt remapping table access error",
        0x24 => "interrupt remapping entry reserved bits set",
        0x25 => "compatibility format interrupt blocked",
        0x26 => "interrupt source-id verification failed",
        0x27 => "posted interrupt descriptor access error",
        0x30..=0x8f => "scalable-mode translation fault",
        _ => "unknown fault reason",
    }
}

/// What one pass over the fault registers found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSweep {
    /// Records read and cleared.
    pub records: u32,
    /// FSTS.PFO was set (faults were lost); it is cleared.
    pub overflow: bool,
}

/// Reads every pending fault record starting at FSTS.FRI, hands each to `sink`, clears it
/// (write 1 to F), then clears PFO. Reads at most CAP.NFR records, so it always terminates.
pub fn read_and_clear_faults<R: VtdRegisters>(
    registers: &mut R,
    capability: Capability,
    mut sink: impl FnMut(FaultRecord),
) -> FaultSweep {
    let status = FaultStatus::from_bits_retain(registers.read32(Register32::FaultStatus));
    let mut sweep = FaultSweep::default();
    let count = capability.fault_recording_count();
    let fault_offset = capability.fault_recording_offset();
    if status.contains(FaultStatus::PRIMARY_PENDING_FAULT) {
        let mut index = u16::from(status.fault_record_index()) % count;
        for _ in 0..count {
            let record_index = index as u8;
            let high = registers.read64(Register64::FaultRecordHigh {
                fault_offset,
                index: record_index,
            });
            let low = registers.read64(Register64::FaultRecordLow {
                fault_offset,
                index: record_index,
            });
            let Some(record) = FaultRecord::decode(low, high) else {
                break;
            };
            sink(record);
            registers.write64(
                Register64::FaultRecordHigh {
                    fault_offset,
                    index: record_index,
                },
                1 << 63,
            );
            sweep.records += 1;
            index = (index + 1) % count;
        }
    }
    if status.contains(FaultStatus::PRIMARY_FAULT_OVERFLOW) {
        registers.write32(
            Register32::FaultStatus,
            FaultStatus::PRIMARY_FAULT_OVERFLOW.bits(),
        );
        sweep.overflow = true;
    }
    sweep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_is_exact() {
        let record = FaultRecord::decode(0x7654_3210, (1 << 63) | (0x05 << 32) | 0x0018).unwrap();
        assert_eq!(
            std::format!("{record}"),
            "iommu: fault bdf=00:03.0 addr=0x76543000 kind=write reason=0x05 (write not permitted)"
        );
        let read =
            FaultRecord::decode(0x1000, (1 << 63) | (1 << 62) | (0x26 << 32) | 0xff00).unwrap();
        assert_eq!(
            std::format!("{read}"),
            "iommu: fault bdf=ff:00.0 addr=0x1000 kind=read reason=0x26 (interrupt source-id verification failed)"
        );
        assert_eq!(FaultRecord::decode(0x1000, 0x26 << 32), None);
        assert_eq!(reason_name(0x00), "unknown fault reason");
        for reason in (0x01..=0x0e).chain(0x20..=0x27) {
            assert_ne!(
                reason_name(reason),
                "unknown fault reason",
                "reason {reason:#x}"
            );
        }
    }
}
