//! SR-IOV: enabling virtual functions on a physical function and adding them to the inventory
//! (PCIe Base spec 6.0 chapter 9). A VF's routing ID is PF + First VF Offset + n x VF Stride
//! (section 9.3.3.10/9.3.3.11); with ARI the 8-bit device/function field is one function number.

use crate::bar::{size_bar_block, Bar, Bars};
use crate::capability::{read_sriov, Capabilities, SriovCapability};
use crate::class_name::ClassCode;
use crate::function::{FunctionInfo, HeaderKind};
use crate::inventory::{Inventory, TopologyError};
use crate::registers::{header, pcie, sriov};
use crate::{ConfigSpace, Delay};
use core::fmt;
use pci_api::{Bdf, PciError};

/// Why virtual functions could not be enabled. Nothing stays changed on error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SriovError {
    /// No such function in the inventory.
    NoSuchFunction(Bdf),
    /// The function has no SR-IOV capability.
    NoSriovCapability(Bdf),
    /// VF Enable is already set.
    AlreadyEnabled(Bdf),
    /// Zero VFs, or more than TotalVFs.
    BadCount {
        /// Requested.
        requested: u16,
        /// TotalVFs.
        total: u16,
    },
    /// A VF's routing ID overflows, leaves the bus range of the bridge above, or collides with
    /// an existing function.
    RoutingOutOfRange(Bdf),
    /// The inventory cannot hold that many more functions.
    InventoryFull,
    /// The VFs did not answer config reads within the bounded wait.
    NotReady(Bdf),
}

impl fmt::Display for SriovError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SriovError::NoSuchFunction(bdf) => write!(f, "{bdf}: no such function"),
            SriovError::NoSriovCapability(bdf) => write!(f, "{bdf}: no SR-IOV capability"),
            SriovError::AlreadyEnabled(bdf) => write!(f, "{bdf}: VFs already enabled"),
            SriovError::BadCount { requested, total } => {
                write!(f, "{requested} VFs requested, 1..={total} possible")
            }
            SriovError::RoutingOutOfRange(bdf) => {
                write!(f, "{bdf}: VF routing IDs out of the bridge's bus range")
            }
            SriovError::InventoryFull => f.write_str("inventory full"),
            SriovError::NotReady(bdf) => write!(f, "{bdf}: VFs not ready after enabling"),
        }
    }
}

impl From<SriovError> for PciError {
    fn from(error: SriovError) -> PciError {
        match error {
            SriovError::NoSuchFunction(_) => PciError::NoSuchFunction,
            SriovError::NoSriovCapability(_) => PciError::NoSriovCapability,
            SriovError::AlreadyEnabled(_) => PciError::VfsAlreadyEnabled,
            SriovError::BadCount { .. } => PciError::TooManyVfs,
            SriovError::RoutingOutOfRange(_) => PciError::VfBusOutOfRange,
            SriovError::InventoryFull => PciError::InventoryFull,
            SriovError::NotReady(_) => PciError::ResetFailed,
        }
    }
}

/// Routing ID of VF `n` (zero-based), or `None` when it overflows 16 bits.
pub fn virtual_function_bdf(pf: Bdf, first_offset: u16, stride: u16, n: u16) -> Option<Bdf> {
    let step = u32::from(stride).checked_mul(u32::from(n))?;
    let id = u32::from(pf.requester_id()) + u32::from(first_offset) + step;
    u16::try_from(id).ok().map(Bdf::from_requester_id)
}

/// Every VF routing ID for `count` VFs, checked against the bus range and the inventory.
fn virtual_function_bdfs(
    inventory: &Inventory,
    pf: Bdf,
    capability: &SriovCapability,
    count: u16,
) -> Result<heapless::Vec<Bdf, 256>, SriovError> {
    let (first, last) = inventory.parent_bus_range(pf);
    let mut bdfs = heapless::Vec::new();
    for n in 0..count {
        let bdf = virtual_function_bdf(pf, capability.first_vf_offset, capability.vf_stride, n)
            .filter(|bdf| bdf.bus() >= first && bdf.bus() <= last)
            .filter(|bdf| inventory.get(*bdf).is_none() && *bdf != pf)
            .filter(|bdf| !bdfs.contains(bdf))
            .ok_or(SriovError::RoutingOutOfRange(pf))?;
        bdfs.push(bdf).map_err(|_| SriovError::InventoryFull)?;
    }
    Ok(bdfs)
}

