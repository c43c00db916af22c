//! The object model: every object, every capability table and every mapping record, in
//! fixed-size arrays sized by const generics, so the kernel can place one in a static and
//! never allocate. This module holds the state, the lookups every operation starts with, the
//! derivation-tree primitives, and [`ObjectModel::settle`], which frees what lost its last
//! capability. The operations live in `create.rs`, `delegate.rs`, `memory.rs` and `control.rs`;
//! each validates fully (through `&self` helpers) before its first change, so a refused
//! operation changes nothing and a validated one cannot fail halfway.

use sluice_abi::syscall::{ObjectType, ProtectionDomainRights, Selector, Status, MAX_SELECTORS};

use crate::capability::{Capability, CapabilityAddress, CapabilityNode, CapabilityTable};
use crate::mapping::MappingRecord;
use crate::object::{Object, ObjectEntry, ObjectId, ObjectTable, ProtectionDomain};
use crate::quota::{Quota, Resources};
use crate::sink::TeardownSink;

/// All kernel objects and capabilities.
///
/// - `DOMAINS`: most protection domains alive at once (one capability table each).
/// - `SLOTS`: capability-table slots per domain (selectors `0..SLOTS`).
/// - `OBJECTS`: object-table entries.
/// - `MAPPINGS`: mapping records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectModel<
    const DOMAINS: usize,
    const SLOTS: usize,
    const OBJECTS: usize,
    const MAPPINGS: usize,
