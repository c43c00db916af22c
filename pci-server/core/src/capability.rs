//! Capability list walks (standard list at 0x34, extended list at 0x100) and the decoded form
//! of every capability the pci-server uses. Both walks are bounded and loop-safe: a malformed
//! list ends the walk and is recorded as a [`CapabilityIssue`].

use crate::registers::{
    acs, advanced_features, ari, capability_id, device_serial_number, extended_capability_id,
    header, msi, msix, pcie, power_management, sriov, Status,
};
use crate::ConfigSpace;
use bitflags::bitflags;
use pci_api::Bdf;

/// Device/Port Type of the PCI Express capability (PCIe Base spec 6.0 section 7.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortType {
    /// PCI Express Endpoint.
    Endpoint,
    /// Legacy PCI Express Endpoint.
    LegacyEndpoint,
    /// Root Port of a Root Complex.
    RootPort,
    /// Upstream Port of a switch.
    SwitchUpstream,
    /// Downstream Port of a switch.
    SwitchDownstream,
    /// PCI Express to PCI/PCI-X bridge (its conventional side is below it).
    PcieToPciBridge,
    /// PCI/PCI-X to PCI Express bridge (reverse bridge).
    PciToPcieBridge,
    /// Root Complex Integrated Endpoint.
    RootComplexIntegratedEndpoint,
    /// Root Complex Event Collector.
    RootComplexEventCollector,
    /// A reserved encoding.
    Reserved(u8),
}

impl PortType {
    /// Decodes the 4-bit field.
    pub const fn from_field(field: u8) -> PortType {
        match field & 0xf {
            0x0 => PortType::Endpoint,
            0x1 => PortType::LegacyEndpoint,
            0x4 => PortType::RootPort,
            0x5 => PortType::SwitchUpstream,
            0x6 => PortType::SwitchDownstream,
            0x7 => PortType::PcieToPciBridge,
            0x8 => PortType::PciToPcieBridge,
            0x9 => PortType::RootComplexIntegratedEndpoint,
            0xa => PortType::RootComplexEventCollector,
            other => PortType::Reserved(other),
        }
    }

    /// A short human name.
    pub const fn name(self) -> &'static str {
        match self {
            PortType::Endpoint => "endpoint",
            PortType::LegacyEndpoint => "legacy endpoint",
            PortType::RootPort => "root port",
            PortType::SwitchUpstream => "switch upstream port",
            PortType::SwitchDownstream => "switch downstream port",
            PortType::PcieToPciBridge => "PCIe-to-PCI bridge",
            PortType::PciToPcieBridge => "PCI-to-PCIe bridge",
            PortType::RootComplexIntegratedEndpoint => "root complex integrated endpoint",
            PortType::RootComplexEventCollector => "root complex event collector",
            PortType::Reserved(_) => "reserved port type",
        }
    }
}

/// PCI Express capability (PCIe Base spec 6.0 section 7.5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieCapability {
    /// Offset in config space.
    pub offset: u16,
    /// Capability version.
    pub version: u8,
    /// Device/Port Type.
    pub port_type: PortType,
    /// Function Level Reset Capability (Device Capabilities bit 28).
    pub flr: bool,
    /// ARI Forwarding Supported (Device Capabilities 2 bit 5; downstream ports).
    pub ari_forwarding: bool,
}

/// MSI capability (PCIe Base spec 6.0 section 7.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    /// Offset in config space.
    pub offset: u16,
    /// 64-bit Address Capable.
    pub address_64: bool,
    /// Per-Vector Masking Capable.
    pub per_vector_mask: bool,
    /// Multiple Message Capable, as log2 of the vector count (0..=5).
    pub multiple_message_log2: u8,
}

impl MsiCapability {
    /// Vectors the function can use.
    pub const fn max_vectors(&self) -> u8 {
        1 << self.multiple_message_log2
    }

    /// Offset of the Message Data register.
    pub const fn data_offset(&self) -> u16 {
        self.offset + if self.address_64 { 0x0c } else { 0x08 }
    }

    /// Offset of the Mask Bits register (per-vector masking only).
    pub const fn mask_offset(&self) -> Option<u16> {
        if self.per_vector_mask {
            Some(self.offset + if self.address_64 { 0x10 } else { 0x0c })
        } else {
            None
        }
    }

