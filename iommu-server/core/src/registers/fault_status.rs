//! FSTS_REG bits (VT-d spec 10.4.9).

use bitflags::bitflags;

bitflags! {
    /// Fault status. PFO, AFO, IQE, ICE and ITE are write-1-to-clear; PPF is read-only and
    /// reflects whether any fault recording register has its F bit set.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct FaultStatus: u32 {
        /// PFO, bit 0: primary fault overflow (a fault was dropped, all records were full).
        const PRIMARY_FAULT_OVERFLOW = 1 << 0;
        /// PPF, bit 1: primary pending fault (at least one record holds a fault).
        const PRIMARY_PENDING_FAULT = 1 << 1;
        /// AFO, bit 2: advanced fault overflow.
        const ADVANCED_FAULT_OVERFLOW = 1 << 2;
        /// APF, bit 3: advanced pending fault.
        const ADVANCED_PENDING_FAULT = 1 << 3;
        /// IQE, bit 4: invalidation queue error (invalid descriptor at IQH).
        const INVALIDATION_QUEUE_ERROR = 1 << 4;
        /// ICE, bit 5: invalidation completion error (device-TLB).
        const INVALIDATION_COMPLETION_ERROR = 1 << 5;
        /// ITE, bit 6: invalidation time-out error (device-TLB).
        const INVALIDATION_TIMEOUT_ERROR = 1 << 6;
        /// FRI, bits 15:8: index of the first pending fault record (read with
        /// [`FaultStatus::fault_record_index`]).
        const _ = 0xff << 8;
    }
}

impl FaultStatus {
    /// FRI, bits 15:8.
    pub fn fault_record_index(self) -> u8 {
        ((self.bits() >> 8) & 0xff) as u8
    }
    /// The write-1-to-clear error bits.
    pub const ERRORS: FaultStatus = FaultStatus::PRIMARY_FAULT_OVERFLOW
        .union(FaultStatus::ADVANCED_FAULT_OVERFLOW)
        .union(FaultStatus::INVALIDATION_QUEUE_ERROR)
        .union(FaultStatus::INVALIDATION_COMPLETION_ERROR)
        .union(FaultStatus::INVALIDATION_TIMEOUT_ERROR);
}
