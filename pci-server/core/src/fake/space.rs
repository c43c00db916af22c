//! The fake config space of a whole segment: functions by BDF, and the side effects writes
//! have on hardware (FLR, AF FLR, D3hot->D0 soft reset, secondary bus reset, VF Enable), each
//! recorded as a [`FakeEvent`].

use super::function::FakeFunction;
use crate::registers::{advanced_features, header, pcie, power_management, sriov, type1};
use crate::{AccessWidth, Bdf, ConfigSpace};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Something the fake hardware did in response to a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeEvent {
    /// A PCIe Function Level Reset.
    FunctionLevelReset(Bdf),
    /// An Advanced Features FLR.
    AdvancedFeaturesReset(Bdf),
    /// A D3hot -> D0 transition that reset the function (No_Soft_Reset clear).
    PowerManagementReset(Bdf),
    /// A power state change (`from`, `to`), reset or not.
    PowerStateChange(Bdf, u8, u8),
    /// Secondary Bus Reset asserted on a bridge.
    SecondaryBusResetAsserted(Bdf),
    /// Secondary Bus Reset released: every function below was reset.
    SecondaryBusReset(Bdf),
    /// VF Enable set: this many VFs appeared.
    VirtualFunctionsEnabled(Bdf, u16),
    /// VF Enable cleared.
    VirtualFunctionsDisabled(Bdf),
}

/// A fake PCI segment.
#[derive(Clone, Debug, Default)]
pub struct FakeConfigSpace {
    functions: BTreeMap<u16, FakeFunction>,
    events: Vec<FakeEvent>,
    writes: Vec<(Bdf, u16, AccessWidth, u32)>,
}

impl FakeConfigSpace {
    /// An empty segment.
    pub fn new() -> FakeConfigSpace {
        FakeConfigSpace::default()
    }

    /// Places a function (replacing any there); its current bytes become its power-on state.
    pub fn insert(&mut self, bdf: Bdf, mut function: FakeFunction) -> &mut FakeConfigSpace {
        function.freeze_power_on_state();
        self.functions.insert(bdf.requester_id(), function);
        self
    }

    /// Builder form of [`FakeConfigSpace::insert`].
    pub fn with(mut self, bdf: Bdf, function: FakeFunction) -> FakeConfigSpace {
        self.insert(bdf, function);
        self
    }

    /// Removes a function.
    pub fn remove(&mut self, bdf: Bdf) -> Option<FakeFunction> {
        self.functions.remove(&bdf.requester_id())
    }

    /// A function.
    pub fn function(&self, bdf: Bdf) -> Option<&FakeFunction> {
        self.functions.get(&bdf.requester_id())
    }

    /// A function, mutably (to script behaviour mid-test).
    pub fn function_mut(&mut self, bdf: Bdf) -> Option<&mut FakeFunction> {
        self.functions.get_mut(&bdf.requester_id())
    }

    /// Overwrites config bytes directly (no masks, no side effects): to simulate the device
    /// changing its own registers, or a malicious layout.
    pub fn poke(&mut self, bdf: Bdf, offset: u16, bytes: &[u8]) {
        if let Some(function) = self.function_mut(bdf) {
            for (i, byte) in bytes.iter().enumerate() {
                function.put8(offset.saturating_add(i as u16), *byte);
            }
        }
    }

    /// Side effects so far.
    pub fn events(&self) -> &[FakeEvent] {
        &self.events
    }

    /// Forgets recorded events and writes.
    pub fn clear_log(&mut self) {
        self.events.clear();
        self.writes.clear();
    }

    /// Every write so far: (bdf, offset, width, value).
    pub fn writes(&self) -> &[(Bdf, u16, AccessWidth, u32)] {
        &self.writes
    }

    /// BDFs present.
    pub fn bdfs(&self) -> Vec<Bdf> {
        self.functions
            .keys()
            .map(|id| Bdf::from_requester_id(*id))
            .collect()
    }

    fn reset_function(&mut self, bdf: Bdf) {
        let removed_vfs = self.virtual_functions_of(bdf);
        if let Some(function) = self.function_mut(bdf) {
            function.reset_to_power_on();
        }
        for vf in removed_vfs {
            self.remove(vf);
        }
    }

    fn virtual_functions_of(&self, pf: Bdf) -> Vec<Bdf> {
        let Some(function) = self.function(pf) else {
            return Vec::new();
        };
        let Some(offset) = function.sriov_offset else {
            return Vec::new();
        };
        if function.get16(offset + sriov::CONTROL) & sriov::CONTROL_VF_ENABLE == 0 {
            return Vec::new();
        }
        let count = function.get16(offset + sriov::NUM_VFS);
        let first = function.get16(offset + sriov::FIRST_VF_OFFSET);
        let stride = function.get16(offset + sriov::VF_STRIDE);
        (0..count)
            .filter_map(|n| crate::sriov::virtual_function_bdf(pf, first, stride, n))
            .collect()
    }

