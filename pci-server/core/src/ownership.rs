//! The ownership state machine: every function starts Unassigned (bus mastering off), and moves
//! Unassigned -> Quarantined -> Assigned(owner) -> Quarantined (on release). Each change
//! resets the function and attaches it (with its DMA aliases) to the quarantine domain or the
//! owner's domain through [`IommuBinding`]. Requests are validated before anything changes; a
//! rejected request changes nothing.

use crate::alias::{dma_aliases, MAX_ALIASES};
use crate::inventory::{Inventory, MAX_FUNCTIONS};
use crate::registers::{header, Command};
use crate::reset_exec::{reset_function, ResetError, ResetReport};
use crate::{ConfigSpace, Delay};
use core::fmt;
use pci_api::{Bdf, OwnerId, OwnerStateCode, PciError};

/// Who holds a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Held by the pci-server since boot; never assigned.
    Unassigned,
    /// In the quarantine domain (no access to anyone's memory).
    Quarantined,
    /// Assigned to an owner, attached to its DMA domain.
    Assigned(OwnerId),
}

impl OwnerState {
    /// The wire code.
    pub fn code(self) -> OwnerStateCode {
        match self {
            OwnerState::Unassigned => OwnerStateCode::Unassigned,
            OwnerState::Quarantined => OwnerStateCode::Quarantined,
            OwnerState::Assigned(_) => OwnerStateCode::Assigned,
        }
    }
}

impl fmt::Display for OwnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnerState::Unassigned => f.write_str("unassigned"),
            OwnerState::Quarantined => f.write_str("quarantined"),
            OwnerState::Assigned(owner) => write!(f, "assigned to {owner}"),
        }
    }
}

/// The requester IDs of one function as the IOMMU sees them: its own and its DMA aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaIdentity {
    /// The function.
    pub bdf: Bdf,
    /// Its requester IDs, its own first.
    pub requester_ids: heapless::Vec<Bdf, MAX_ALIASES>,
}

/// The iommu-server refused an attachment; the code is its error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuRefusal(pub u32);

/// Attaching functions to DMA domains. The server binary implements this over IPC to the
/// iommu-server; tests use [`crate::fake::RecordingIommu`].
pub trait IommuBinding {
    /// Attach every requester ID of `device` to the quarantine domain.
    fn attach_quarantine(&mut self, device: &DmaIdentity) -> Result<(), IommuRefusal>;
    /// Attach every requester ID of `device` to `owner`'s domain.
    fn attach_owner(&mut self, owner: OwnerId, device: &DmaIdentity) -> Result<(), IommuRefusal>;
}

/// The operation a transition error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Unassigned -> Quarantined.
    Quarantine,
    /// Quarantined -> Assigned.
    Assign,
    /// Assigned -> Quarantined.
    Release,
}

/// Why an ownership request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipError {
    /// No such function.
    NoSuchFunction(Bdf),
    /// Bridges and host bridges are never assigned.
    NotAssignable(Bdf),
    /// The transition is not allowed from the current state. Nothing changed.
    InvalidTransition {
        /// The function.
        bdf: Bdf,
        /// Its state.
        from: OwnerState,
        /// What was asked.
        requested: Transition,
    },
    /// The caller is not the function's owner.
    NotOwner {
        /// The function.
        bdf: Bdf,
        /// The caller.
        caller: OwnerId,
    },
    /// Another function of the IOMMU group belongs to another owner.
    GroupConflict {
        /// The function asked for.
        bdf: Bdf,
        /// The conflicting group member.
        other: Bdf,
    },
    /// The reset failed (the function stays in its previous state, bus mastering off).
    Reset(ResetError),
    /// The iommu-server refused (the function stays in its previous state).
    Iommu(IommuRefusal),
}

impl fmt::Display for OwnershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnershipError::NoSuchFunction(bdf) => write!(f, "{bdf}: no such function"),
            OwnershipError::NotAssignable(bdf) => write!(f, "{bdf}: bridges are not assignable"),
            OwnershipError::InvalidTransition {
                bdf,
                from,
                requested,
            } => write!(f, "{bdf}: cannot {requested:?} a function that is {from}"),
            OwnershipError::NotOwner { bdf, caller } => {
                write!(f, "{bdf}: {caller} does not own this function")
            }
            OwnershipError::GroupConflict { bdf, other } => {
                write!(f, "{bdf}: group member {other} has another owner")
            }
            OwnershipError::Reset(error) => write!(f, "reset failed: {error}"),
            OwnershipError::Iommu(refusal) => {
                write!(
                    f,
                    "iommu-server refused the attachment (code {})",
                    refusal.0
                )
            }
        }
    }
}

