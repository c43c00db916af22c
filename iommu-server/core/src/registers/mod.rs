//! The VT-d remapping unit's registers (VT-d spec 10.4) behind one trait.
//!
//! Offsets are typed by width: [`Register32`] and [`Register64`]. The IOTLB registers sit at an
//! offset the unit reports in ECAP.IRO, the fault recording registers at CAP.FRO, so those
//! variants carry the offset. A hardware implementation maps the unit's MMIO page and uses
//! volatile accesses; [`crate::fake::FakeVtd`] is the behavioural model used in tests.

pub mod capability;
pub mod command;
pub mod extended_capability;
pub mod fault_status;
pub mod status;

pub use capability::Capability;
pub use command::GlobalCommand;
pub use extended_capability::ExtendedCapability;
pub use fault_status::FaultStatus;
pub use status::GlobalStatus;

/// 32-bit registers (VT-d spec 10.4, table "Register Address Map").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register32 {
    /// VER_REG, 0x000 (10.4.1): architecture version, major in bits 7:4, minor in 3:0.
    Version,
    /// GCMD_REG, 0x018 (10.4.4): global command.
    GlobalCommand,
    /// GSTS_REG, 0x01C (10.4.5): global status.
    GlobalStatus,
    /// FSTS_REG, 0x034 (10.4.9): fault status.
    FaultStatus,
    /// FECTL_REG, 0x038 (10.4.10): fault event control (IM bit 31, IP bit 30).
    FaultEventControl,
    /// FEDATA_REG, 0x03C (10.4.11): fault event interrupt data.
    FaultEventData,
    /// FEADDR_REG, 0x040 (10.4.12): fault event interrupt address.
    FaultEventAddress,
    /// FEUADDR_REG, 0x044 (10.4.13): fault event interrupt upper address.
    FaultEventUpperAddress,
    /// ICS_REG, 0x09C (10.4.26): invalidation completion status (IWC bit 0).
    InvalidationCompletionStatus,
}

/// 64-bit registers (VT-d spec 10.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register64 {
    /// CAP_REG, 0x008 (10.4.2).
    Capability,
    /// ECAP_REG, 0x010 (10.4.3).
    ExtendedCapability,
    /// RTADDR_REG, 0x020 (10.4.6): root table address.
    RootTableAddress,
    /// CCMD_REG, 0x028 (10.4.7): context command (register-based invalidation).
    ContextCommand,
    /// IQH_REG, 0x080 (10.4.22): invalidation queue head.
    InvalidationQueueHead,
    /// IQT_REG, 0x088 (10.4.23): invalidation queue tail.
    InvalidationQueueTail,
    /// IQA_REG, 0x090 (10.4.24): invalidation queue address.
    InvalidationQueueAddress,
    /// IQERCD_REG, 0x0B0 (10.4.31): invalidation queue error record.
    InvalidationQueueErrorRecord,
    /// IRTA_REG, 0x0B8 (10.4.32): interrupt remapping table address.
    InterruptRemappingTableAddress,
    /// IVA_REG at ECAP.IRO (10.4.8.2): invalidate address for page-selective IOTLB flushes.
    InvalidateAddress {
        /// IOTLB register offset from ECAP.IRO (bytes).
        iotlb_offset: u16,
    },
    /// IOTLB_REG at ECAP.IRO + 8 (10.4.8.1): IOTLB invalidate.
    IotlbInvalidate {
        /// IOTLB register offset from ECAP.IRO (bytes).
        iotlb_offset: u16,
    },
    /// FRCD_REG low half (10.4.14): bits 63:0 of fault record `index`, at CAP.FRO + 16 * index.
    FaultRecordLow {
        /// Fault recording register offset from CAP.FRO (bytes).
        fault_offset: u16,
        /// Which record.
        index: u8,
    },
    /// FRCD_REG high half (10.4.14): bits 127:64 of fault record `index`.
    FaultRecordHigh {
        /// Fault recording register offset from CAP.FRO (bytes).
        fault_offset: u16,
        /// Which record.
        index: u8,
    },
}

impl Register32 {
    /// Byte offset from the unit's register base.
    pub const fn offset(self) -> usize {
        match self {
            Register32::Version => 0x000,
            Register32::GlobalCommand => 0x018,
            Register32::GlobalStatus => 0x01c,
            Register32::FaultStatus => 0x034,
            Register32::FaultEventControl => 0x038,
            Register32::FaultEventData => 0x03c,
            Register32::FaultEventAddress => 0x040,
            Register32::FaultEventUpperAddress => 0x044,
            Register32::InvalidationCompletionStatus => 0x09c,
        }
    }
}

impl Register64 {
    /// Byte offset from the unit's register base.
    pub const fn offset(self) -> usize {
        match self {
            Register64::Capability => 0x008,
            Register64::ExtendedCapability => 0x010,
            Register64::RootTableAddress => 0x020,
            Register64::ContextCommand => 0x028,
            Register64::InvalidationQueueHead => 0x080,
            Register64::InvalidationQueueTail => 0x088,
            Register64::InvalidationQueueAddress => 0x090,
            Register64::InvalidationQueueErrorRecord => 0x0b0,
            Register64::InterruptRemappingTableAddress => 0x0b8,
            Register64::InvalidateAddress { iotlb_offset } => iotlb_offset as usize,
            Register64::IotlbInvalidate { iotlb_offset } => iotlb_offset as usize + 8,
            Register64::FaultRecordLow {
                fault_offset,
                index,
            } => fault_offset as usize + 16 * index as usize,
            Register64::FaultRecordHigh {
                fault_offset,
                index,
            } => fault_offset as usize + 16 * index as usize + 8,
        }
    }
}

/// Access to one remapping unit's registers. Reads take `&mut self` because reading hardware
/// registers is an action (and the fake updates state on access).
pub trait VtdRegisters {
    /// Reads a 32-bit register.
    fn read32(&mut self, register: Register32) -> u32;
    /// Writes a 32-bit register.
    fn write32(&mut self, register: Register32, value: u32);
    /// Reads a 64-bit register.
    fn read64(&mut self, register: Register64) -> u64;
    /// Writes a 64-bit register.
    fn write64(&mut self, register: Register64, value: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_register_map() {
        assert_eq!(Register32::GlobalStatus.offset(), 0x1c);
        assert_eq!(Register64::InterruptRemappingTableAddress.offset(), 0xb8);
        assert_eq!(
            Register64::IotlbInvalidate { iotlb_offset: 0xf0 }.offset(),
            0xf8
        );
        assert_eq!(
            Register64::FaultRecordHigh {
                fault_offset: 0x220,
                index: 1
            }
            .offset(),
            0x238
        );
    }
}
