//! Config-space register offsets and bits of the common header and of every capability this
//! crate understands, each citing its spec section.

use bitflags::bitflags;

/// Type 0/1 common header (PCIe Base spec 6.0 section 7.5.1.1).
pub mod header {
    /// Vendor ID (16 bits); 0xffff means no function.
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command register (16 bits), section 7.5.1.1.3.
    pub const COMMAND: u16 = 0x04;
    /// Status register (16 bits), section 7.5.1.1.4.
    pub const STATUS: u16 = 0x06;
    /// Revision ID (8 bits).
    pub const REVISION: u16 = 0x08;
    /// Programming interface (8 bits), then subclass and base class.
    pub const PROG_IF: u16 = 0x09;
    /// Cache line size (8 bits).
    pub const CACHE_LINE_SIZE: u16 = 0x0c;
    /// Latency timer (8 bits).
    pub const LATENCY_TIMER: u16 = 0x0d;
    /// Header type (8 bits): layout in bits 6:0, multi-function in bit 7 (section 7.5.1.1.9).
    pub const HEADER_TYPE: u16 = 0x0e;
    /// BIST (8 bits).
    pub const BIST: u16 = 0x0f;
    /// First BAR (section 7.5.1.2.1); BAR n is at 0x10 + 4n.
    pub const BAR0: u16 = 0x10;
    /// Capabilities pointer (8 bits), section 7.5.1.1.11.
    pub const CAPABILITIES_POINTER: u16 = 0x34;
    /// Interrupt line (8 bits).
    pub const INTERRUPT_LINE: u16 = 0x3c;
    /// Interrupt pin (8 bits).
    pub const INTERRUPT_PIN: u16 = 0x3d;
    /// Header type field value: type 0 (endpoint).
    pub const TYPE_ENDPOINT: u8 = 0;
    /// Header type field value: type 1 (PCI-to-PCI bridge).
    pub const TYPE_BRIDGE: u8 = 1;
    /// Header type field value: type 2 (CardBus bridge).
    pub const TYPE_CARDBUS: u8 = 2;
    /// Multi-function bit of the header type register.
    pub const MULTI_FUNCTION: u8 = 0x80;
}

/// Type 0 header (PCIe Base spec 6.0 section 7.5.1.2).
pub mod type0 {
    /// Subsystem vendor ID.
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
    /// Subsystem ID.
    pub const SUBSYSTEM_ID: u16 = 0x2e;
    /// Expansion ROM base address, section 7.5.1.2.4.
    pub const EXPANSION_ROM: u16 = 0x30;
    /// Number of BARs in a type 0 header.
    pub const BAR_COUNT: u8 = 6;
}

/// Type 1 header (PCIe Base spec 6.0 section 7.5.1.3).
pub mod type1 {
    /// Primary bus number.
    pub const PRIMARY_BUS: u16 = 0x18;
    /// Secondary bus number.
    pub const SECONDARY_BUS: u16 = 0x19;
    /// Subordinate bus number.
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    /// Secondary latency timer.
    pub const SECONDARY_LATENCY: u16 = 0x1b;
    /// I/O base and limit.
    pub const IO_BASE: u16 = 0x1c;
    /// Secondary status.
    pub const SECONDARY_STATUS: u16 = 0x1e;
    /// Memory base and limit.
    pub const MEMORY_BASE: u16 = 0x20;
    /// Prefetchable memory base and limit.
    pub const PREFETCHABLE_BASE: u16 = 0x24;
    /// Prefetchable base, upper 32 bits.
    pub const PREFETCHABLE_BASE_UPPER: u16 = 0x28;
    /// Prefetchable limit, upper 32 bits.
    pub const PREFETCHABLE_LIMIT_UPPER: u16 = 0x2c;
    /// I/O base and limit, upper 16 bits.
    pub const IO_UPPER: u16 = 0x30;
    /// Expansion ROM base address of a bridge, section 7.5.1.3.12.
    pub const EXPANSION_ROM: u16 = 0x38;
    /// Bridge control (16 bits), section 7.5.1.3.13.
    pub const BRIDGE_CONTROL: u16 = 0x3e;
    /// Number of BARs in a type 1 header.
    pub const BAR_COUNT: u8 = 2;
}