impl From<OwnershipError> for PciError {
    fn from(error: OwnershipError) -> PciError {
        match error {
            OwnershipError::NoSuchFunction(_) => PciError::NoSuchFunction,
            OwnershipError::NotAssignable(_) => PciError::NotAssignable,
            OwnershipError::InvalidTransition { .. } => PciError::InvalidTransition,
            OwnershipError::NotOwner { .. } => PciError::NotOwner,
            OwnershipError::GroupConflict { .. } => PciError::GroupConflict,
            OwnershipError::Reset(error) => error.into(),
            OwnershipError::Iommu(_) => PciError::IommuRefused,
        }
    }
}

/// The hardware-facing services a transition uses.
pub struct Platform<'a, C: ConfigSpace + ?Sized, D: Delay + ?Sized, I: IommuBinding + ?Sized> {
    /// Config space.
    pub config: &'a mut C,
    /// Waits.
    pub delay: &'a mut D,
    /// Domain attachment.
    pub iommu: &'a mut I,
}

/// The ownership state of every function of an inventory.
#[derive(Clone, Debug)]
pub struct Ownership {
    states: heapless::Vec<(Bdf, OwnerState), MAX_FUNCTIONS>,
}

fn bus_master_off<C: ConfigSpace + ?Sized>(config: &mut C, bdf: Bdf) {
    let command = Command::from_bits_retain(config.read16(bdf, header::COMMAND));
    if command.contains(Command::BUS_MASTER) {
        config.write16(bdf, header::COMMAND, (command - Command::BUS_MASTER).bits());
    }
}

impl Ownership {
    /// Every endpoint of `inventory` Unassigned, with Bus Master Enable turned off (bridges
    /// keep bus mastering: they forward the DMA of the devices below them).
    pub fn new<C: ConfigSpace + ?Sized>(config: &mut C, inventory: &Inventory) -> Ownership {
        let mut ownership = Ownership {
            states: heapless::Vec::new(),
        };
        ownership.track_new_functions(config, inventory);
        ownership
    }

    /// Starts tracking functions added to the inventory since (VFs), bus mastering off.
    pub fn track_new_functions<C: ConfigSpace + ?Sized>(
        &mut self,
        config: &mut C,
        inventory: &Inventory,
    ) {
        for function in inventory.functions() {
            if self.state(function.bdf).is_some() {
                continue;
            }
            if !function.is_bridge() {
                bus_master_off(config, function.bdf);
            }
            let _ = self.states.push((function.bdf, OwnerState::Unassigned));
        }
    }

    /// A function's state.
    pub fn state(&self, bdf: Bdf) -> Option<OwnerState> {
        self.states
            .iter()
            .find(|(b, _)| *b == bdf)
            .map(|(_, state)| *state)
    }

    fn set(&mut self, bdf: Bdf, state: OwnerState) {
        if let Some(slot) = self.states.iter_mut().find(|(b, _)| *b == bdf) {
            slot.1 = state;
        }
    }

    fn identity(inventory: &Inventory, bdf: Bdf) -> DmaIdentity {
        DmaIdentity {
            bdf,
            requester_ids: dma_aliases(inventory, bdf)
                .iter()
                .map(|alias| alias.requester_id)
                .collect(),
        }
    }

    fn checked(&self, inventory: &Inventory, bdf: Bdf) -> Result<OwnerState, OwnershipError> {
        let function = inventory
            .get(bdf)
            .ok_or(OwnershipError::NoSuchFunction(bdf))?;
        if function.is_bridge() || function.class.base == 0x06 {
            return Err(OwnershipError::NotAssignable(bdf));
        }
        self.state(bdf).ok_or(OwnershipError::NoSuchFunction(bdf))
    }