/// Sizes the VF BARs of the SR-IOV capability at `offset` (VF Memory Space Enable must be off;
/// the caller ensures it). Each VF's BAR n has the size found here.
fn size_virtual_function_bars<C: ConfigSpace + ?Sized>(
    config: &mut C,
    pf: Bdf,
    offset: u16,
) -> Bars {
    let mut bars = Bars::default();
    let control = config.read16(pf, offset + sriov::CONTROL);
    config.write16(
        pf,
        offset + sriov::CONTROL,
        control & !sriov::CONTROL_VF_MEMORY_SPACE,
    );
    size_bar_block(config, pf, offset + sriov::VF_BAR0, 6, &mut bars);
    config.write16(pf, offset + sriov::CONTROL, control);
    bars
}

/// Describes VF `n` of `pf_info`.
fn probe_virtual_function<C: ConfigSpace + ?Sized>(
    config: &C,
    pf_info: &FunctionInfo,
    capability: &SriovCapability,
    vf_bars: &Bars,
    bdf: Bdf,
    n: u16,
) -> FunctionInfo {
    let class_revision = config.read32(bdf, header::REVISION);
    let mut bars = Bars::default();
    for bar in &vf_bars.bars {
        let address = bar
            .size
            .checked_mul(u64::from(n))
            .and_then(|offset| bar.address.checked_add(offset))
            .unwrap_or(bar.address);
        let _ = bars.bars.push(Bar { address, ..*bar });
    }
    FunctionInfo {
        bdf,
        // VFs read 0xffff for vendor and device ID (section 9.3.4.1.1/9.3.4.1.2).
        vendor_id: pf_info.vendor_id,
        device_id: capability.vf_device_id,
        revision: (class_revision & 0xff) as u8,
        class: ClassCode::from_u32(class_revision >> 8),
        header: HeaderKind::Endpoint,
        multi_function: false,
        bars,
        capabilities: Capabilities::read(config, bdf),
        bus_numbers: None,
        parent: pf_info.parent,
        physical_function: Some(pf_info.bdf),
    }
}

/// Adds VFs that firmware already enabled (called during enumeration).
pub(crate) fn add_enabled_virtual_functions<C: ConfigSpace + ?Sized>(
    config: &mut C,
    inventory: &mut Inventory,
) {
    let mut physical: heapless::Vec<Bdf, 64> = heapless::Vec::new();
    for function in inventory.functions() {
        if let Some(capability) = function.capabilities.sriov {
            if capability.vfs_enabled && capability.num_vfs > 0 {
                let _ = physical.push(function.bdf);
            }
        }
    }
    for pf in physical {
        let Some(pf_info) = inventory.get(pf).cloned() else {
            continue;
        };
        let Some(capability) = pf_info.capabilities.sriov else {
            continue;
        };
        let mut count = capability.num_vfs.min(capability.total_vfs);
        let room = u16::try_from(inventory.free_slots()).unwrap_or(u16::MAX);
        if count > room {
            inventory.note(TopologyError::InventoryFull);
            count = room;
        }
        let Ok(bdfs) = virtual_function_bdfs(inventory, pf, &capability, count) else {
            inventory.note(TopologyError::VirtualFunctionsOutOfRange {
                physical_function: pf,
            });
            continue;
        };
        let vf_bars = size_virtual_function_bars(config, pf, capability.offset);
        for (n, bdf) in (0u16..).zip(bdfs) {
            let info = probe_virtual_function(config, &pf_info, &capability, &vf_bars, bdf, n);
            if let Err(error) = inventory.push(info) {
                inventory.note(error);
                return;
            }
        }
    }
}

/// Polls VF config reads (class code; VF IDs always read all-ones), at most 10 x 10 ms.
fn wait_for_virtual_function<C: ConfigSpace + ?Sized, D: Delay + ?Sized>(
    config: &C,
    delay: &mut D,
    bdf: Bdf,
) -> bool {
    for _ in 0..10 {
        if config.read32(bdf, header::REVISION) != 0xffff_ffff {
            return true;
        }
        delay.delay_ms(10);
    }
    false
}

