//! IOMMU groups: the smallest sets of functions the IOMMU can tell apart, so a set that must
//! be assigned whole. The rules are Linux's `pci_device_group`, made strict for switches:
//!
//! 1. a function shares a group with every bridge that substitutes its requester ID (DMA
//!    aliases, see [`crate::alias`]);
//! 2. walking up, the first bridge whose whole path to the root isolates peers (ACS, see
//!    [`crate::acs`]) stops the walk; every bridge passed on the way that does not isolate
//!    joins the function's group;
//! 3. functions of one multi-function device that do not isolate peers share a group;
//! 4. (stricter than Linux) a switch downstream port without ACS lets traffic from below reach
//!    its sibling ports, so all functions on its bus share its group.

use crate::acs::isolates_peers;
use crate::alias::dma_aliases;
use crate::capability::PortType;
use crate::inventory::{Inventory, MAX_FUNCTIONS};
use pci_api::Bdf;

/// Union-find over inventory indices.
struct Sets {
    parent: [u16; MAX_FUNCTIONS],
}

impl Sets {
    fn new() -> Sets {
        let mut parent = [0u16; MAX_FUNCTIONS];
        for (index, slot) in parent.iter_mut().enumerate() {
            *slot = index as u16;
        }
        Sets { parent }
    }

    fn find(&mut self, index: usize) -> usize {
        let mut root = index;
        // Each step moves strictly toward a root; MAX_FUNCTIONS steps bound it.
        for _ in 0..MAX_FUNCTIONS {
            let next = usize::from(self.parent.get(root).copied().unwrap_or(root as u16));
            if next == root {
                break;
            }
            root = next;
        }
        if let Some(slot) = self.parent.get_mut(index) {
            *slot = root as u16;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Smaller index becomes the root: group numbers follow BDF order.
            let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
            if let Some(slot) = self.parent.get_mut(high) {
                *slot = low as u16;
            }
        }
    }
}

/// True when `bridge` and every bridge above it isolate peers.
fn path_isolates(inventory: &Inventory, bridge: Bdf) -> bool {
    let isolates = |bdf: Bdf| inventory.get(bdf).is_some_and(isolates_peers);
    isolates(bridge) && inventory.upstream_path(bridge).iter().all(|b| isolates(*b))
}

/// Group number per function, in inventory order. Group numbers are dense and ordered by the
/// lowest BDF in each group.
pub fn compute_groups(inventory: &Inventory) -> heapless::Vec<u16, MAX_FUNCTIONS> {
    let functions = inventory.functions();
    let mut sets = Sets::new();
    let index = |bdf: Bdf| functions.iter().position(|f| f.bdf == bdf);

    for (me, function) in functions.iter().enumerate() {
        // Rule 1: aliases.
        for alias in dma_aliases(inventory, function.bdf) {
            if let Some(bridge) = alias.via.and_then(index) {
                sets.union(me, bridge);
            }
            if let Some(owner) = index(alias.requester_id) {
                sets.union(me, owner);
            }
        }
        // Rule 2: walk up to the first isolating path.
        let mut root = me;
        for bridge in inventory.upstream_path(function.bdf) {
            if path_isolates(inventory, bridge) {
                break;
            }
            if let Some(bridge_index) = index(bridge) {
                root = bridge_index;
            }
        }
        sets.union(me, root);
        // Rule 3: multi-function siblings without isolation.
        if function.multi_function
            && function.physical_function.is_none()
            && !isolates_peers(function)
        {
            for (other, sibling) in functions.iter().enumerate() {
                if other != me
                    && sibling.physical_function.is_none()
                    && sibling.bdf.bus() == function.bdf.bus()
                    && sibling.bdf.device() == function.bdf.device()
                    && !isolates_peers(sibling)
                {
                    sets.union(me, other);
                }
            }
        }
        // Rule 4: a downstream port without ACS joins its sibling ports.
        let downstream = function
            .capabilities
            .pcie
            .is_some_and(|pcie| pcie.port_type == PortType::SwitchDownstream);
        if downstream && !isolates_peers(function) {
            for (other, sibling) in functions.iter().enumerate() {
                if other != me && sibling.bdf.bus() == function.bdf.bus() {
                    sets.union(me, other);
                }
            }
        }
    }

    // Number groups densely in order of their lowest index.
    let mut numbers = [u16::MAX; MAX_FUNCTIONS];
    let mut next = 0u16;
    let mut groups = heapless::Vec::new();
    for me in 0..functions.len() {
        let root = sets.find(me);
        let number = match numbers.get_mut(root) {
            Some(slot) if *slot == u16::MAX => {
                *slot = next;
                next += 1;
                *slot
            }
            Some(slot) => *slot,
            None => u16::MAX,
        };
        let _ = groups.push(number);
    }
    groups
}