    /// Unassigned -> Quarantined: attach to the quarantine domain, then reset.
    pub fn quarantine<C, D, I>(
        &mut self,
        platform: &mut Platform<'_, C, D, I>,
        inventory: &Inventory,
        bdf: Bdf,
    ) -> Result<ResetReport, OwnershipError>
    where
        C: ConfigSpace + ?Sized,
        D: Delay + ?Sized,
        I: IommuBinding + ?Sized,
    {
        let from = self.checked(inventory, bdf)?;
        if from != OwnerState::Unassigned {
            return Err(OwnershipError::InvalidTransition {
                bdf,
                from,
                requested: Transition::Quarantine,
            });
        }
        if crate::reset::reset_method(inventory, bdf) == crate::reset::ResetMethod::None {
            return Err(OwnershipError::Reset(ResetError::NoResetMethod(bdf)));
        }
        bus_master_off(platform.config, bdf);
        platform
            .iommu
            .attach_quarantine(&Self::identity(inventory, bdf))
            .map_err(OwnershipError::Iommu)?;
        let report = reset_function(platform.config, platform.delay, inventory, bdf)
            .map_err(OwnershipError::Reset)?;
        self.set(bdf, OwnerState::Quarantined);
        Ok(report)
    }

    /// Quarantined -> Assigned(owner): reset in quarantine, then attach to the owner's domain.
    /// Refused when another function of the group is assigned to someone else.
    pub fn assign<C, D, I>(
        &mut self,
        platform: &mut Platform<'_, C, D, I>,
        inventory: &Inventory,
        bdf: Bdf,
        owner: OwnerId,
    ) -> Result<ResetReport, OwnershipError>
    where
        C: ConfigSpace + ?Sized,
        D: Delay + ?Sized,
        I: IommuBinding + ?Sized,
    {
        let from = self.checked(inventory, bdf)?;
        if from != OwnerState::Quarantined {
            return Err(OwnershipError::InvalidTransition {
                bdf,
                from,
                requested: Transition::Assign,
            });
        }
        if let Some(group) = inventory.group_of(bdf) {
            for member in inventory.group_members(group) {
                if let Some(OwnerState::Assigned(other)) = self.state(member.bdf) {
                    if other != owner {
                        return Err(OwnershipError::GroupConflict {
                            bdf,
                            other: member.bdf,
                        });
                    }
                }
            }
        }
        let report = reset_function(platform.config, platform.delay, inventory, bdf)
            .map_err(OwnershipError::Reset)?;
        platform
            .iommu
            .attach_owner(owner, &Self::identity(inventory, bdf))
            .map_err(OwnershipError::Iommu)?;
        self.set(bdf, OwnerState::Assigned(owner));
        Ok(report)
    }

    /// Assigned(owner) -> Quarantined: bus mastering off, quarantine domain, reset. Only the
    /// owner may release.
    pub fn release<C, D, I>(
        &mut self,
        platform: &mut Platform<'_, C, D, I>,
        inventory: &Inventory,
        bdf: Bdf,
        caller: OwnerId,
    ) -> Result<ResetReport, OwnershipError>
    where
        C: ConfigSpace + ?Sized,
        D: Delay + ?Sized,
        I: IommuBinding + ?Sized,
    {
        let from = self.checked(inventory, bdf)?;
        match from {
            OwnerState::Assigned(owner) if owner == caller => {}
            OwnerState::Assigned(_) => return Err(OwnershipError::NotOwner { bdf, caller }),
            _ => {
                return Err(OwnershipError::InvalidTransition {
                    bdf,
                    from,
                    requested: Transition::Release,
                })
            }
        }
        bus_master_off(platform.config, bdf);
        platform
            .iommu
            .attach_quarantine(&Self::identity(inventory, bdf))
            .map_err(OwnershipError::Iommu)?;
        // From here the device can no longer reach the owner's memory: it is quarantined
        // even if the reset fails.
        self.set(bdf, OwnerState::Quarantined);
        reset_function(platform.config, platform.delay, inventory, bdf)
            .map_err(OwnershipError::Reset)
    }

    /// Checks that `caller` owns `bdf`.
    pub fn check_owner(&self, bdf: Bdf, caller: OwnerId) -> Result<(), OwnershipError> {
        match self.state(bdf) {
            None => Err(OwnershipError::NoSuchFunction(bdf)),
            Some(OwnerState::Assigned(owner)) if owner == caller => Ok(()),
            Some(_) => Err(OwnershipError::NotOwner { bdf, caller }),
        }
    }
}