> {
    pub(crate) objects: ObjectTable<OBJECTS>,
    pub(crate) tables: [CapabilityTable<SLOTS>; DOMAINS],
    pub(crate) mappings: [Option<MappingRecord>; MAPPINGS],
}

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// An empty model (usable in a `static`).
    pub const fn new() -> Self {
        const {
            assert!(SLOTS <= MAX_SELECTORS as usize, "more slots than selectors");
            assert!(DOMAINS <= u16::MAX as usize, "table index is 16 bits");
            assert!(OBJECTS <= u32::MAX as usize && MAPPINGS <= u32::MAX as usize);
        }
        ObjectModel {
            objects: ObjectTable::new(),
            tables: [const { CapabilityTable::new() }; DOMAINS],
            mappings: [None; MAPPINGS],
        }
    }

    /// Number of capability-table slots per domain.
    pub const fn selector_count(&self) -> u32 {
        SLOTS as u32
    }

    /// Kernel memory charged for a domain besides its quota donation: the domain object and its
    /// capability table.
    pub const fn domain_charge() -> Resources {
        let table_bytes = (SLOTS * core::mem::size_of::<Option<CapabilityNode>>()) as u64;
        let base = crate::object::object_charge(ObjectType::ProtectionDomain);
        Resources {
            bytes: base.bytes + table_bytes,
            objects: base.objects,
            mappings: 0,
        }
    }

    /// The object table (read-only; for the kernel's scheduler and for tests).
    pub fn objects(&self) -> &ObjectTable<OBJECTS> {
        &self.objects
    }

    /// The id the next created object will get (None when the object table is full).
    pub fn next_object_id(&self) -> Option<ObjectId> {
        self.objects.free_id()
    }

    /// A live object.
    pub fn object(&self, id: ObjectId) -> Option<&ObjectEntry> {
        self.objects.get(id)
    }

    /// A domain's quota.
    pub fn quota(&self, domain: ObjectId) -> Option<Quota> {
        match self.objects.get(domain)?.object {
            Object::ProtectionDomain(pd) => Some(pd.quota),
            _ => None,
        }
    }

    /// A domain's capability table (read-only).
    pub fn table_of(&self, domain: ObjectId) -> Option<&CapabilityTable<SLOTS>> {
        match self.objects.get(domain)?.object {
            Object::ProtectionDomain(pd) => self.tables.get(usize::from(pd.table)),
            _ => None,
        }
    }

    /// Every capability in every table, with its address (for audits and tests).
    pub fn capabilities(&self) -> impl Iterator<Item = (CapabilityAddress, &CapabilityNode)> {
        self.tables
            .iter()
            .enumerate()
            .flat_map(|(table, capability_table)| {
                let table = u16::try_from(table).unwrap_or(u16::MAX);
                capability_table
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(move |(slot, node)| {
                        Some((
                            CapabilityAddress {
                                table,
                                slot: u32::try_from(slot).ok()?,
                            },
                            node.as_ref()?,
                        ))
                    })
            })
    }

    /// The capability node at an address (with its derivation links).
    pub fn capability_at(&self, address: CapabilityAddress) -> Option<&CapabilityNode> {
        self.node(address)
    }

    /// Number of mapping records in use.
    pub fn mapping_count(&self) -> usize {
        self.mappings.iter().filter(|m| m.is_some()).count()
    }

    /// The calling domain, checked to be live and not torn down (`Aborted` otherwise).
    #[inline]
    pub(crate) fn live_domain(&self, domain: ObjectId) -> Result<&ProtectionDomain, Status> {
        match self.objects.get(domain).map(|entry| &entry.object) {
            Some(Object::ProtectionDomain(pd)) if !pd.torn_down => Ok(pd),
            _ => Err(Status::Aborted),
        }
    }

    /// The lookup choke point at model level: the capability at `selector` in `caller`'s table,
    /// checked for type and rights, with its address.
    #[inline]
    pub fn lookup(
        &self,
        caller: ObjectId,
        selector: Selector,
        expected_type: ObjectType,
        required_rights: u64,
    ) -> Result<(CapabilityAddress, Capability), Status> {
        let table_index = self.live_domain(caller)?.table;
        let table = self
            .tables
            .get(usize::from(table_index))
            .ok_or(Status::Aborted)?;
        let capability = *table.lookup(selector, expected_type, required_rights)?;
        Ok((
            CapabilityAddress {
                table: table_index,
                slot: selector.0,
            },
            capability,
        ))
    }

    /// Like [`ObjectModel::lookup`] for any type (no rights required).
    pub fn lookup_any(
        &self,
        caller: ObjectId,
        selector: Selector,
    ) -> Result<(CapabilityAddress, Capability), Status> {
        let table_index = self.live_domain(caller)?.table;
        let table = self
            .tables
            .get(usize::from(table_index))
            .ok_or(Status::Aborted)?;
        let capability = *table.lookup_any(selector)?;
        Ok((
            CapabilityAddress {
                table: table_index,
                slot: selector.0,
            },
            capability,
        ))
    }

    /// Check that `selector` is a free slot in `domain`'s table; returns its address.
    pub(crate) fn free_slot(
        &self,
        domain: ObjectId,
        selector: Selector,
    ) -> Result<CapabilityAddress, Status> {
        let table_index = self.live_domain(domain)?.table;
        let table = self
            .tables
            .get(usize::from(table_index))
            .ok_or(Status::Aborted)?;
        table.check_free(selector)?;
        Ok(CapabilityAddress {
            table: table_index,
            slot: selector.0,
        })
    }

    /// Check that `payer` can be charged `amount`.
    pub(crate) fn check_charge(&self, payer: ObjectId, amount: Resources) -> Result<(), Status> {
        self.live_domain(payer)?.quota.check(amount)
    }

    /// Charge (after [`ObjectModel::check_charge`]) or refund a domain, live or lingering.
    pub(crate) fn adjust_quota(&mut self, domain: ObjectId, amount: Resources, charge: bool) {
        if let Some(ObjectEntry {
            object: Object::ProtectionDomain(pd),
            ..
        }) = self.objects.get_mut(domain)
        {
            if charge {
                // Validated by `check_charge` before the commit began.
                let _ = pd.quota.charge(amount);
            } else {
                pd.quota.refund(amount);
            }
        }
    }

    /// Charge kernel memory the kernel binary allocates for a domain outside the object model
    /// (page-table frames for its `map` calls, say). Changes nothing on `QuotaExceeded`.
    pub fn charge_kernel_bytes(&mut self, domain: ObjectId, bytes: u64) -> Result<(), Status> {
        let amount = Resources {
            bytes,
            ..Resources::ZERO
        };
        self.check_charge(domain, amount)?;
        self.adjust_quota(domain, amount, true);
        Ok(())
    }

    /// Charge kernel memory that belongs to object `id` (a VM's nested page tables, say) to
    /// the domain that paid for the object; it is refunded with the object's own charge when
    /// the object is freed. Objects the kernel made at boot have no payer: nothing is charged.
    /// Changes nothing on an error.
    ///
    /// Errors: `InvalidSelector` (no such object), `QuotaExceeded`.
    pub fn charge_to_object(&mut self, id: ObjectId, bytes: u64) -> Result<(), Status> {
        let entry = self.objects.get(id).ok_or(Status::InvalidSelector)?;
        let Some(payer) = entry.payer else {
            return Ok(());
        };
        let amount = Resources {
            bytes,
            ..Resources::ZERO
        };
        self.check_charge(payer, amount)?;
        self.adjust_quota(payer, amount, true);
        if let Some(entry) = self.objects.get_mut(id) {
            entry.charge.bytes = entry.charge.bytes.saturating_add(bytes);
            entry.extra_bytes = entry.extra_bytes.saturating_add(bytes);
        }
        Ok(())
    }

    /// Give back up to `bytes` charged with [`ObjectModel::charge_to_object`] (never more than
    /// the object carries beyond its own creation charge).
    pub fn refund_to_object(&mut self, id: ObjectId, bytes: u64) {
        let Some(entry) = self.objects.get_mut(id) else {
            return;
        };
        let Some(payer) = entry.payer else {
            return;
        };
        let bytes = bytes.min(entry.extra_bytes);
        entry.extra_bytes -= bytes;
        entry.charge.bytes = entry.charge.bytes.saturating_sub(bytes);
        let amount = Resources {
            bytes,
            ..Resources::ZERO
        };
        self.adjust_quota(payer, amount, false);
    }

    /// Give back bytes charged with [`ObjectModel::charge_kernel_bytes`].
    pub fn refund_kernel_bytes<S: TeardownSink>(
        &mut self,
        domain: ObjectId,
        bytes: u64,
        sink: &mut S,
    ) {
        let amount = Resources {
            bytes,
            ..Resources::ZERO
        };
        self.adjust_quota(domain, amount, false);
        self.settle(sink);
    }

    pub(crate) fn node(&self, address: CapabilityAddress) -> Option<&CapabilityNode> {
        self.tables
            .get(usize::from(address.table))?
            .node(address.slot)
    }

    pub(crate) fn node_mut(&mut self, address: CapabilityAddress) -> Option<&mut CapabilityNode> {
        self.tables
            .get_mut(usize::from(address.table))?
            .node_mut(address.slot)
    }

    /// Put a capability into a free slot (checked by the caller), as a child of `parent`, and
    /// count it on its object.
    pub(crate) fn insert_capability(
        &mut self,
        address: CapabilityAddress,
        capability: Capability,
        parent: Option<CapabilityAddress>,
    ) {
        let Some(slot) = self
            .tables
            .get_mut(usize::from(address.table))
            .and_then(|table| table.slot_mut(address.slot))
        else {
            return;
        };
        if slot.is_some() {
            return;
        }
        *slot = Some(CapabilityNode::unlinked(capability));
        if let Some(entry) = self.objects.get_mut(capability.object) {
            entry.capabilities = entry.capabilities.saturating_add(1);
        }
        if let Some(parent) = parent {
            self.link_child(parent, address);
        }
    }

    /// Make `child` (currently with no parent and no siblings) the first child of `parent`.
    fn link_child(&mut self, parent: CapabilityAddress, child: CapabilityAddress) {
        let Some(old_first) = self.node(parent).map(|node| node.first_child) else {
            return;
        };
        if let Some(node) = self.node_mut(child) {
            node.parent = Some(parent);
            node.previous_sibling = None;
            node.next_sibling = old_first;
        }
        if let Some(first) = old_first.and_then(|first| self.node_mut(first)) {
            first.previous_sibling = Some(child);
        }
        if let Some(node) = self.node_mut(parent) {
            node.first_child = Some(child);
        }
    }

    /// Remove one capability: unlink it, hand its children to its parent (so revocation from
    /// above still reaches them), remove and report its mappings, and uncount it on its object.
    /// Does not free objects; call [`ObjectModel::settle`] afterwards.
    pub(crate) fn remove_capability<S: TeardownSink>(
        &mut self,
        address: CapabilityAddress,
        sink: &mut S,
    ) {
        let Some(node) = self
            .tables
            .get_mut(usize::from(address.table))
            .and_then(|table| table.slot_mut(address.slot))
            .and_then(Option::take)
        else {
            return;
        };
        match node.previous_sibling {
            Some(previous) => {
                if let Some(previous) = self.node_mut(previous) {
                    previous.next_sibling = node.next_sibling;
                }
            }
            None => {
                if let Some(parent) = node.parent.and_then(|parent| self.node_mut(parent)) {
                    parent.first_child = node.next_sibling;
                }
            }
        }
        if let Some(next) = node.next_sibling.and_then(|next| self.node_mut(next)) {
            next.previous_sibling = node.previous_sibling;
        }
        let mut child = node.first_child;
        while let Some(current) = child {
            child = self.node(current).and_then(|n| n.next_sibling);
            if let Some(child_node) = self.node_mut(current) {
                child_node.parent = None;
                child_node.previous_sibling = None;
                child_node.next_sibling = None;
            }
            if let Some(parent) = node.parent {
                self.link_child(parent, current);
            }
        }
        let mut mapping = node.first_mapping;
        while let Some(index) = mapping {
            let record = usize::try_from(index)
                .ok()
                .and_then(|i| self.mappings.get_mut(i))
                .and_then(Option::take);
            let Some(record) = record else { break };
            sink.mapping_removed(&record.mapping);
            self.adjust_quota(record.payer, crate::memory::MAPPING_CHARGE, false);
            mapping = record.next;
        }
        if let Some(entry) = self.objects.get_mut(node.capability.object) {
            entry.capabilities = entry.capabilities.saturating_sub(1);
        }
    }

    /// Remove every capability derived (directly or not) from `address`, in every table,
    /// leaves first, without recursion.
    pub(crate) fn remove_descendants<S: TeardownSink>(
        &mut self,
        address: CapabilityAddress,
        sink: &mut S,
    ) {
        while let Some(mut leaf) = self.node(address).and_then(|node| node.first_child) {
            while let Some(deeper) = self.node(leaf).and_then(|node| node.first_child) {
                leaf = deeper;
            }
            self.remove_capability(leaf, sink);
        }
    }

    /// Free what lost its last capability, until nothing changes: a domain whose last
    /// capability went is torn down (its table emptied); an object with no capabilities and no
    /// references from other objects is freed and its charge refunded (a torn-down domain only
    /// once nothing is charged to it any more).
    pub fn settle<S: TeardownSink>(&mut self, sink: &mut S) {
        loop {
            let mut progress = false;
            for index in 0..OBJECTS {
                let Some((id, entry)) = self.objects.entry_at(index) else {
                    continue;
                };
                if entry.capabilities != 0 {
                    continue;
                }
                if let Object::ProtectionDomain(pd) = entry.object {
                    if !pd.torn_down {
                        self.tear_down_domain(id, pd.table, sink);
                        progress = true;
                        continue;
                    }
                    if !pd.quota.used().is_zero() {
                        continue;
                    }
                }
                if entry.internal_references != 0 {
                    continue;
                }
                self.free_object(id, sink);
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }

    fn tear_down_domain<S: TeardownSink>(&mut self, id: ObjectId, table: u16, sink: &mut S) {
        if let Some(ObjectEntry {
            object: Object::ProtectionDomain(pd),
            ..
        }) = self.objects.get_mut(id)
        {
            pd.torn_down = true;
        }
        sink.domain_torn_down(id);
        for slot in 0..SLOTS {
            let Ok(slot) = u32::try_from(slot) else { break };
            self.remove_capability(CapabilityAddress { table, slot }, sink);
        }
    }

    fn free_object<S: TeardownSink>(&mut self, id: ObjectId, sink: &mut S) {
        let Some(entry) = self.objects.remove(id) else {
            return;
        };
        if let Some(referenced) = entry.object.references() {
            if let Some(target) = self.objects.get_mut(referenced) {
                target.internal_references = target.internal_references.saturating_sub(1);
            }
        }
        if let Some(payer) = entry.payer {
            self.adjust_quota(payer, entry.charge, false);
        }
        if let Object::ProtectionDomain(pd) = entry.object {
            if let Some(table) = self.tables.get_mut(usize::from(pd.table)) {
                table.owner = None;
            }
        }
        if let Object::Vm(_) = entry.object {
            self.remove_mappings_of(id, sink);
        }
        sink.object_destroyed(id, &entry.object);
    }

    /// Check the right of `caller` to shut the machine down: a domain capability with `SYSTEM`.
    pub fn check_shutdown(&self, caller: ObjectId, domain: Selector) -> Result<(), Status> {
        self.lookup(
            caller,
            domain,
            ObjectType::ProtectionDomain,
            ProtectionDomainRights::SYSTEM.bits(),
        )
        .map(|_| ())
    }
}

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize> Default
    for ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    fn default() -> Self {
        Self::new()
    }
}
