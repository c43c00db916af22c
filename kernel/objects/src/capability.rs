//! Capabilities and per-domain capability tables: the one rights-narrowing function
//! [`derive`] and the one lookup choke point [`CapabilityTable::lookup`].
//!
//! A capability is an object reference plus rights whose meaning depends on the object's type
//! (NOVA's model). Each table slot also holds the capability's links in the derivation tree
//! (parent, first child, siblings, all as [`CapabilityAddress`]es that may point into other
//! domains' tables) and the head of the list of mappings made through it.

use sluice_abi::syscall::{ObjectType, Selector, Status};

use crate::object::ObjectId;

/// A capability: which object, of which type, with which rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Capability {
    /// The object named.
    pub object: ObjectId,
    /// Its type (cached so lookup needs no object-table access).
    pub object_type: ObjectType,
    /// Rights bits, always a subset of `object_type.valid_rights()`.
    pub rights: u64,
}

impl Capability {
    /// True when every bit of `required` is held.
    pub const fn has_rights(&self, required: u64) -> bool {
        required & !self.rights == 0
    }
}

/// The only way to make a capability from another: same object, same type, rights narrowed to
/// `requested`. Fails with `InvalidRights` when `requested` has a bit undefined for the type or
/// a bit the source does not hold. Changes nothing.
pub const fn derive(source: &Capability, requested: u64) -> Result<Capability, Status> {
    if requested & !source.object_type.valid_rights() != 0 || requested & !source.rights != 0 {
        return Err(Status::InvalidRights);
    }
    Ok(Capability {
        object: source.object,
        object_type: source.object_type,
        rights: requested,
    })
}

/// Where a capability lives: which table, which slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapabilityAddress {
    /// Index of the table in the model's table array.
    pub table: u16,
    /// Slot (selector) in that table.
    pub slot: u32,
}

/// An occupied table slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityNode {
    /// The capability.
    pub capability: Capability,
    /// The capability this one was derived from (`None` for an original).
    pub parent: Option<CapabilityAddress>,
    /// First capability derived from this one.
    pub first_child: Option<CapabilityAddress>,
    /// Next capability with the same parent.
    pub next_sibling: Option<CapabilityAddress>,
    /// Previous capability with the same parent.
    pub previous_sibling: Option<CapabilityAddress>,
    /// First mapping made through this capability (index in the mapping table).
    pub first_mapping: Option<u32>,
}

impl CapabilityNode {
    /// A node with no links.
    pub const fn unlinked(capability: Capability) -> CapabilityNode {
        CapabilityNode {
            capability,
            parent: None,
            first_child: None,
            next_sibling: None,
            previous_sibling: None,
            first_mapping: None,
        }
    }
}

/// One domain's capability table: `SLOTS` slots addressed by selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityTable<const SLOTS: usize> {
    /// The domain that owns it, `None` while the table is unused.
    pub(crate) owner: Option<ObjectId>,
    pub(crate) slots: [Option<CapabilityNode>; SLOTS],
}

impl<const SLOTS: usize> CapabilityTable<SLOTS> {
    /// An unused, empty table.
    pub const fn new() -> Self {
        CapabilityTable {
            owner: None,
            slots: [None; SLOTS],
        }
    }

    /// The lookup choke point: the capability at `selector`, checked to name an object of
    /// `expected_type` and to hold every bit of `required_rights`.
    ///
    /// Errors: `InvalidSelector` (beyond the table), `EmptySlot`, `WrongType`, `MissingRight`.
    #[inline]
    pub fn lookup(
        &self,
        selector: Selector,
        expected_type: ObjectType,
        required_rights: u64,
    ) -> Result<&Capability, Status> {
        let capability = self.lookup_any(selector)?;
        if capability.object_type != expected_type {
            return Err(Status::WrongType);
        }
        if !capability.has_rights(required_rights) {
            return Err(Status::MissingRight);
        }
        Ok(capability)
    }