    /// Length of the capability structure in bytes.
    pub const fn length(&self) -> u16 {
        match (self.address_64, self.per_vector_mask) {
            (false, false) => 0x0a,
            (true, false) => 0x0e,
            (false, true) => 0x14,
            (true, true) => 0x18,
        }
    }
}

/// MSI-X capability (PCIe Base spec 6.0 section 7.7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    /// Offset in config space.
    pub offset: u16,
    /// Number of table entries (Table Size + 1).
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bir: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bir: u8,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u32,
}

/// Power Management capability (PCI Bus Power Management spec 1.2 section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerManagementCapability {
    /// Offset in config space.
    pub offset: u16,
    /// PMC version field.
    pub version: u8,
    /// No_Soft_Reset: D3hot->D0 keeps the function's state (so is no reset).
    pub no_soft_reset: bool,
    /// Current power state (0 = D0 .. 3 = D3hot).
    pub power_state: u8,
}

/// Advanced Features capability (AF FLR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdvancedFeaturesCapability {
    /// Offset in config space.
    pub offset: u16,
    /// FLR capable.
    pub flr: bool,
    /// Transactions Pending bit supported.
    pub transactions_pending: bool,
}

bitflags! {
    /// ACS Capability/Control bits (PCIe Base spec 6.0 section 7.7.11.2/7.7.11.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AcsFlags: u16 {
        /// Source Validation.
        const SOURCE_VALIDATION = 1 << 0;
        /// Translation Blocking.
        const TRANSLATION_BLOCKING = 1 << 1;
        /// P2P Request Redirect.
        const REQUEST_REDIRECT = 1 << 2;
        /// P2P Completion Redirect.
        const COMPLETION_REDIRECT = 1 << 3;
        /// Upstream Forwarding.
        const UPSTREAM_FORWARDING = 1 << 4;
        /// P2P Egress Control.
        const EGRESS_CONTROL = 1 << 5;
        /// Direct Translated P2P.
        const DIRECT_TRANSLATED = 1 << 6;
    }
}

impl AcsFlags {
    /// The controls that isolate functions from each other for IOMMU grouping: SV, RR, CR,
    /// UF (Linux's `REQ_ACS_FLAGS`).
    pub const ISOLATION: AcsFlags = AcsFlags::SOURCE_VALIDATION
        .union(AcsFlags::REQUEST_REDIRECT)
        .union(AcsFlags::COMPLETION_REDIRECT)
        .union(AcsFlags::UPSTREAM_FORWARDING);
}

/// ACS extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcsCapability {
    /// Offset in config space.
    pub offset: u16,
    /// What the function implements.
    pub capability: AcsFlags,
    /// What is enabled.
    pub control: AcsFlags,
}

impl AcsCapability {
    /// True when every isolation control the function implements is enabled (controls it
    /// does not implement count as hard-wired on, PCIe Base spec 6.0 section 6.12.1.1).
    pub fn isolates(&self) -> bool {
        let required = AcsFlags::ISOLATION & self.capability;
        self.control.contains(required)
    }
}

/// ARI extended capability (PCIe Base spec 6.0 section 7.8.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AriCapability {
    /// Offset in config space.
    pub offset: u16,
    /// Next Function Number.
    pub next_function: u8,
}

/// SR-IOV extended capability (PCIe Base spec 6.0 section 9.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SriovCapability {
    /// Offset in config space.
    pub offset: u16,
    /// InitialVFs.
    pub initial_vfs: u16,
    /// TotalVFs.
    pub total_vfs: u16,
    /// NumVFs currently programmed.
    pub num_vfs: u16,
    /// First VF Offset (for the current NumVFs and ARI setting).
    pub first_vf_offset: u16,
    /// VF Stride.
    pub vf_stride: u16,
    /// VF Device ID.
    pub vf_device_id: u16,
    /// VF Enable is set.
    pub vfs_enabled: bool,
    /// ARI Capable Hierarchy is set.
    pub ari_capable_hierarchy: bool,
}

/// A capability found in a list: its ID and offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityEntry {
    /// Capability ID (8-bit for the standard list, 16-bit for the extended one).
    pub id: u16,
    /// Offset in config space.
    pub offset: u16,
}

/// A malformed capability list (the walk stopped there; what was found before is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityIssue {
    /// A standard-list pointer below 0x40 (into the header).
    PointerIntoHeader {
        /// The pointer.
        pointer: u16,
    },
    /// A pointer revisits an offset: the list loops.
    Loop {
        /// The revisited offset.
        offset: u16,
    },
    /// An extended-list pointer below 0x100.
    ExtendedPointerOutOfRange {
        /// The pointer.
        pointer: u16,
    },
    /// A capability's registers run past the end of its config space region.
    Truncated {
        /// Capability ID.
        id: u16,
        /// Its offset.
        offset: u16,
    },
    /// More capabilities than the inventory records (the rest are ignored).
    TooMany,
}

