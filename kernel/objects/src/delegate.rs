//! Derivation, delegation, deletion and revocation.
//!
//! - `derive` copies a capability within the caller's table with the same or fewer rights.
//! - `transfer` delegates capabilities through IPC into the receiver's table, inside the
//!   receiver's receive window, all or nothing.
//! - `delete` removes one capability; what was derived from it moves up to its parent.
//! - `revoke` removes everything derived from a capability, in every table, and reports each
//!   mapping those capabilities made.
//!
//! Every copy is a child of its source in the derivation tree and goes through
//! [`crate::capability::derive`], the one narrowing function.

use sluice_abi::ipc::{ReceiveWindow, TransferItem, MAX_TRANSFER_ITEMS};
use sluice_abi::syscall::{Selector, Status, REVOKE_INCLUDING_SELF};

use crate::capability::{derive, Capability, CapabilityAddress};
use crate::model::ObjectModel;
use crate::object::ObjectId;
use crate::sink::TeardownSink;

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// `derive`: copy the capability at `source` to the free slot `destination` of the same
    /// table with `rights` (a subset of the source's).
    pub fn derive(
        &mut self,
        caller: ObjectId,
        source: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), Status> {
        let (source_address, source_capability) = self.lookup_any(caller, source)?;
        let copy = derive(&source_capability, rights)?;
        let destination = self.free_slot(caller, destination)?;
        self.insert_capability(destination, copy, Some(source_address));
        Ok(())
    }

    /// `delegate`: copy the capability at `source` into the free slot `destination` of the table
    /// of the domain named by `domain` (needs `MAP` on it), with `rights` (a subset of the
    /// source's). The copy is a child of the source in the derivation tree.
    ///
    /// Errors: lookup errors for either selector, `InvalidRights`, `InvalidSelector` or
    /// `SlotOccupied` for the destination, `Aborted` (the domain is torn down).
    pub fn delegate(
        &mut self,
        caller: ObjectId,
        source: Selector,
        domain: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), Status> {
        let (source_address, source_capability) = self.lookup_any(caller, source)?;
        let copy = derive(&source_capability, rights)?;
        let receiver = self.map_target(caller, domain)?;
        let destination = self.free_slot(receiver, destination)?;
        self.insert_capability(destination, copy, Some(source_address));
        Ok(())
    }

    /// Delegation with a message: copy each item's capability from `sender`'s table into
    /// `receiver`'s at the item's destination, rights narrowed to the item's mask. Every item is
    /// validated before any is copied; one bad item fails the whole transfer with its status.
    ///
    /// Errors: `Overflow` (more than `MAX_TRANSFER_ITEMS`), the lookup errors for a source,
    /// `InvalidRights`, `InvalidSelector` (destination outside the window or the table),
    /// `SlotOccupied` (destination taken, or named twice), `Aborted` (a domain torn down).
    pub fn transfer(
        &mut self,
        sender: ObjectId,
        receiver: ObjectId,
        items: &[TransferItem],
        window: ReceiveWindow,
    ) -> Result<(), Status> {
        if items.len() > MAX_TRANSFER_ITEMS {
            return Err(Status::Overflow);
        }
        let mut plan: [Option<(CapabilityAddress, Capability, CapabilityAddress)>;
            MAX_TRANSFER_ITEMS] = [None; MAX_TRANSFER_ITEMS];
        for (index, item) in items.iter().enumerate() {
            let (source_address, source_capability) =
                self.lookup_any(sender, Selector(item.selector))?;
            let copy = derive(&source_capability, item.rights)?;
            if !window.contains(item.destination) {
                return Err(Status::InvalidSelector);
            }
            let destination = self.free_slot(receiver, Selector(item.destination))?;
            let repeated = plan
                .iter()
                .flatten()
                .any(|(_, _, earlier)| *earlier == destination);
            if repeated {
                return Err(Status::SlotOccupied);
            }
            if let Some(entry) = plan.get_mut(index) {
                *entry = Some((source_address, copy, destination));
            }
        }
        for (source_address, copy, destination) in plan.into_iter().flatten() {
            self.insert_capability(destination, copy, Some(source_address));
        }
        Ok(())
    }

    /// `delete`: remove the capability at `selector`. Capabilities derived from it stay and
    /// become children of its parent. Mappings made through it are removed and reported; the
    /// object goes when its last capability does.
    pub fn delete<S: TeardownSink>(
        &mut self,
        caller: ObjectId,
        selector: Selector,
        sink: &mut S,
    ) -> Result<(), Status> {
        let (address, _) = self.lookup_any(caller, selector)?;
        self.remove_capability(address, sink);
        self.settle(sink);
        Ok(())
    }

    /// `revoke`: remove every capability derived from the one at `selector`, in every table,
    /// and with [`REVOKE_INCLUDING_SELF`] in `flags` that capability too. Every mapping made
    /// through a removed capability is reported to `sink`. Unknown flag bits are
    /// `InvalidArgument`.
    pub fn revoke<S: TeardownSink>(
        &mut self,
        caller: ObjectId,
        selector: Selector,
        flags: u64,
        sink: &mut S,
    ) -> Result<(), Status> {
        if flags & !REVOKE_INCLUDING_SELF != 0 {
            return Err(Status::InvalidArgument);
        }
        let (address, _) = self.lookup_any(caller, selector)?;
        self.remove_descendants(address, sink);
        if flags & REVOKE_INCLUDING_SELF != 0 {
            self.remove_capability(address, sink);
        }
        self.settle(sink);
        Ok(())
    }

    /// The capability a given address derives from, and the number of capabilities derived
    /// directly from it (for the kernel's diagnostics and for tests).
    pub fn derivation_of(
        &self,
        domain: ObjectId,
        selector: Selector,
    ) -> Option<(Option<CapabilityAddress>, usize)> {
        let table = self.table_of(domain)?;
        let node = table.node(selector.0)?;
        let mut children = 0;
        let mut child = node.first_child;
        while let Some(current) = child {
            children += 1;
            child = self.node(current).and_then(|n| n.next_sibling);
        }
        Some((node.parent, children))
    }
}