    /// The capability at `selector` whatever its type (for derive, delete, revoke, transfer).
    pub fn lookup_any(&self, selector: Selector) -> Result<&Capability, Status> {
        self.slots
            .get(selector.index())
            .ok_or(Status::InvalidSelector)?
            .as_ref()
            .map(|node| &node.capability)
            .ok_or(Status::EmptySlot)
    }

    /// Check that `selector` is inside the table and empty (a destination for a new capability).
    pub fn check_free(&self, selector: Selector) -> Result<(), Status> {
        match self.slots.get(selector.index()) {
            None => Err(Status::InvalidSelector),
            Some(Some(_)) => Err(Status::SlotOccupied),
            Some(None) => Ok(()),
        }
    }

    /// The node at a slot, with its links.
    pub fn node(&self, slot: u32) -> Option<&CapabilityNode> {
        self.slots.get(usize::try_from(slot).ok()?)?.as_ref()
    }

    pub(crate) fn node_mut(&mut self, slot: u32) -> Option<&mut CapabilityNode> {
        self.slots.get_mut(usize::try_from(slot).ok()?)?.as_mut()
    }

    pub(crate) fn slot_mut(&mut self, slot: u32) -> Option<&mut Option<CapabilityNode>> {
        self.slots.get_mut(usize::try_from(slot).ok()?)
    }

    /// Number of occupied slots.
    pub fn occupied(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_some()).count()
    }
}

impl<const SLOTS: usize> Default for CapabilityTable<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_abi::syscall::{MemoryRights, PortalRights};

    fn memory_capability(rights: MemoryRights) -> Capability {
        Capability {
            object: ObjectId {
                index: 3,
                generation: 1,
            },
            object_type: ObjectType::Memory,
            rights: rights.bits(),
        }
    }

    #[test]
    fn derive_only_narrows_and_keeps_the_object_and_type() {
        let source = memory_capability(MemoryRights::READ | MemoryRights::WRITE);
        let narrowed = derive(&source, MemoryRights::READ.bits()).unwrap();
        assert_eq!(narrowed.object, source.object);
        assert_eq!(narrowed.object_type, ObjectType::Memory);
        assert_eq!(narrowed.rights, MemoryRights::READ.bits());
        assert_eq!(derive(&source, source.rights), Ok(source));
        assert_eq!(
            derive(&narrowed, MemoryRights::WRITE.bits()),
            Err(Status::InvalidRights)
        );
        assert_eq!(
            derive(&source, MemoryRights::EXECUTE.bits()),
            Err(Status::InvalidRights)
        );
        assert_eq!(derive(&source, 1 << 40), Err(Status::InvalidRights));
    }

    #[test]
    fn lookup_reports_each_failure_by_name() {
        let mut table = CapabilityTable::<4>::new();
        table.slots[1] = Some(CapabilityNode::unlinked(memory_capability(
            MemoryRights::READ,
        )));
        let read = MemoryRights::READ.bits();
        assert!(table.lookup(Selector(1), ObjectType::Memory, read).is_ok());
        assert_eq!(
            table.lookup(Selector(4), ObjectType::Memory, read),
            Err(Status::InvalidSelector)
        );
        assert_eq!(
            table.lookup(Selector(0), ObjectType::Memory, read),
            Err(Status::EmptySlot)
        );
        assert_eq!(
            table.lookup(Selector(1), ObjectType::Portal, PortalRights::CALL.bits()),
            Err(Status::WrongType)
        );
        assert_eq!(
            table.lookup(Selector(1), ObjectType::Memory, MemoryRights::WRITE.bits()),
            Err(Status::MissingRight)
        );
        assert_eq!(table.check_free(Selector(1)), Err(Status::SlotOccupied));
        assert_eq!(table.check_free(Selector(2)), Ok(()));
        assert_eq!(table.check_free(Selector(9)), Err(Status::InvalidSelector));
    }
}
