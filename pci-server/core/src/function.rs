//! What the pci-server knows about one function: identity, class, header, BARs, capabilities
//! and, for bridges, the bus numbers firmware assigned. [`probe_function`] reads it all.

use crate::bar::{size_bars, Bars};
use crate::capability::Capabilities;
use crate::class_name::ClassCode;
use crate::registers::{header, type1};
use crate::ConfigSpace;
use pci_api::Bdf;

/// Header layout (PCIe Base spec 6.0 section 7.5.1.1.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// Type 0: an endpoint.
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge (root ports and switch ports too).
    Bridge,
    /// Type 2: a CardBus bridge.
    CardBus,
    /// Any other (reserved) layout.
    Unknown(u8),
}

impl HeaderKind {
    /// From the layout field (bit 7 ignored).
    pub const fn from_field(field: u8) -> HeaderKind {
        match field & 0x7f {
            header::TYPE_ENDPOINT => HeaderKind::Endpoint,
            header::TYPE_BRIDGE => HeaderKind::Bridge,
            header::TYPE_CARDBUS => HeaderKind::CardBus,
            other => HeaderKind::Unknown(other),
        }
    }
}

/// Bus numbers of a bridge (PCIe Base spec 6.0 section 7.5.1.3.2-7.5.1.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusNumbers {
    /// Primary bus (the bus the bridge sits on).
    pub primary: u8,
    /// Secondary bus (directly below).
    pub secondary: u8,
    /// Subordinate bus (highest bus below).
    pub subordinate: u8,
}

impl BusNumbers {
    /// True when `bus` is below this bridge.
    pub const fn contains(&self, bus: u8) -> bool {
        bus >= self.secondary && bus <= self.subordinate
    }
}

/// One function of the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID (for a VF: the PF's, since VFs read 0xffff).
    pub vendor_id: u16,
    /// Device ID (for a VF: the PF's VF Device ID).
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header layout.
    pub header: HeaderKind,
    /// Part of a multi-function device (header bit 7, or any function number above 0).
    pub multi_function: bool,
    /// BARs and expansion ROM.
    pub bars: Bars,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Bus numbers, for bridges.
    pub bus_numbers: Option<BusNumbers>,
    /// The bridge above (None on the root bus).
    pub parent: Option<Bdf>,
    /// For a virtual function: its physical function.
    pub physical_function: Option<Bdf>,
}

impl FunctionInfo {
    /// True for a type 1 header.
    pub fn is_bridge(&self) -> bool {
        self.header == HeaderKind::Bridge
    }
}

/// Reads `bdf` if a function answers there (vendor ID not all-ones or zero). `parent` is the
/// bridge above, as the enumerator knows it.
pub fn probe_function<C: ConfigSpace + ?Sized>(
    config: &mut C,
    bdf: Bdf,
    parent: Option<Bdf>,
) -> Option<FunctionInfo> {
    let vendor_id = config.read16(bdf, header::VENDOR_ID);
    if vendor_id == 0xffff || vendor_id == 0 {
        return None;
    }
    let device_id = config.read16(bdf, header::DEVICE_ID);
    let class_revision = config.read32(bdf, header::REVISION);
    let header_type = config.read8(bdf, header::HEADER_TYPE);
    let kind = HeaderKind::from_field(header_type);
    let bars = size_bars(config, bdf, header_type & 0x7f);
    let capabilities = Capabilities::read(&*config, bdf);
    let bus_numbers = if kind == HeaderKind::Bridge {
        Some(BusNumbers {
            primary: config.read8(bdf, type1::PRIMARY_BUS),
            secondary: config.read8(bdf, type1::SECONDARY_BUS),
            subordinate: config.read8(bdf, type1::SUBORDINATE_BUS),
        })
    } else {
        None
    };
    Some(FunctionInfo {
        bdf,
        vendor_id,
        device_id,
        revision: (class_revision & 0xff) as u8,
        class: ClassCode::from_u32(class_revision >> 8),
        header: kind,
        multi_function: header_type & header::MULTI_FUNCTION != 0 || bdf.function() != 0,
        bars,
        capabilities,
        bus_numbers,
        parent,
        physical_function: None,
    })
}