bitflags! {
    /// Command register bits (PCIe Base spec 6.0 section 7.5.1.1.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Command: u16 {
        /// I/O Space Enable: respond to I/O accesses in the I/O BARs.
        const IO_SPACE = 1 << 0;
        /// Memory Space Enable: respond to memory accesses in the memory BARs.
        const MEMORY_SPACE = 1 << 1;
        /// Bus Master Enable: the function may issue memory requests (DMA, MSI).
        const BUS_MASTER = 1 << 2;
        /// Special Cycle Enable (conventional PCI).
        const SPECIAL_CYCLES = 1 << 3;
        /// Memory Write and Invalidate (conventional PCI).
        const MEMORY_WRITE_INVALIDATE = 1 << 4;
        /// VGA Palette Snoop (conventional PCI).
        const VGA_PALETTE_SNOOP = 1 << 5;
        /// Parity Error Response.
        const PARITY_ERROR_RESPONSE = 1 << 6;
        /// IDSEL stepping (conventional PCI).
        const STEPPING = 1 << 7;
        /// SERR# Enable.
        const SERR = 1 << 8;
        /// Fast Back-to-Back Transactions Enable (conventional PCI).
        const FAST_BACK_TO_BACK = 1 << 9;
        /// Interrupt Disable: INTx messages off.
        const INTX_DISABLE = 1 << 10;
    }
}

bitflags! {
    /// Status register bits (PCIe Base spec 6.0 section 7.5.1.1.4).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Status: u16 {
        /// Immediate Readiness.
        const IMMEDIATE_READINESS = 1 << 0;
        /// Interrupt Status (INTx pending).
        const INTERRUPT_STATUS = 1 << 3;
        /// Capabilities List: the capabilities pointer at 0x34 is valid.
        const CAPABILITIES_LIST = 1 << 4;
        /// 66 MHz capable (conventional PCI).
        const MHZ66 = 1 << 5;
        /// Fast back-to-back capable (conventional PCI).
        const FAST_BACK_TO_BACK = 1 << 7;
        /// Master Data Parity Error (RW1C).
        const MASTER_DATA_PARITY_ERROR = 1 << 8;
        /// Signaled Target Abort (RW1C).
        const SIGNALED_TARGET_ABORT = 1 << 11;
        /// Received Target Abort (RW1C).
        const RECEIVED_TARGET_ABORT = 1 << 12;
        /// Received Master Abort (RW1C).
        const RECEIVED_MASTER_ABORT = 1 << 13;
        /// Signaled System Error (RW1C).
        const SIGNALED_SYSTEM_ERROR = 1 << 14;
        /// Detected Parity Error (RW1C).
        const DETECTED_PARITY_ERROR = 1 << 15;
    }
}

impl Status {
    /// The write-1-to-clear error bits.
    pub const RW1C: Status = Status::MASTER_DATA_PARITY_ERROR
        .union(Status::SIGNALED_TARGET_ABORT)
        .union(Status::RECEIVED_TARGET_ABORT)
        .union(Status::RECEIVED_MASTER_ABORT)
        .union(Status::SIGNALED_SYSTEM_ERROR)
        .union(Status::DETECTED_PARITY_ERROR);
}

bitflags! {
    /// Bridge Control register bits (PCIe Base spec 6.0 section 7.5.1.3.13).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BridgeControl: u16 {
        /// Parity Error Response Enable.
        const PARITY_ERROR_RESPONSE = 1 << 0;
        /// SERR# Enable.
        const SERR = 1 << 1;
        /// ISA Enable.
        const ISA = 1 << 2;
        /// VGA Enable.
        const VGA = 1 << 3;
        /// VGA 16-bit decode.
        const VGA_16BIT = 1 << 4;
        /// Master Abort Mode (conventional PCI).
        const MASTER_ABORT_MODE = 1 << 5;
        /// Secondary Bus Reset: while set, the secondary interface is held in reset.
        const SECONDARY_BUS_RESET = 1 << 6;
    }
}

