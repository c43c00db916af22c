//! Devices and their DMA aliases: quarantine at start, attach to a client domain (with RMRR
//! identity maps), detach back to quarantine, and who owns a device's faults. Each requester id
//! is routed to its unit before anything changes; its context entry is written there.

use super::{
    overlaps_msi_window, ClientId, DeviceRecord, DomainManager, Mapping, QUARANTINE, QUARANTINE_DID,
};
use crate::dma_remapping::ContextEntry;
use crate::fault::FaultRecord;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::units::Units;
use crate::DomainId;
use iommu_api::request::DeviceArguments;
use iommu_api::{Bdf, HostPhys, IoVirt, IommuError, Rights, MAX_ALIASES};

/// A device followed by its aliases.
type RequesterIds = heapless::Vec<Bdf, { MAX_ALIASES + 1 }>;
/// Each requester id with the unit that translates it.
type Routed = heapless::Vec<(Bdf, usize), { MAX_ALIASES + 1 }>;

fn requester_ids(device: Bdf, aliases: &[Bdf]) -> Result<RequesterIds, IommuError> {
    let mut all = RequesterIds::new();
    all.push(device).map_err(|_| IommuError::InvalidAliases)?;
    for alias in aliases {
        if all.contains(alias) {
            return Err(IommuError::InvalidAliases);
        }
        all.push(*alias).map_err(|_| IommuError::InvalidAliases)?;
    }
    Ok(all)
}

impl DomainManager {
    fn record(&self, bdf: Bdf) -> Option<&DeviceRecord> {
        self.devices.iter().find(|record| record.bdf == bdf)
    }

    /// Where `bdf` is: `Some(QUARANTINE)`, `Some(domain handle)`, or `None` (never placed).
    pub fn device_domain(&self, bdf: Bdf) -> Option<u32> {
        self.record(bdf).map(|record| record.domain)
    }