    fn after_write(&mut self, bdf: Bdf, offset: u16, bytes: u16, before: &FakeFunction) {
        let touches =
            |register: u16, size: u16| offset < register + size && register < offset + bytes;
        let Some(after) = self.function(bdf).cloned() else {
            return;
        };
        // PCIe FLR: Initiate FLR written as 1 (PCIe Base spec 6.0 section 6.6.2).
        if let Some(cap) = after.pcie_offset {
            let register = cap + pcie::DEVICE_CONTROL;
            if touches(register, 2)
                && after.get16(register) & pcie::DEVICE_CONTROL_INITIATE_FLR != 0
            {
                self.events.push(FakeEvent::FunctionLevelReset(bdf));
                self.reset_function(bdf);
                return;
            }
        }
        if let Some(cap) = after.af_offset {
            let register = cap + advanced_features::CONTROL;
            if touches(register, 1)
                && after.get8(register) & advanced_features::CONTROL_INITIATE_FLR != 0
            {
                self.events.push(FakeEvent::AdvancedFeaturesReset(bdf));
                self.reset_function(bdf);
                return;
            }
        }
        if let Some(cap) = after.pm_offset {
            let register = cap + power_management::CONTROL_STATUS;
            if touches(register, 2) {
                let from = (before.get16(register) & power_management::POWER_STATE_MASK) as u8;
                let to = (after.get16(register) & power_management::POWER_STATE_MASK) as u8;
                if from != to {
                    self.events.push(FakeEvent::PowerStateChange(bdf, from, to));
                }
                let no_soft_reset = after.get16(register) & power_management::NO_SOFT_RESET != 0;
                if from == 3 && to == 0 && !no_soft_reset {
                    self.events.push(FakeEvent::PowerManagementReset(bdf));
                    self.reset_function(bdf);
                    return;
                }
            }
        }
        let is_bridge = after.get8(header::HEADER_TYPE) & 0x7f == 1;
        if is_bridge && touches(type1::BRIDGE_CONTROL, 2) {
            let bit = 1 << 6;
            let was = before.get16(type1::BRIDGE_CONTROL) & bit != 0;
            let now = after.get16(type1::BRIDGE_CONTROL) & bit != 0;
            if !was && now {
                self.events.push(FakeEvent::SecondaryBusResetAsserted(bdf));
            }
            if was && !now {
                let secondary = after.get8(type1::SECONDARY_BUS);
                let subordinate = after.get8(type1::SUBORDINATE_BUS);
                let below: Vec<Bdf> = self
                    .bdfs()
                    .into_iter()
                    .filter(|b| {
                        b.bus() >= secondary && b.bus() <= subordinate && secondary > bdf.bus()
                    })
                    .collect();
                for function in below {
                    self.reset_function(function);
                }
                self.events.push(FakeEvent::SecondaryBusReset(bdf));
            }
        }
        if let Some(cap) = after.sriov_offset {
            let register = cap + sriov::CONTROL;
            if touches(register, 2) {
                let was = before.get16(register) & sriov::CONTROL_VF_ENABLE != 0;
                let now = after.get16(register) & sriov::CONTROL_VF_ENABLE != 0;
                if !was && now {
                    self.enable_virtual_functions(bdf, &after, cap);
                } else if was && !now {
                    let vfs = self.virtual_functions_of_state(bdf, before, cap);
                    for vf in vfs {
                        self.remove(vf);
                    }
                    self.events.push(FakeEvent::VirtualFunctionsDisabled(bdf));
                }
            }
        }
    }

    fn virtual_functions_of_state(&self, pf: Bdf, state: &FakeFunction, cap: u16) -> Vec<Bdf> {
        let count = state.get16(cap + sriov::NUM_VFS);
        let first = state.get16(cap + sriov::FIRST_VF_OFFSET);
        let stride = state.get16(cap + sriov::VF_STRIDE);
        (0..count)
            .filter_map(|n| crate::sriov::virtual_function_bdf(pf, first, stride, n))
            .collect()
    }

    fn enable_virtual_functions(&mut self, pf: Bdf, state: &FakeFunction, cap: u16) {
        let Some(template) = state.virtual_function_template.clone() else {
            return;
        };
        let count = state
            .get16(cap + sriov::NUM_VFS)
            .min(state.get16(cap + sriov::TOTAL_VFS));
        let vfs = self.virtual_functions_of_state(pf, state, cap);
        for vf in vfs.into_iter().take(usize::from(count)) {
            self.insert(vf, (*template).clone());
        }
        self.events
            .push(FakeEvent::VirtualFunctionsEnabled(pf, count));
    }
}

impl ConfigSpace for FakeConfigSpace {
    fn read(&self, bdf: Bdf, offset: u16, width: AccessWidth) -> u32 {
        if !width.fits(offset) {
            return width.value_mask();
        }
        let Some(function) = self.function(bdf) else {
            return width.value_mask();
        };
        let remaining = function.not_ready_reads.get();
        if remaining > 0 {
            function.not_ready_reads.set(remaining - 1);
            return width.value_mask();
        }
        let mut value = match width {
            AccessWidth::Byte => u32::from(function.get8(offset)),
            AccessWidth::Word => u32::from(function.get16(offset)),
            AccessWidth::Dword => function.get32(offset),
        };
        if let Some(cap) = function.pcie_offset {
            let status = cap + pcie::DEVICE_STATUS;
            let pending = function.pending_transaction_reads.get();
            if pending > 0 && offset <= status && status < offset + width.bytes() {
                function.pending_transaction_reads.set(pending - 1);
                value |=
                    u32::from(pcie::DEVICE_STATUS_TRANSACTIONS_PENDING) << (8 * (status - offset));
            }
        }
        value
    }

    fn write(&mut self, bdf: Bdf, offset: u16, width: AccessWidth, value: u32) {
        self.writes.push((bdf, offset, width, value));
        if !width.fits(offset) {
            return;
        }
        let Some(function) = self.function_mut(bdf) else {
            return;
        };
        let before = function.clone();
        function.apply_write(offset, width.bytes(), value & width.value_mask());
        self.after_write(bdf, offset, width.bytes(), &before);
    }
}
