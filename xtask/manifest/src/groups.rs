//! IOMMU groups and INTx lines of the placed machine.
//!
//! Groups follow the isolation argument Linux makes (drivers/iommu/iommu.c
//! `pci_device_group`), made conservative for switches: starting at a device, walk up
//! through every bridge that does not isolate its secondary side; the topmost such
//! bridge (or the device itself) is the group's anchor. Only a root port with ACS isolates
//! (PCIe Base spec 5.0 section 6.12); a PCIe-to-PCI or PCI-to-PCI bridge never does (the
//! devices behind it share its requester id as a DMA alias), and a switch without ACS on
//! its downstream ports (QEMU 7.2's xio3130) lets everything below its upstream port talk
//! peer to peer. Then functions of one multi-function slot without ACS are merged.
//!
//! INTx: each bridge swizzles a child's pin as (pin + slot) mod 4 (PCI-to-PCI Bridge
//! Architecture spec 1.2 section 9.1); on the root bus QEMU's ICH9 routes slot s pin p to
//! PIRQ[(s + p) mod 4] (hw/isa/lpc_ich9.c default routing, slots 0-24).

use crate::models::Kind;
use crate::topology::PlacedDevice;
use std::collections::BTreeMap;

fn parent_index(devices: &[PlacedDevice], device: &PlacedDevice) -> Option<usize> {
    let parent = device.parent.as_ref()?;
    devices
        .iter()
        .position(|d| !d.builtin && d.physical_function.is_none() && &d.id == parent)
}

fn isolates(bridge: &PlacedDevice) -> bool {
    let acs_disabled = bridge
        .props
        .iter()
        .any(|(k, v)| k == "disable-acs" && (v == "on" || v == "true"));
    bridge.kind == Kind::RootPort && !acs_disabled
}

fn anchor(devices: &[PlacedDevice], index: usize) -> usize {
    let mut node = index;
    // Depth is bounded by the number of devices (each step moves to a distinct parent).
    for _ in 0..devices.len() {
        let Some(device) = devices.get(node) else {
            break;
        };
        match parent_index(devices, device) {
            Some(parent) if devices.get(parent).is_some_and(|p| !isolates(p)) => node = parent,
            _ => break,
        }
    }
    node
}

fn find(parents: &mut [usize], mut x: usize) -> usize {
    for _ in 0..parents.len() {
        let Some(&p) = parents.get(x) else { break };
        if p == x {
            break;
        }
        x = p;
    }
    x
}

fn union(parents: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parents, a), find(parents, b));
    if let Some(slot) = parents.get_mut(ra.max(rb)) {
        *slot = ra.min(rb);
    }
}

/// Fill `iommu_group` (numbered by lowest BDF) and `intx_line` of every device.
pub fn assign_groups(devices: &mut [PlacedDevice]) {
    let count = devices.len();
    let mut parents: Vec<usize> = (0..count).collect();
    for index in 0..count {
        let root = anchor(devices, index);
        union(&mut parents, index, root);
    }
    // Functions of one multi-function slot without ACS share a group (not SR-IOV VFs).
    let mut slots: BTreeMap<(Option<String>, u8), usize> = BTreeMap::new();
    for (index, device) in devices.iter().enumerate() {
        if device.physical_function.is_some() || (device.kind == Kind::RootPort) {
            continue;
        }
        let key = (device.parent.clone(), device.addr.slot);
        match slots.get(&key) {
            Some(&first) => union(&mut parents, first, index),
            None => {
                slots.insert(key, index);
            }
        }
    }
    let mut lowest: BTreeMap<usize, (u8, u8, u8)> = BTreeMap::new();
    for (index, device) in devices.iter().enumerate() {
        let root = find(&mut parents, index);
        let bdf = (device.bdf.bus, device.bdf.device, device.bdf.function);
        let entry = lowest.entry(root).or_insert(bdf);
        *entry = (*entry).min(bdf);
    }
    let mut order: Vec<(usize, (u8, u8, u8))> = lowest.into_iter().collect();
    order.sort_by_key(|(_, bdf)| *bdf);
    let numbers: BTreeMap<usize, u32> = order
        .iter()
        .enumerate()
        .map(|(n, (root, _))| (*root, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect();
    for index in 0..count {
        let root = find(&mut parents, index);
        let line = intx_line(devices, index);
        if let Some(device) = devices.get_mut(index) {
            device.iommu_group = numbers.get(&root).copied().unwrap_or(u32::MAX);
            if device.intx_line.is_some() {
                device.intx_line = line;
            }
        }
    }
}

fn intx_line(devices: &[PlacedDevice], index: usize) -> Option<u8> {
    let mut pin: u8 = 0; // INTA
    let mut node = devices.get(index)?;
    for _ in 0..devices.len() {
        match parent_index(devices, node) {
            Some(parent) => {
                pin = (pin + node.addr.slot) % 4;
                node = devices.get(parent)?;
            }
            None => return Some((node.addr.slot + pin) % 4),
        }
    }
    None
}
