//! Mapping memory and I/O ports into domains, and revealing physical addresses for DMA.
//! Each mapping is recorded on the capability it was made through (see `mapping.rs`) and
//! charged to the caller's quota; the kernel installs it through a closure that runs after
//! validation and before the record is committed, so a failure there leaves no record.

use sluice_abi::syscall::{
    IoPortRights, MemoryRights, ObjectType, ProtectionDomainRights, Selector, Status, PAGE_SIZE,
};

use crate::address::{HostPhys, UserSlice};
use crate::capability::CapabilityAddress;
use crate::mapping::{Mapping, MappingKind, MappingRecord};
use crate::model::ObjectModel;
use crate::object::{Object, ObjectId};
use crate::quota::Resources;
use crate::sink::TeardownSink;

/// Quota charged for one mapping record.
pub const MAPPING_CHARGE: Resources = Resources {
    bytes: 0,
    objects: 0,
    mappings: 1,
};

/// The page permissions a mapping may ask for.
const PAGE_RIGHTS: MemoryRights = MemoryRights::READ
    .union(MemoryRights::WRITE)
    .union(MemoryRights::EXECUTE);

impl<const DOMAINS: usize, const SLOTS: usize, const OBJECTS: usize, const MAPPINGS: usize>
    ObjectModel<DOMAINS, SLOTS, OBJECTS, MAPPINGS>
{
    /// `map`: map `range` (page-aligned) of the domain named by `domain` (needs `MAP`) to the
    /// pages at `offset` of the memory object named by `memory`, with `rights` (must include
    /// `READ`, only `READ | WRITE | EXECUTE`, each held by the memory capability). `install`
    /// is the kernel's page-table update; it runs after every check and before the record is
    /// kept, and its error is returned unchanged with nothing recorded.
    ///
    /// Errors: lookup errors, `InvalidRights`, `Misaligned`, `Overflow` (beyond the object),
    /// `AlreadyMapped`, `QuotaExceeded`, `OutOfKernelMemory`, `Aborted`, or `install`'s error.
    #[allow(clippy::too_many_arguments)]
    pub fn map<F>(
        &mut self,
        caller: ObjectId,
        memory: Selector,
        domain: Selector,
        range: UserSlice,
        offset: u64,
        rights: MemoryRights,
        install: F,
    ) -> Result<Mapping, Status>
    where
        F: FnOnce(&Mapping) -> Result<(), Status>,
    {
        if !PAGE_RIGHTS.contains(rights) || !rights.contains(MemoryRights::READ) {
            return Err(Status::InvalidRights);
        }
        let (owner, memory_capability) =
            self.lookup(caller, memory, ObjectType::Memory, rights.bits())?;
        let target = self.map_target(caller, domain)?;
        let Some(Object::Memory(object)) = self.object(memory_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        if !offset.is_multiple_of(PAGE_SIZE) || !range.base().get().is_multiple_of(PAGE_SIZE) {
            return Err(Status::Misaligned);
        }
        if !range.length().is_multiple_of(PAGE_SIZE) || range.length() == 0 {
            return Err(Status::Misaligned);
        }
        match offset.checked_add(range.length()) {
            Some(end) if end <= object.size => {}
            _ => return Err(Status::Overflow),
        }
        let mapping = Mapping {
            domain: target,
            kind: MappingKind::Memory {
                range,
                physical: HostPhys(object.base.0 + offset),
                rights,
            },
        };
        self.record_mapping(caller, owner, mapping, install)
    }

    /// `unmap`: remove the mapping of exactly `range` from the domain named by `domain` (needs
    /// `MAP`) and return it so the kernel can clear the page tables and flush.
    ///
    /// Errors: lookup errors, `NotFound` (no mapping with exactly that range), `Aborted`.
    pub fn unmap(
        &mut self,
        caller: ObjectId,
        domain: Selector,
        range: UserSlice,
    ) -> Result<Mapping, Status> {
        let target = self.map_target(caller, domain)?;
        let index = self
            .mappings
            .iter()
            .position(|record| {
                matches!(record, Some(MappingRecord { mapping: Mapping {
                    domain,
                    kind: MappingKind::Memory { range: mapped, .. },
                }, .. }) if *domain == target && *mapped == range)
            })
            .ok_or(Status::NotFound)?;
        let index = u32::try_from(index).map_err(|_| Status::NotFound)?;
        self.remove_mapping(index).ok_or(Status::NotFound)
    }

    /// `io_allow`: let the domain named by `domain` (needs `MAP`) use the ports of the range
    /// named by `io_range` (needs `ACCESS`). `install` updates the I/O permission bitmap.
    ///
    /// Errors: lookup errors, `AlreadyMapped`, `QuotaExceeded`, `OutOfKernelMemory`, `Aborted`,
    /// or `install`'s error.
    pub fn io_allow<F>(
        &mut self,
        caller: ObjectId,
        io_range: Selector,
        domain: Selector,
        install: F,
    ) -> Result<Mapping, Status>
    where
        F: FnOnce(&Mapping) -> Result<(), Status>,
    {
        let (owner, io_capability) = self.lookup(
            caller,
            io_range,
            ObjectType::IoPortRange,
            IoPortRights::ACCESS.bits(),
        )?;
        let target = self.map_target(caller, domain)?;
        let Some(Object::IoPortRange(range)) = self.object(io_capability.object).map(|e| e.object)
        else {
            return Err(Status::WrongType);
        };
        let mapping = Mapping {
            domain: target,
            kind: MappingKind::IoPorts {
                first: range.first,
                count: range.count,
            },
        };
        self.record_mapping(caller, owner, mapping, install)
    }

    /// `memory_physical`: the host-physical address of byte `offset` of the memory object named
    /// by `memory` (needs `DMA_MAP`), for a trusted IOMMU server to map for DMA.
    ///
    /// Errors: lookup errors, `Overflow` (offset beyond the object), `Aborted`.
    pub fn memory_physical(
        &self,
        caller: ObjectId,
        memory: Selector,
        offset: u64,
    ) -> Result<HostPhys, Status> {
        let (_, capability) = self.lookup(
            caller,
            memory,
            ObjectType::Memory,
            MemoryRights::DMA_MAP.bits(),
        )?;
        let Some(Object::Memory(object)) = self.object(capability.object).map(|e| e.object) else {
            return Err(Status::WrongType);
        };
        if offset >= object.size {
            return Err(Status::Overflow);
        }
        Ok(HostPhys(object.base.0 + offset))
    }

    /// Every mapping currently recorded for `domain` (for the kernel's teardown and tests).
    pub fn mappings_of(&self, domain: ObjectId) -> impl Iterator<Item = &Mapping> {
        self.mappings
            .iter()
            .flatten()
            .map(|record| &record.mapping)
            .filter(move |mapping| mapping.domain == domain)
    }

    /// Remove every mapping recorded for `domain` and report it (the kernel calls this when it
    /// destroys a domain's address space).
    pub fn remove_mappings_of<S: TeardownSink>(&mut self, domain: ObjectId, sink: &mut S) {
        for index in 0..MAPPINGS {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            let matches = usize::try_from(index)
                .ok()
                .and_then(|i| self.mappings.get(i))
                .and_then(Option::as_ref)
                .is_some_and(|record| record.mapping.domain == domain);
            if matches {
                if let Some(mapping) = self.remove_mapping(index) {
                    sink.mapping_removed(&mapping);
                }
            }
        }
        self.settle(sink);
    }

    /// The domain named by a domain capability with `MAP`, checked live.
    pub(crate) fn map_target(
        &self,
        caller: ObjectId,
        domain: Selector,
    ) -> Result<ObjectId, Status> {
        let (_, capability) = self.lookup(
            caller,
            domain,
            ObjectType::ProtectionDomain,
            ProtectionDomainRights::MAP.bits(),
        )?;
        self.live_domain(capability.object)?;
        Ok(capability.object)
    }

    /// Check overlap, table space and quota, run `install`, then keep the record.
    pub(crate) fn record_mapping<F>(
        &mut self,
        caller: ObjectId,
        owner: CapabilityAddress,
        mapping: Mapping,
        install: F,
    ) -> Result<Mapping, Status>
    where
        F: FnOnce(&Mapping) -> Result<(), Status>,
    {
        let overlapping = self
            .mappings_of(mapping.domain)
            .any(|m| m.kind.overlaps(&mapping.kind));
        if overlapping {
            return Err(Status::AlreadyMapped);
        }
        let index = self
            .mappings
            .iter()
            .position(Option::is_none)
            .ok_or(Status::OutOfKernelMemory)?;
        let index_u32 = u32::try_from(index).map_err(|_| Status::OutOfKernelMemory)?;
        self.check_charge(caller, MAPPING_CHARGE)?;
        let first_mapping = self.node(owner).ok_or(Status::EmptySlot)?.first_mapping;
        install(&mapping)?;
        self.adjust_quota(caller, MAPPING_CHARGE, true);
        if let Some(slot) = self.mappings.get_mut(index) {
            *slot = Some(MappingRecord {
                mapping,
                owner,
                payer: caller,
                next: first_mapping,
            });
        }
        if let Some(node) = self.node_mut(owner) {
            node.first_mapping = Some(index_u32);
        }
        Ok(mapping)
    }

    /// Unlink one record from its capability's list, refund it, and return what it mapped.
    fn remove_mapping(&mut self, index: u32) -> Option<Mapping> {
        let record = self
            .mappings
            .get_mut(usize::try_from(index).ok()?)?
            .take()?;
        let head = self.node(record.owner).and_then(|node| node.first_mapping);
        if head == Some(index) {
            if let Some(node) = self.node_mut(record.owner) {
                node.first_mapping = record.next;
            }
        } else {
            let mut current = head;
            while let Some(at) = current {
                let slot = usize::try_from(at)
                    .ok()
                    .and_then(|i| self.mappings.get_mut(i));
                let Some(Some(previous)) = slot else { break };
                if previous.next == Some(index) {
                    previous.next = record.next;
                    break;
                }
                current = previous.next;
            }
        }
        self.adjust_quota(record.payer, MAPPING_CHARGE, false);
        Some(record.mapping)
    }
}
