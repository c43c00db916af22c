//! GSTS_REG bits (VT-d spec 10.4.5).

use bitflags::bitflags;

bitflags! {
    /// Global status: each bit reports the state a GCMD bit asked for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GlobalStatus: u32 {
        /// TES, bit 31: DMA remapping is enabled.
        const TRANSLATION_ENABLED = 1 << 31;
        /// RTPS, bit 30: the root table pointer in RTADDR_REG was latched (cleared when SRTP is
        /// written, set when the operation completes).
        const ROOT_TABLE_POINTER = 1 << 30;
        /// FLS, bit 29: fault log pointer set (advanced fault logging).
        const FAULT_LOG = 1 << 29;
        /// AFLS, bit 28: advanced fault logging enabled.
        const ADVANCED_FAULT_LOG = 1 << 28;
        /// WBFS, bit 27: write buffer flush still in progress (clear when done).
        const WRITE_BUFFER_FLUSH = 1 << 27;
        /// QIES, bit 26: queued invalidation enabled.
        const QUEUED_INVALIDATION = 1 << 26;
        /// IRES, bit 25: interrupt remapping enabled.
        const INTERRUPT_REMAPPING = 1 << 25;
        /// IRTPS, bit 24: the interrupt remapping table pointer in IRTA_REG was latched.
        const INTERRUPT_REMAPPING_TABLE_POINTER = 1 << 24;
        /// CFIS, bit 23: compatibility format interrupts pass through (when IR is enabled).
        const COMPATIBILITY_FORMAT_INTERRUPT = 1 << 23;
    }
}