/// Enables `count` VFs on `pf`: sets ARI Capable Hierarchy when the port above forwards ARI,
/// programs NumVFs, checks the VF routing IDs, sets VF Enable and VF Memory Space Enable, waits
/// 100 ms (section 9.3.3.3.1) and a bounded readiness poll, then adds the VFs to the inventory
/// and recomputes groups. Returns how many were added. On error the PF is put back as found.
pub fn enable_virtual_functions<C: ConfigSpace + ?Sized, D: Delay + ?Sized>(
    config: &mut C,
    delay: &mut D,
    inventory: &mut Inventory,
    pf: Bdf,
    count: u16,
) -> Result<usize, SriovError> {
    let pf_info = inventory
        .get(pf)
        .cloned()
        .ok_or(SriovError::NoSuchFunction(pf))?;
    let found = pf_info
        .capabilities
        .sriov
        .ok_or(SriovError::NoSriovCapability(pf))?;
    // Re-read: the inventory may be stale.
    let current = read_sriov(&*config, pf, found.offset);
    if current.vfs_enabled {
        return Err(SriovError::AlreadyEnabled(pf));
    }
    if count == 0 || count > current.total_vfs {
        return Err(SriovError::BadCount {
            requested: count,
            total: current.total_vfs,
        });
    }
    if usize::from(count) > inventory.free_slots() {
        return Err(SriovError::InventoryFull);
    }
    let offset = found.offset;
    let original_control = config.read16(pf, offset + sriov::CONTROL);
    let original_num_vfs = current.num_vfs;

    // ARI Capable Hierarchy is set only in the lowest-numbered PF, when the port above
    // forwards ARI (section 9.3.3.3.5); it changes First VF Offset and VF Stride.
    let parent = pf_info.parent.and_then(|p| inventory.get(p)).cloned();
    let ari_port = parent.as_ref().and_then(|port| {
        port.capabilities
            .pcie
            .filter(|capability| capability.ari_forwarding)
            .map(|capability| (port.bdf, capability.offset))
    });
    let mut control = original_control;
    let mut ari_port_changed = None;
    if pf.function() == 0 && pf_info.capabilities.ari.is_some() {
        if let Some((port, pcie_offset)) = ari_port {
            let register = pcie_offset + pcie::DEVICE_CONTROL_2;
            let before = config.read16(port, register);
            if before & pcie::DEVICE_CONTROL_2_ARI_FORWARDING == 0 {
                config.write16(
                    port,
                    register,
                    before | pcie::DEVICE_CONTROL_2_ARI_FORWARDING,
                );
                ari_port_changed = Some((port, register, before));
            }
            control |= sriov::CONTROL_ARI_CAPABLE_HIERARCHY;
            config.write16(pf, offset + sriov::CONTROL, control);
        }
    }
    config.write16(pf, offset + sriov::NUM_VFS, count);
    let programmed = read_sriov(&*config, pf, offset);

    let undo = |config: &mut C| {
        config.write16(pf, offset + sriov::CONTROL, original_control);
        config.write16(pf, offset + sriov::NUM_VFS, original_num_vfs);
        if let Some((port, register, before)) = ari_port_changed {
            config.write16(port, register, before);
        }
    };

    let bdfs = match virtual_function_bdfs(inventory, pf, &programmed, count) {
        Ok(bdfs) => bdfs,
        Err(error) => {
            undo(config);
            return Err(error);
        }
    };
    let vf_bars = size_virtual_function_bars(config, pf, offset);
    config.write16(
        pf,
        offset + sriov::CONTROL,
        control | sriov::CONTROL_VF_ENABLE | sriov::CONTROL_VF_MEMORY_SPACE,
    );
    delay.delay_ms(100);
    let first = bdfs.first().copied().unwrap_or(pf);
    if !wait_for_virtual_function(&*config, delay, first) {
        undo(config);
        return Err(SriovError::NotReady(pf));
    }
    let enabled = read_sriov(&*config, pf, offset);
    let mut added = 0;
    for (n, bdf) in (0u16..).zip(bdfs) {
        let info = probe_virtual_function(&*config, &pf_info, &enabled, &vf_bars, bdf, n);
        // Room was checked above.
        if inventory.push(info).is_ok() {
            added += 1;
        }
    }
    if let Some(function) = inventory.get_mut(pf) {
        function.capabilities.sriov = Some(enabled);
    }
    inventory.recompute_groups();
    Ok(added)
}