/// Capability IDs (PCI Code and ID Assignment spec 1.11 section 2).
pub mod capability_id {
    /// PCI Power Management.
    pub const POWER_MANAGEMENT: u8 = 0x01;
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: u8 = 0x09;
    /// Debug port.
    pub const DEBUG_PORT: u8 = 0x0a;
    /// Bridge subsystem vendor ID.
    pub const BRIDGE_SUBSYSTEM: u8 = 0x0d;
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// PCI Express.
    pub const PCI_EXPRESS: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
    /// SATA configuration.
    pub const SATA: u8 = 0x12;
    /// Advanced Features (AF FLR).
    pub const ADVANCED_FEATURES: u8 = 0x13;
    /// Standard Hot-Plug Controller.
    pub const SHPC: u8 = 0x0c;
}

/// Extended capability IDs (PCI Code and ID Assignment spec 1.11 section 3).
pub mod extended_capability_id {
    /// Advanced Error Reporting.
    pub const AER: u16 = 0x0001;
    /// Virtual Channel.
    pub const VIRTUAL_CHANNEL: u16 = 0x0002;
    /// Device Serial Number.
    pub const DEVICE_SERIAL_NUMBER: u16 = 0x0003;
    /// Power Budgeting.
    pub const POWER_BUDGETING: u16 = 0x0004;
    /// Vendor-specific extended capability.
    pub const VENDOR_SPECIFIC: u16 = 0x000b;
    /// Access Control Services.
    pub const ACS: u16 = 0x000d;
    /// Alternative Routing-ID Interpretation.
    pub const ARI: u16 = 0x000e;
    /// Single Root I/O Virtualization.
    pub const SRIOV: u16 = 0x0010;
    /// Latency Tolerance Reporting.
    pub const LTR: u16 = 0x0018;
    /// L1 PM Substates.
    pub const L1_SUBSTATES: u16 = 0x001e;
}

/// Power Management capability registers (PCI Bus Power Management spec 1.2 section 3.2).
pub mod power_management {
    /// PMC: capabilities (16 bits).
    pub const CAPABILITIES: u16 = 0x02;
    /// PMCSR: control/status (16 bits), section 3.2.4.
    pub const CONTROL_STATUS: u16 = 0x04;
    /// PMCSR PowerState field (bits 1:0): 0 = D0, 3 = D3hot.
    pub const POWER_STATE_MASK: u16 = 0x3;
    /// PMCSR No_Soft_Reset: set = D3hot->D0 does not reset the function.
    pub const NO_SOFT_RESET: u16 = 1 << 3;
    /// PMCSR PME_En.
    pub const PME_ENABLE: u16 = 1 << 8;
    /// PMCSR PME_Status (RW1C).
    pub const PME_STATUS: u16 = 1 << 15;
    /// D0.
    pub const STATE_D0: u16 = 0;
    /// D3hot.
    pub const STATE_D3HOT: u16 = 3;
}