/// Most entries recorded per list.
pub const MAX_CAPABILITIES: usize = 32;

/// Everything found in a function's two capability lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Power management.
    pub power_management: Option<PowerManagementCapability>,
    /// MSI.
    pub msi: Option<MsiCapability>,
    /// MSI-X.
    pub msix: Option<MsixCapability>,
    /// PCI Express.
    pub pcie: Option<PcieCapability>,
    /// Advanced Features.
    pub advanced_features: Option<AdvancedFeaturesCapability>,
    /// Number of vendor-specific capabilities (not decoded).
    pub vendor_specific: u8,
    /// ACS.
    pub acs: Option<AcsCapability>,
    /// ARI.
    pub ari: Option<AriCapability>,
    /// SR-IOV.
    pub sriov: Option<SriovCapability>,
    /// AER (its offset).
    pub aer: Option<u16>,
    /// Device Serial Number.
    pub serial_number: Option<u64>,
    /// Every standard capability, in list order.
    pub standard: heapless::Vec<CapabilityEntry, MAX_CAPABILITIES>,
    /// Every extended capability, in list order.
    pub extended: heapless::Vec<CapabilityEntry, MAX_CAPABILITIES>,
    /// Problems met while walking.
    pub issues: heapless::Vec<CapabilityIssue, 4>,
}

/// End of the standard (PCI-compatible) config space.
const STANDARD_END: u16 = 0x100;
/// End of the extended config space.
const EXTENDED_END: u16 = crate::CONFIG_SPACE_SIZE;

fn fits(offset: u16, length: u16, end: u16) -> bool {
    offset.checked_add(length).is_some_and(|last| last <= end)
}

impl Capabilities {
    fn note(&mut self, issue: CapabilityIssue) {
        // A full issue list keeps its first entries: they are the most useful.
        let _ = self.issues.push(issue);
    }

    fn record(
        list: &mut heapless::Vec<CapabilityEntry, MAX_CAPABILITIES>,
        id: u16,
        offset: u16,
    ) -> bool {
        list.push(CapabilityEntry { id, offset }).is_ok()
    }

    /// Walks both lists of `bdf`. The extended list is walked only for PCI Express functions
    /// (conventional functions have 256 bytes of config space).
    pub fn read<C: ConfigSpace + ?Sized>(config: &C, bdf: Bdf) -> Capabilities {
        let mut capabilities = Capabilities::default();
        capabilities.walk_standard(config, bdf);
        if capabilities.pcie.is_some() {
            capabilities.walk_extended(config, bdf);
        }
        capabilities
    }

    fn walk_standard<C: ConfigSpace + ?Sized>(&mut self, config: &C, bdf: Bdf) {
        let status = Status::from_bits_retain(config.read16(bdf, header::STATUS));
        if !status.contains(Status::CAPABILITIES_LIST) {
            return;
        }
        // Pointers are dword aligned: the low two bits are reserved (section 7.5.1.1.11).
        let mut pointer = u16::from(config.read8(bdf, header::CAPABILITIES_POINTER) & 0xfc);
        let mut visited: u64 = 0;
        // At most 48 dwords between 0x40 and 0x100: the walk cannot take longer.
        for _ in 0..48 {
            if pointer == 0 {
                return;
            }
            if pointer < 0x40 {
                self.note(CapabilityIssue::PointerIntoHeader { pointer });
                return;
            }
            let bit = 1u64 << ((pointer - 0x40) / 4);
            if visited & bit != 0 {
                self.note(CapabilityIssue::Loop { offset: pointer });
                return;
            }
            visited |= bit;
            let id = config.read8(bdf, pointer);
            if !Self::record(&mut self.standard, u16::from(id), pointer) {
                self.note(CapabilityIssue::TooMany);
                return;
            }
            self.decode_standard(config, bdf, id, pointer);
            pointer = u16::from(config.read8(bdf, pointer + 1) & 0xfc);
        }
    }

