//! Performing resets, every wait bounded and done through [`Delay`]:
//!
//! - FLR (PCIe Base spec 6.0 section 6.6.2): wait for Transactions Pending to clear (at most
//!   4 polls, 100/200/400/800 ms apart, then proceed as Linux does), set Initiate FLR, wait
//!   100 ms, then poll until the function answers config reads (at most 10 x 100 ms);
//! - AF FLR: the same through the Advanced Features registers;
//! - PM: D3hot, 10 ms, D0, 10 ms (PCI PM spec 1.2 section 5.6.1, table 5-6 recovery time);
//! - secondary bus reset: assert for 2 ms (at least 1 ms, PCI spec 3.0 section 4.3.2 Trst),
//!   release, wait 100 ms (PCIe Base spec 6.0 section 6.6.1), poll readiness.
//!
//! The config state of every function the reset touches is saved before and restored after,
//! with bus mastering left off.

use crate::function::FunctionInfo;
use crate::inventory::Inventory;
use crate::registers::{advanced_features, header, pcie, power_management, type1, BridgeControl};
use crate::reset::{reset_method, ResetMethod};
use crate::saved_state::SavedState;
use crate::{ConfigSpace, Delay};
use core::fmt;
use pci_api::{Bdf, PciError};

/// Why a reset failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetError {
    /// No such function.
    NoSuchFunction(Bdf),
    /// The function has no usable reset method.
    NoResetMethod(Bdf),
    /// The function did not answer config reads within the bounded wait after the reset.
    NotReady(Bdf),
    /// More functions below the bridge than a bus reset can save state for.
    TooManyFunctionsOnBus(Bdf),
}

impl fmt::Display for ResetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetError::NoSuchFunction(bdf) => write!(f, "{bdf}: no such function"),
            ResetError::NoResetMethod(bdf) => write!(f, "{bdf}: no usable reset method"),
            ResetError::NotReady(bdf) => write!(f, "{bdf}: not ready after reset"),
            ResetError::TooManyFunctionsOnBus(bdf) => {
                write!(f, "bridge {bdf}: too many functions below for a bus reset")
            }
        }
    }
}

impl From<ResetError> for PciError {
    fn from(error: ResetError) -> PciError {
        match error {
            ResetError::NoSuchFunction(_) => PciError::NoSuchFunction,
            ResetError::NoResetMethod(_) => PciError::NoResetMethod,
            ResetError::NotReady(_) | ResetError::TooManyFunctionsOnBus(_) => PciError::ResetFailed,
        }
    }
}

/// What a completed reset did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetReport {
    /// The method used.
    pub method: ResetMethod,
    /// Transactions were still pending when the FLR was issued anyway.
    pub transactions_were_pending: bool,
    /// Functions whose state was restored.
    pub functions_restored: usize,
}

/// Most functions below one bridge a bus reset saves state for.
const MAX_BUS_RESET_FUNCTIONS: usize = 32;

/// Polls until `bdf` answers config reads: vendor ID neither all-ones nor the CRS value
/// 0x0001 (PCIe Base spec 6.0 section 2.3.1). VFs read 0xffff as vendor: use the class code.
fn wait_ready<C: ConfigSpace + ?Sized, D: Delay + ?Sized>(
    config: &C,
    delay: &mut D,
    function: &FunctionInfo,
) -> Result<(), ResetError> {
    for _ in 0..10 {
        let ready = if function.physical_function.is_some() {
            config.read32(function.bdf, header::REVISION) != 0xffff_ffff
        } else {
            let vendor = config.read16(function.bdf, header::VENDOR_ID);
            vendor != 0xffff && vendor != 0x0001
        };
        if ready {
            return Ok(());
        }
        delay.delay_ms(100);
    }
    Err(ResetError::NotReady(function.bdf))
}

/// Polls a Transactions Pending bit: at most 4 polls, 100, 200, 400, 800 ms apart. Returns
/// true when transactions were still pending at the end.
fn wait_no_pending<D: Delay + ?Sized>(delay: &mut D, mut pending: impl FnMut() -> bool) -> bool {
    for attempt in 0..4u32 {
        if !pending() {
            return false;
        }
        delay.delay_ms(100 << attempt);
    }
    pending()
}