/// MSI capability registers (PCIe Base spec 6.0 section 7.7.1).
pub mod msi {
    /// Message Control (16 bits).
    pub const CONTROL: u16 = 0x02;
    /// Message Address (low 32 bits).
    pub const ADDRESS_LOW: u16 = 0x04;
    /// Message Upper Address (64-bit capable functions only).
    pub const ADDRESS_HIGH: u16 = 0x08;
    /// Control: MSI Enable.
    pub const ENABLE: u16 = 1 << 0;
    /// Control: Multiple Message Capable (bits 3:1, log2 of vectors).
    pub const MULTIPLE_MESSAGE_CAPABLE_SHIFT: u16 = 1;
    /// Control: Multiple Message Enable (bits 6:4, log2 of vectors).
    pub const MULTIPLE_MESSAGE_ENABLE_SHIFT: u16 = 4;
    /// Control: 64-bit Address Capable.
    pub const ADDRESS_64: u16 = 1 << 7;
    /// Control: Per-Vector Masking Capable.
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// MSI-X capability registers (PCIe Base spec 6.0 section 7.7.2).
pub mod msix {
    /// Message Control (16 bits).
    pub const CONTROL: u16 = 0x02;
    /// Table Offset / Table BIR (32 bits).
    pub const TABLE: u16 = 0x04;
    /// PBA Offset / PBA BIR (32 bits).
    pub const PBA: u16 = 0x08;
    /// Control: Table Size field (bits 10:0, N-1).
    pub const TABLE_SIZE_MASK: u16 = 0x7ff;
    /// Control: Function Mask.
    pub const FUNCTION_MASK: u16 = 1 << 14;
    /// Control: MSI-X Enable.
    pub const ENABLE: u16 = 1 << 15;
    /// BIR field of the table/PBA registers (bits 2:0).
    pub const BIR_MASK: u32 = 0x7;
    /// Size of one table entry (section 7.7.2.5).
    pub const ENTRY_SIZE: u32 = 16;
}

/// PCI Express capability registers (PCIe Base spec 6.0 section 7.5.3).
pub mod pcie {
    /// PCI Express Capabilities register (16 bits), section 7.5.3.2.
    pub const CAPABILITIES: u16 = 0x02;
    /// Device Capabilities (32 bits), section 7.5.3.3.
    pub const DEVICE_CAPABILITIES: u16 = 0x04;
    /// Device Control (16 bits), section 7.5.3.4.
    pub const DEVICE_CONTROL: u16 = 0x08;
    /// Device Status (16 bits), section 7.5.3.5.
    pub const DEVICE_STATUS: u16 = 0x0a;
    /// Link Capabilities (32 bits).
    pub const LINK_CAPABILITIES: u16 = 0x0c;
    /// Link Control (16 bits).
    pub const LINK_CONTROL: u16 = 0x10;
    /// Link Status (16 bits).
    pub const LINK_STATUS: u16 = 0x12;
    /// Slot Control (16 bits).
    pub const SLOT_CONTROL: u16 = 0x18;
    /// Root Control (16 bits).
    pub const ROOT_CONTROL: u16 = 0x1c;
    /// Device Capabilities 2 (32 bits), section 7.5.3.15.
    pub const DEVICE_CAPABILITIES_2: u16 = 0x24;
    /// Device Control 2 (16 bits), section 7.5.3.16.
    pub const DEVICE_CONTROL_2: u16 = 0x28;
    /// Link Control 2 (16 bits).
    pub const LINK_CONTROL_2: u16 = 0x30;
    /// Capabilities register: Device/Port Type (bits 7:4).
    pub const PORT_TYPE_SHIFT: u16 = 4;
    /// Device Capabilities: Function Level Reset Capability (bit 28).
    pub const DEVICE_CAPABILITIES_FLR: u32 = 1 << 28;
    /// Device Control: Initiate Function Level Reset (bit 15).
    pub const DEVICE_CONTROL_INITIATE_FLR: u16 = 1 << 15;
    /// Device Status: Transactions Pending (bit 5).
    pub const DEVICE_STATUS_TRANSACTIONS_PENDING: u16 = 1 << 5;
    /// Device Capabilities 2: ARI Forwarding Supported (bit 5).
    pub const DEVICE_CAPABILITIES_2_ARI_FORWARDING: u32 = 1 << 5;
    /// Device Control 2: ARI Forwarding Enable (bit 5).
    pub const DEVICE_CONTROL_2_ARI_FORWARDING: u16 = 1 << 5;
}

/// Advanced Features capability (PCI Advanced Capabilities ECN, "AF FLR").
pub mod advanced_features {
    /// AF Capabilities (8 bits): bit 0 TP, bit 1 FLR.
    pub const CAPABILITIES: u16 = 0x03;
    /// AF Control (8 bits): bit 0 Initiate FLR.
    pub const CONTROL: u16 = 0x04;
    /// AF Status (8 bits): bit 0 Transactions Pending.
    pub const STATUS: u16 = 0x05;
    /// Capabilities: Transactions Pending capable.
    pub const CAP_TRANSACTIONS_PENDING: u8 = 1 << 0;
    /// Capabilities: FLR capable.
    pub const CAP_FLR: u8 = 1 << 1;
    /// Control: Initiate FLR.
    pub const CONTROL_INITIATE_FLR: u8 = 1 << 0;
    /// Status: Transactions Pending.
    pub const STATUS_TRANSACTIONS_PENDING: u8 = 1 << 0;
}

/// ACS extended capability (PCIe Base spec 6.0 section 7.7.11).
pub mod acs {
    /// ACS Capability register (16 bits).
    pub const CAPABILITY: u16 = 0x04;
    /// ACS Control register (16 bits).
    pub const CONTROL: u16 = 0x06;
}

/// ARI extended capability (PCIe Base spec 6.0 section 7.8.8).
pub mod ari {
    /// ARI Capability register (16 bits): Next Function Number in bits 15:8.
    pub const CAPABILITY: u16 = 0x04;
    /// ARI Control register (16 bits).
    pub const CONTROL: u16 = 0x06;
}

/// SR-IOV extended capability (PCIe Base spec 6.0 section 9.3.3).
pub mod sriov {
    /// SR-IOV Capabilities (32 bits).
    pub const CAPABILITIES: u16 = 0x04;
    /// SR-IOV Control (16 bits), section 9.3.3.3.
    pub const CONTROL: u16 = 0x08;
    /// SR-IOV Status (16 bits).
    pub const STATUS: u16 = 0x0a;
    /// InitialVFs (16 bits).
    pub const INITIAL_VFS: u16 = 0x0c;
    /// TotalVFs (16 bits).
    pub const TOTAL_VFS: u16 = 0x0e;
    /// NumVFs (16 bits).
    pub const NUM_VFS: u16 = 0x10;
    /// First VF Offset (16 bits).
    pub const FIRST_VF_OFFSET: u16 = 0x14;
    /// VF Stride (16 bits).
    pub const VF_STRIDE: u16 = 0x16;
    /// VF Device ID (16 bits).
    pub const VF_DEVICE_ID: u16 = 0x1a;
    /// Supported Page Sizes (32 bits).
    pub const SUPPORTED_PAGE_SIZES: u16 = 0x1c;
    /// System Page Size (32 bits).
    pub const SYSTEM_PAGE_SIZE: u16 = 0x20;
    /// VF BAR0 (32 bits); VF BAR n at 0x24 + 4n.
    pub const VF_BAR0: u16 = 0x24;
    /// Control: VF Enable.
    pub const CONTROL_VF_ENABLE: u16 = 1 << 0;
    /// Control: VF Migration Enable.
    pub const CONTROL_VF_MIGRATION: u16 = 1 << 1;
    /// Control: VF Memory Space Enable.
    pub const CONTROL_VF_MEMORY_SPACE: u16 = 1 << 3;
    /// Control: ARI Capable Hierarchy (only in the lowest-numbered PF).
    pub const CONTROL_ARI_CAPABLE_HIERARCHY: u16 = 1 << 4;
}

/// AER extended capability (PCIe Base spec 6.0 section 7.8.4).
pub mod aer {
    /// Uncorrectable Error Status (32 bits, RW1C).
    pub const UNCORRECTABLE_STATUS: u16 = 0x04;
    /// Uncorrectable Error Mask (32 bits).
    pub const UNCORRECTABLE_MASK: u16 = 0x08;
    /// Uncorrectable Error Severity (32 bits).
    pub const UNCORRECTABLE_SEVERITY: u16 = 0x0c;
    /// Correctable Error Status (32 bits, RW1C).
    pub const CORRECTABLE_STATUS: u16 = 0x10;
    /// Correctable Error Mask (32 bits).
    pub const CORRECTABLE_MASK: u16 = 0x14;
    /// Advanced Error Capabilities and Control (32 bits).
    pub const CAPABILITIES_CONTROL: u16 = 0x18;
}

/// Device Serial Number extended capability (PCIe Base spec 6.0 section 7.9.3).
pub mod device_serial_number {
    /// Serial number, low dword (high dword follows at +8).
    pub const SERIAL_LOW: u16 = 0x04;
    /// Serial number, high dword.
    pub const SERIAL_HIGH: u16 = 0x08;
}