    fn decode_standard<C: ConfigSpace + ?Sized>(
        &mut self,
        config: &C,
        bdf: Bdf,
        id: u8,
        offset: u16,
    ) {
        let need = match id {
            capability_id::POWER_MANAGEMENT => 8,
            capability_id::MSI => 0x0a,
            capability_id::MSIX => 0x0c,
            // Through Device Status: a version 1 endpoint structure may end at 0x14.
            capability_id::PCI_EXPRESS => 0x0c,
            capability_id::ADVANCED_FEATURES => 6,
            _ => 2,
        };
        if !fits(offset, need, STANDARD_END) {
            self.note(CapabilityIssue::Truncated {
                id: u16::from(id),
                offset,
            });
            return;
        }
        match id {
            capability_id::POWER_MANAGEMENT if self.power_management.is_none() => {
                let pmc = config.read16(bdf, offset + power_management::CAPABILITIES);
                let pmcsr = config.read16(bdf, offset + power_management::CONTROL_STATUS);
                self.power_management = Some(PowerManagementCapability {
                    offset,
                    version: (pmc & 0x7) as u8,
                    no_soft_reset: pmcsr & power_management::NO_SOFT_RESET != 0,
                    power_state: (pmcsr & power_management::POWER_STATE_MASK) as u8,
                });
            }
            capability_id::MSI if self.msi.is_none() => {
                let control = config.read16(bdf, offset + msi::CONTROL);
                let capability = MsiCapability {
                    offset,
                    address_64: control & msi::ADDRESS_64 != 0,
                    per_vector_mask: control & msi::PER_VECTOR_MASK != 0,
                    // Encodings above 5 (32 vectors) are reserved: clamp.
                    multiple_message_log2: ((control >> msi::MULTIPLE_MESSAGE_CAPABLE_SHIFT) & 0x7)
                        .min(5) as u8,
                };
                if fits(offset, capability.length(), STANDARD_END) {
                    self.msi = Some(capability);
                } else {
                    self.note(CapabilityIssue::Truncated {
                        id: u16::from(id),
                        offset,
                    });
                }
            }
            capability_id::MSIX if self.msix.is_none() => {
                let control = config.read16(bdf, offset + msix::CONTROL);
                let table = config.read32(bdf, offset + msix::TABLE);
                let pba = config.read32(bdf, offset + msix::PBA);
                self.msix = Some(MsixCapability {
                    offset,
                    table_size: (control & msix::TABLE_SIZE_MASK) + 1,
                    table_bir: (table & msix::BIR_MASK) as u8,
                    table_offset: table & !msix::BIR_MASK,
                    pba_bir: (pba & msix::BIR_MASK) as u8,
                    pba_offset: pba & !msix::BIR_MASK,
                });
            }
            capability_id::PCI_EXPRESS if self.pcie.is_none() => {
                let capabilities = config.read16(bdf, offset + pcie::CAPABILITIES);
                let device_capabilities = config.read32(bdf, offset + pcie::DEVICE_CAPABILITIES);
                let version = (capabilities & 0xf) as u8;
                // Device Capabilities 2 exists from version 2 on (section 7.5.3.15).
                let ari_forwarding = version >= 2
                    && fits(offset, pcie::DEVICE_CONTROL_2, STANDARD_END)
                    && config.read32(bdf, offset + pcie::DEVICE_CAPABILITIES_2)
                        & pcie::DEVICE_CAPABILITIES_2_ARI_FORWARDING
                        != 0;
                self.pcie = Some(PcieCapability {
                    offset,
                    version,
                    port_type: PortType::from_field((capabilities >> pcie::PORT_TYPE_SHIFT) as u8),
                    flr: device_capabilities & pcie::DEVICE_CAPABILITIES_FLR != 0,
                    ari_forwarding,
                });
            }
            capability_id::ADVANCED_FEATURES if self.advanced_features.is_none() => {
                let capabilities = config.read8(bdf, offset + advanced_features::CAPABILITIES);
                self.advanced_features = Some(AdvancedFeaturesCapability {
                    offset,
                    flr: capabilities & advanced_features::CAP_FLR != 0,
                    transactions_pending: capabilities
                        & advanced_features::CAP_TRANSACTIONS_PENDING
                        != 0,
                });
            }
            capability_id::VENDOR_SPECIFIC => {
                self.vendor_specific = self.vendor_specific.saturating_add(1);
            }
            _ => {}
        }
    }

