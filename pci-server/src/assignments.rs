//! Which functions the system description assigns to which owner, checked against what the
//! enumeration found (issue 6: "on bare metal the PCI server checks again at boot and refuses
//! mismatches loudly"). An assignment whose function is missing, is a bridge, or (for an SR-IOV
//! virtual function) has no physical function that could provide it, is refused: it is logged
//! as `pci-server: REFUSED: ...` and no owner can claim it.

use core::fmt;

use pci_api::{Bdf, OwnerId};
use pci_core::sriov::virtual_function_bdf;
use pci_core::Inventory;

/// Most assignments tracked (the system description allows no more).
pub const MAX_ASSIGNMENTS: usize = 64;

/// One device record of the system description, as this module needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Host requester id.
    pub host_bdf: Bdf,
    /// The guest it belongs to.
    pub guest: u16,
    /// The description marks it as an SR-IOV virtual function (enabled later).
    pub virtual_function: bool,
}

/// An accepted assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The function.
    pub bdf: Bdf,
    /// Its guest.
    pub guest: u16,
    /// The guest's owner identity (the portal id its driver or VMM calls with).
    pub owner: OwnerId,
    /// A virtual function not enabled yet.
    pub virtual_function: bool,
}

/// Why an assignment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No function answers at the BDF.
    Missing { bdf: Bdf, guest: u16 },
    /// The BDF is a bridge, which the pci-server keeps.
    Bridge { bdf: Bdf, guest: u16 },
    /// No physical function's SR-IOV capability can produce this virtual function.
    NoPhysicalFunction { bdf: Bdf, guest: u16 },
    /// More assignments than this server tracks.
    TooMany { bdf: Bdf, guest: u16 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { bdf, guest } => write!(
                formatter,
                "the system description assigns {bdf} to guest {guest}, but no function answers \
                 there: check the manifest's host BDF against this machine"
            ),
            Self::Bridge { bdf, guest } => write!(
                formatter,
                "the system description assigns {bdf} to guest {guest}, but it is a bridge"
            ),
            Self::NoPhysicalFunction { bdf, guest } => write!(
                formatter,
                "the system description assigns virtual function {bdf} to guest {guest}, but \
                 no SR-IOV physical function can provide it"
            ),
            Self::TooMany { bdf, guest } => write!(
                formatter,
                "assignment of {bdf} to guest {guest} exceeds {MAX_ASSIGNMENTS} assignments"
            ),
        }
    }
}

/// The accepted assignments.
#[derive(Clone, Debug, Default)]
pub struct Assignments {
    accepted: heapless::Vec<Assignment, MAX_ASSIGNMENTS>,
}

/// Whether some physical function of `inventory` can provide virtual function `bdf`.
fn virtual_function_possible(inventory: &Inventory, bdf: Bdf) -> bool {
    inventory.functions().iter().any(|function| {
        function.capabilities.sriov.is_some_and(|sriov| {
            // VF numbers are zero-based (pci_core::sriov::virtual_function_bdf).
            (0..sriov.total_vfs).any(|n| {
                virtual_function_bdf(function.bdf, sriov.first_vf_offset, sriov.vf_stride, n)
                    == Some(bdf)
            })
        })
    })
}

impl Assignments {
    /// Checks `records` against `inventory`; every refusal goes to `refused`. The owner of
    /// guest `g` is `first_owner + g`.
    pub fn check(
        records: impl Iterator<Item = Record>,
        inventory: &Inventory,
        first_owner: u32,
        refused: &mut dyn FnMut(Refusal),
    ) -> Assignments {
        let mut assignments = Assignments::default();
        for record in records {
            let (bdf, guest) = (record.host_bdf, record.guest);
            let problem = match inventory.get(bdf) {
                Some(function) if function.is_bridge() => Some(Refusal::Bridge { bdf, guest }),
                Some(_) => None,
                None if record.virtual_function && virtual_function_possible(inventory, bdf) => {
                    None
                }
                None if record.virtual_function => Some(Refusal::NoPhysicalFunction { bdf, guest }),
                None => Some(Refusal::Missing { bdf, guest }),
            };
            if let Some(problem) = problem {
                refused(problem);
                continue;
            }
            let assignment = Assignment {
                bdf,
                guest,
                owner: OwnerId(first_owner.saturating_add(u32::from(guest))),
                virtual_function: record.virtual_function,
            };
            if assignments.accepted.push(assignment).is_err() {
                refused(Refusal::TooMany { bdf, guest });
            }
        }
        assignments
    }

    /// The accepted assignments.
    pub fn accepted(&self) -> &[Assignment] {
        &self.accepted
    }

    /// The owner the description gives `bdf` to, if it was accepted.
    pub fn owner_of(&self, bdf: Bdf) -> Option<OwnerId> {
        self.accepted
            .iter()
            .find(|assignment| assignment.bdf == bdf)
            .map(|assignment| assignment.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pci_core::fake::{q35_ecam, q35_topology};
    use pci_core::EnumerationOptions;

    fn inventory() -> Inventory {
        let mut config = q35_topology();
        Inventory::enumerate(&mut config, &q35_ecam(), EnumerationOptions::default())
    }

    fn record(bdf: Bdf, guest: u16) -> Record {
        Record {
            host_bdf: bdf,
            guest,
            virtual_function: false,
        }
    }

    #[test]
    fn existing_endpoints_are_accepted_with_their_owner() {
        let inventory = inventory();
        let endpoint = inventory
            .functions()
            .iter()
            .find(|f| !f.is_bridge() && f.class.base != 0x06)
            .map(|f| f.bdf)
            .unwrap();
        let mut refusals = Vec::new();
        let assignments = Assignments::check(
            [record(endpoint, 1)].into_iter(),
            &inventory,
            32,
            &mut |r| refusals.push(r),
        );
        assert!(refusals.is_empty());
        assert_eq!(assignments.owner_of(endpoint), Some(OwnerId(33)));
    }

    #[test]
    fn missing_functions_and_bridges_are_refused_loudly() {
        let inventory = inventory();
        let bridge = inventory
            .functions()
            .iter()
            .find(|f| f.is_bridge())
            .map(|f| f.bdf)
            .unwrap();
        let missing = Bdf::new(0xee, 0x1f, 7).unwrap();
        let mut refusals = Vec::new();
        let vf = Record {
            host_bdf: Bdf::new(0xed, 0, 1).unwrap(),
            guest: 2,
            virtual_function: true,
        };
        let assignments = Assignments::check(
            [record(missing, 0), record(bridge, 1), vf].into_iter(),
            &inventory,
            32,
            &mut |r| refusals.push(r),
        );
        assert_eq!(
            refusals,
            vec![
                Refusal::Missing {
                    bdf: missing,
                    guest: 0
                },
                Refusal::Bridge {
                    bdf: bridge,
                    guest: 1
                },
                Refusal::NoPhysicalFunction {
                    bdf: vf.host_bdf,
                    guest: 2
                },
            ]
        );
        assert!(assignments.accepted().is_empty());
        assert_eq!(assignments.owner_of(missing), None);
        assert!(format!("{}", refusals[0]).contains("no function answers"));
    }
}