    /// Moves every requester id in `all` to the domain `target` (`did`, `root`), updating records.
    #[allow(clippy::too_many_arguments)] // hardware context plus the target domain's identity
    fn point_at<U: Units, M: PhysMemory>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        all: &[(Bdf, usize)],
        primary: Bdf,
        target: u32,
        did: DomainId,
        root: HostPhys,
    ) -> Result<(), IommuError> {
        let entry = ContextEntry::translated(did, root, self.levels);
        for (bdf, unit_index) in all {
            let unit = units
                .unit(*unit_index)
                .ok_or(IommuError::UnitNotBroughtUp)?;
            unit.clear_context(memory, *bdf)?;
            unit.set_context(memory, *bdf, &entry)?;
            match self.devices.iter_mut().find(|record| record.bdf == *bdf) {
                Some(record) => {
                    record.domain = target;
                    record.primary = primary;
                    record.unit = *unit_index;
                }
                None => self
                    .devices
                    .push(DeviceRecord {
                        bdf: *bdf,
                        primary,
                        domain: target,
                        unit: *unit_index,
                    })
                    .map_err(|_| IommuError::DeviceLimitReached)?,
            }
        }
        Ok(())
    }

    /// Checks every requester id is in the scope and routes it to its (up) unit.
    fn route<U: Units>(&self, units: &U, all: &[Bdf]) -> Result<Routed, IommuError> {
        let mut routed = Routed::new();
        for bdf in all {
            if !self.scope.contains(*bdf) {
                return Err(IommuError::UnknownDevice);
            }
            let unit = units.route(*bdf)?;
            routed
                .push((*bdf, unit))
                .map_err(|_| IommuError::InvalidAliases)?;
        }
        Ok(routed)
    }

    /// The unit `bdf`'s context entry is in, if it was ever placed.
    pub fn device_unit(&self, bdf: Bdf) -> Option<usize> {
        self.record(bdf).map(|record| record.unit)
    }

    fn check_new_records(&self, all: &[Bdf]) -> Result<(), IommuError> {
        let new = all
            .iter()
            .filter(|bdf| self.record(**bdf).is_none())
            .count();
        if self.devices.len() + new > self.devices.capacity() {
            return Err(IommuError::DeviceLimitReached);
        }
        Ok(())
    }

    /// Places a device (and aliases) that no domain holds yet into quarantine (the server does
    /// this for every device it owns at start).
    pub fn quarantine_device<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        device: Bdf,
        aliases: &[Bdf],
    ) -> Result<(), IommuError> {
        let all = requester_ids(device, aliases)?;
        let routed = self.route(units, &all)?;
        for bdf in &all {
            if self
                .record(*bdf)
                .is_some_and(|record| record.domain != QUARANTINE || record.primary != device)
            {
                return Err(IommuError::DeviceBusy);
            }
        }
        self.check_new_records(&all)?;
        prepare_buses(units, memory, frames, &routed)?;
        self.point_at(
            units,
            memory,
            &routed,
            device,
            QUARANTINE,
            QUARANTINE_DID,
            self.quarantine_root,
        )
    }

    /// Moves a device and its aliases from quarantine into a client domain, identity-mapping
    /// the RMRR regions they need.
    pub fn attach<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
        request: &DeviceArguments,
    ) -> Result<(), IommuError> {
        let index = self.domain_index(owner, request.domain)?;
        let all = requester_ids(request.device, request.aliases())?;
        let routed = self.route(units, &all)?;
        for bdf in &all {
            if let Some(record) = self.record(*bdf) {
                let here = record.domain == request.domain && record.primary == request.device;
                if record.domain != QUARANTINE && !here {
                    return Err(IommuError::DeviceBusy);
                }
            }
        }
        self.check_new_records(&all)?;
        // RMRR identity maps this device needs and the domain does not have yet.
        let mut needed: heapless::Vec<(HostPhys, u64), { super::MAX_RESERVED }> =
            heapless::Vec::new();
        let domain = self.domains.get(index).ok_or(IommuError::UnknownDomain)?;
        for region in self
            .reserved
            .iter()
            .filter(|region| all.contains(&region.device))
        {
            let identity = IoVirt(region.base.0);
            if overlaps_msi_window(region.base.0, region.size) {
                return Err(IommuError::MsiWindow);
            }
            domain.tables.check_range(identity, region.size)?;
            let present = self.mappings.iter().any(|mapping| {
                mapping.domain == request.domain
                    && mapping.memory.is_none()
                    && mapping.iova == identity
                    && mapping.size == region.size
            });
            if present || needed.contains(&(region.base, region.size)) {
                continue;
            }
            if !domain.tables.is_range_free(memory, identity, region.size) {
                return Err(IommuError::RmrrConflict);
            }
            needed
                .push((region.base, region.size))
                .map_err(|_| IommuError::MappingLimitReached)?;
        }
        if self.mappings.len() + needed.len() > self.mappings.capacity() {
            return Err(IommuError::MappingLimitReached);
        }
        prepare_buses(units, memory, frames, &routed)?;
        let (did, root) = (domain.did, domain.tables.root());
        let domain = self
            .domains
            .get_mut(index)
            .ok_or(IommuError::UnknownDomain)?;
        for (position, (base, size)) in needed.iter().enumerate() {
            let rights = Rights::READ | Rights::WRITE;
            if let Err(error) =
                domain
                    .tables
                    .map(memory, frames, IoVirt(base.0), *base, *size, rights)
            {
                for (undo_base, undo_size) in needed.iter().take(position) {
                    let _ = domain.tables.unmap(memory, IoVirt(undo_base.0), *undo_size);
                }
                return Err(error);
            }
        }
        for (base, size) in &needed {
            let mapping = Mapping {
                domain: request.domain,
                iova: IoVirt(base.0),
                size: *size,
                phys: *base,
                rights: Rights::READ | Rights::WRITE,
                memory: None,
            };
            self.mappings
                .push(mapping)
                .map_err(|_| IommuError::MappingLimitReached)?;
        }
        self.point_at(
            units,
            memory,
            &routed,
            request.device,
            request.domain,
            did,
            root,
        )
    }

    /// Moves a device and exactly the aliases it was attached with back to quarantine.
    pub fn detach<U: Units, M: PhysMemory>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        owner: ClientId,
        request: &DeviceArguments,
    ) -> Result<(), IommuError> {
        self.domain_index(owner, request.domain)?;
        let all = requester_ids(request.device, request.aliases())?;
        let attached = |bdf: &Bdf| {
            self.record(*bdf).is_some_and(|record| {
                record.domain == request.domain && record.primary == request.device
            })
        };
        if !attached(&request.device) {
            return Err(IommuError::DeviceNotAttached);
        }
        let recorded = self
            .devices
            .iter()
            .filter(|record| record.primary == request.device && record.domain == request.domain)
            .count();
        if !all.iter().all(attached) || recorded != all.len() {
            return Err(IommuError::InvalidAliases);
        }
        let mut routed = Routed::new();
        for bdf in &all {
            let unit = self
                .record(*bdf)
                .map(|record| record.unit)
                .ok_or(IommuError::DeviceNotAttached)?;
            if units.unit(unit).is_none() {
                return Err(IommuError::UnitNotBroughtUp);
            }
            routed
                .push((*bdf, unit))
                .map_err(|_| IommuError::InvalidAliases)?;
        }
        self.subscribers.retain(|(bdf, _)| !all.contains(bdf));
        self.point_at(
            units,
            memory,
            &routed,
            request.device,
            QUARANTINE,
            QUARANTINE_DID,
            self.quarantine_root,
        )
    }

    /// The client whose domain holds `bdf` (device or alias), if any.
    pub fn device_owner(&self, bdf: Bdf) -> Option<ClientId> {
        let record = self.record(bdf)?;
        self.domains
            .iter()
            .find(|domain| domain.handle == record.domain)
            .map(|domain| domain.owner)
    }

    /// Subscribes `owner` to faults of a device in one of its domains.
    pub fn subscribe_faults(&mut self, owner: ClientId, device: Bdf) -> Result<(), IommuError> {
        match self.device_owner(device) {
            None => return Err(IommuError::UnknownDevice),
            Some(holder) if holder != owner => return Err(IommuError::NotOwner),
            Some(_) => {}
        }
        if self.subscribers.contains(&(device, owner)) {
            return Ok(());
        }
        self.subscribers
            .push((device, owner))
            .map_err(|_| IommuError::SubscriberLimitReached)
    }

    /// Who should hear about this fault: the device's current owner, if subscribed. Faults of
    /// an alias go to the owner of the device it belongs to.
    pub fn route_fault(&self, fault: &FaultRecord) -> Option<ClientId> {
        let record = self.record(fault.source)?;
        let owner = self.device_owner(fault.source)?;
        let subscribed = |bdf: Bdf| self.subscribers.contains(&(bdf, owner));
        (subscribed(fault.source) || subscribed(record.primary)).then_some(owner)
    }
}

/// Makes sure every routed requester id's bus has a context table in its unit.
fn prepare_buses<U: Units, M: PhysMemory, A: FrameAllocator>(
    units: &mut U,
    memory: &mut M,
    frames: &mut A,
    routed: &[(Bdf, usize)],
) -> Result<(), IommuError> {
    for (bdf, unit_index) in routed {
        units
            .unit(*unit_index)
            .ok_or(IommuError::UnitNotBroughtUp)?
            .prepare_bus(memory, frames, bdf.bus())?;
    }
    Ok(())
}