/// Resets `bdf` with its [`reset_method`], saving and restoring the config state of every
/// function the reset touches.
pub fn reset_function<C: ConfigSpace + ?Sized, D: Delay + ?Sized>(
    config: &mut C,
    delay: &mut D,
    inventory: &Inventory,
    bdf: Bdf,
) -> Result<ResetReport, ResetError> {
    let function = inventory.get(bdf).ok_or(ResetError::NoSuchFunction(bdf))?;
    let method = reset_method(inventory, bdf);
    let mut transactions_were_pending = false;
    match method {
        ResetMethod::None => return Err(ResetError::NoResetMethod(bdf)),
        ResetMethod::Flr => {
            let Some(cap) = function.capabilities.pcie else {
                return Err(ResetError::NoResetMethod(bdf));
            };
            let saved = SavedState::save(&*config, function);
            let status = cap.offset + pcie::DEVICE_STATUS;
            transactions_were_pending = wait_no_pending(delay, || {
                config.read16(bdf, status) & pcie::DEVICE_STATUS_TRANSACTIONS_PENDING != 0
            });
            let control = cap.offset + pcie::DEVICE_CONTROL;
            let value = config.read16(bdf, control);
            config.write16(bdf, control, value | pcie::DEVICE_CONTROL_INITIATE_FLR);
            delay.delay_ms(100);
            wait_ready(&*config, delay, function)?;
            saved.restore(config);
        }
        ResetMethod::AdvancedFeaturesFlr => {
            let Some(cap) = function.capabilities.advanced_features else {
                return Err(ResetError::NoResetMethod(bdf));
            };
            let saved = SavedState::save(&*config, function);
            let status = cap.offset + advanced_features::STATUS;
            transactions_were_pending = wait_no_pending(delay, || {
                config.read8(bdf, status) & advanced_features::STATUS_TRANSACTIONS_PENDING != 0
            });
            config.write8(
                bdf,
                cap.offset + advanced_features::CONTROL,
                advanced_features::CONTROL_INITIATE_FLR,
            );
            delay.delay_ms(100);
            wait_ready(&*config, delay, function)?;
            saved.restore(config);
        }
        ResetMethod::PowerManagement => {
            let Some(cap) = function.capabilities.power_management else {
                return Err(ResetError::NoResetMethod(bdf));
            };
            let saved = SavedState::save(&*config, function);
            let register = cap.offset + power_management::CONTROL_STATUS;
            // Keep PME_Status (RW1C) untouched by writing it as 0.
            let base = config.read16(bdf, register)
                & !(power_management::POWER_STATE_MASK | power_management::PME_STATUS);
            config.write16(bdf, register, base | power_management::STATE_D3HOT);
            delay.delay_ms(10);
            config.write16(bdf, register, base | power_management::STATE_D0);
            delay.delay_ms(10);
            wait_ready(&*config, delay, function)?;
            saved.restore(config);
        }
        ResetMethod::SecondaryBusReset { bridge } => {
            let numbers = inventory
                .get(bridge)
                .and_then(|b| b.bus_numbers)
                .ok_or(ResetError::NoResetMethod(bdf))?;
            let mut saved: heapless::Vec<(SavedState, &FunctionInfo), MAX_BUS_RESET_FUNCTIONS> =
                heapless::Vec::new();
            for below in inventory.functions_on_buses(numbers.secondary, numbers.subordinate) {
                saved
                    .push((SavedState::save(&*config, below), below))
                    .map_err(|_| ResetError::TooManyFunctionsOnBus(bridge))?;
            }
            let control = config.read16(bridge, type1::BRIDGE_CONTROL);
            let asserted = control | BridgeControl::SECONDARY_BUS_RESET.bits();
            config.write16(bridge, type1::BRIDGE_CONTROL, asserted);
            delay.delay_ms(2);
            config.write16(
                bridge,
                type1::BRIDGE_CONTROL,
                control & !BridgeControl::SECONDARY_BUS_RESET.bits(),
            );
            delay.delay_ms(100);
            for (state, below) in &saved {
                wait_ready(&*config, delay, below)?;
                state.restore(config);
            }
            return Ok(ResetReport {
                method,
                transactions_were_pending,
                functions_restored: saved.len(),
            });
        }
    }
    Ok(ResetReport {
        method,
        transactions_were_pending,
        functions_restored: 1,
    })
}