    fn walk_extended<C: ConfigSpace + ?Sized>(&mut self, config: &C, bdf: Bdf) {
        let mut offset: u16 = STANDARD_END;
        // 960 dwords between 0x100 and 0x1000; one visited bit each.
        let mut visited = [0u64; 15];
        for _ in 0..960 {
            let header = config.read32(bdf, offset);
            // All-zero: no extended capabilities; all-ones: not a PCIe function after all.
            if header == 0 || header == 0xffff_ffff {
                return;
            }
            let index = usize::from((offset - STANDARD_END) / 4);
            let (word, bit) = (index / 64, 1u64 << (index % 64));
            match visited.get_mut(word) {
                Some(slot) if *slot & bit == 0 => *slot |= bit,
                _ => {
                    self.note(CapabilityIssue::Loop { offset });
                    return;
                }
            }
            let id = (header & 0xffff) as u16;
            if !Self::record(&mut self.extended, id, offset) {
                self.note(CapabilityIssue::TooMany);
                return;
            }
            self.decode_extended(config, bdf, id, offset);
            // Next Capability Offset, bits 31:20; the low two bits are reserved.
            let next = ((header >> 20) & 0xffc) as u16;
            if next == 0 {
                return;
            }
            if next < STANDARD_END {
                self.note(CapabilityIssue::ExtendedPointerOutOfRange { pointer: next });
                return;
            }
            offset = next;
        }
    }

    fn decode_extended<C: ConfigSpace + ?Sized>(
        &mut self,
        config: &C,
        bdf: Bdf,
        id: u16,
        offset: u16,
    ) {
        let need = match id {
            extended_capability_id::ACS => 8,
            extended_capability_id::ARI => 8,
            extended_capability_id::SRIOV => 0x40,
            extended_capability_id::AER => 0x2c,
            extended_capability_id::DEVICE_SERIAL_NUMBER => 0x0c,
            _ => 4,
        };
        if !fits(offset, need, EXTENDED_END) {
            self.note(CapabilityIssue::Truncated { id, offset });
            return;
        }
        match id {
            extended_capability_id::ACS if self.acs.is_none() => {
                self.acs = Some(AcsCapability {
                    offset,
                    capability: AcsFlags::from_bits_truncate(
                        config.read16(bdf, offset + acs::CAPABILITY),
                    ),
                    control: AcsFlags::from_bits_truncate(
                        config.read16(bdf, offset + acs::CONTROL),
                    ),
                });
            }
            extended_capability_id::ARI if self.ari.is_none() => {
                let capability = config.read16(bdf, offset + ari::CAPABILITY);
                self.ari = Some(AriCapability {
                    offset,
                    next_function: (capability >> 8) as u8,
                });
            }
            extended_capability_id::SRIOV if self.sriov.is_none() => {
                self.sriov = Some(read_sriov(config, bdf, offset));
            }
            extended_capability_id::AER if self.aer.is_none() => self.aer = Some(offset),
            extended_capability_id::DEVICE_SERIAL_NUMBER if self.serial_number.is_none() => {
                let low = config.read32(bdf, offset + device_serial_number::SERIAL_LOW);
                let high = config.read32(bdf, offset + device_serial_number::SERIAL_HIGH);
                self.serial_number = Some((u64::from(high) << 32) | u64::from(low));
            }
            _ => {}
        }
    }

    /// True when a standard capability with this ID was found.
    pub fn has_standard(&self, id: u8) -> bool {
        self.standard.iter().any(|entry| entry.id == u16::from(id))
    }
}

/// Reads the SR-IOV capability at `offset` (which the caller has checked fits).
pub fn read_sriov<C: ConfigSpace + ?Sized>(config: &C, bdf: Bdf, offset: u16) -> SriovCapability {
    let control = config.read16(bdf, offset + sriov::CONTROL);
    SriovCapability {
        offset,
        initial_vfs: config.read16(bdf, offset + sriov::INITIAL_VFS),
        total_vfs: config.read16(bdf, offset + sriov::TOTAL_VFS),
        num_vfs: config.read16(bdf, offset + sriov::NUM_VFS),
        first_vf_offset: config.read16(bdf, offset + sriov::FIRST_VF_OFFSET),
        vf_stride: config.read16(bdf, offset + sriov::VF_STRIDE),
        vf_device_id: config.read16(bdf, offset + sriov::VF_DEVICE_ID),
        vfs_enabled: control & sriov::CONTROL_VF_ENABLE != 0,
        ari_capable_hierarchy: control & sriov::CONTROL_ARI_CAPABLE_HIERARCHY != 0,
    }
}
