//! Map and unmap requests: only memory the caller delegated, within its rights, never the MSI
//! window; unmaps are flushed before they return.

use super::{overlaps_msi_window, ClientId, DomainManager, Mapping};
use crate::memory::{is_page_aligned, FrameAllocator, PhysMemory};
use crate::units::Units;
use iommu_api::request::MapArguments;
use iommu_api::{IoVirt, IommuError};

impl DomainManager {
    /// Maps part of a delegation into a client domain.
    pub fn map<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
        request: &MapArguments,
    ) -> Result<(), IommuError> {
        let index = self.domain_index(owner, request.domain)?;
        let delegation = self
            .delegations
            .iter()
            .find(|delegation| delegation.handle == request.memory && delegation.owner == owner)
            .ok_or(IommuError::UnknownMemory)?;
        if request.rights.is_empty() {
            return Err(IommuError::InvalidRights);
        }
        if !delegation.memory.rights.contains(request.rights) {
            return Err(IommuError::RightsExceeded);
        }
        if request.size == 0 {
            return Err(IommuError::ZeroSize);
        }
        if !is_page_aligned(request.offset)
            || !is_page_aligned(request.size)
            || !is_page_aligned(request.iova.0)
        {
            return Err(IommuError::Misaligned);
        }
        let end = request
            .offset
            .checked_add(request.size)
            .ok_or(IommuError::AddressOverflow)?;
        if end > delegation.memory.size {
            return Err(IommuError::RangeOutsideMemory);
        }
        let phys = delegation
            .memory
            .base
            .checked_add(request.offset)
            .ok_or(IommuError::AddressOverflow)?;
        let domain = self
            .domains
            .get_mut(index)
            .ok_or(IommuError::UnknownDomain)?;
        domain.tables.check_range(request.iova, request.size)?;
        if overlaps_msi_window(request.iova.0, request.size) {
            return Err(IommuError::MsiWindow);
        }
        if overlaps_msi_window(phys.0, request.size) {
            return Err(IommuError::MsiWindowPhysical);
        }
        if self.mappings.is_full() {
            return Err(IommuError::MappingLimitReached);
        }
        domain.tables.map(
            memory,
            frames,
            request.iova,
            phys,
            request.size,
            request.rights,
        )?;
        let did = domain.did;
        let mapping = Mapping {
            domain: request.domain,
            iova: request.iova,
            size: request.size,
            phys,
            rights: request.rights,
            memory: Some(request.memory),
        };
        let mut result = Ok(());
        for unit_index in self.flush_targets(units, request.domain).iter() {
            result = match units.unit(unit_index) {
                Some(unit) => unit.after_map(memory, did, request.iova, request.size),
                None => Err(IommuError::UnitNotBroughtUp),
            };
            if result.is_err() {
                break;
            }
        }
        if let Err(error) = result {
            if let Some(domain) = self.domains.get_mut(index) {
                let _ = domain.tables.unmap(memory, request.iova, request.size);
            }
            return Err(error);
        }
        self.mappings
            .push(mapping)
            .map_err(|_| IommuError::MappingLimitReached)
    }

    /// Removes exactly one mapping the caller made, flushes the domain's IOTLB and releases
    /// the tables the unmap emptied. Once this returns `Ok`, no device can reach the memory.
    #[allow(clippy::too_many_arguments)] // the unit's context plus the request's three fields
    pub fn unmap<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
        handle: u32,
        iova: IoVirt,
        size: u64,
    ) -> Result<(), IommuError> {
        let index = self.domain_index(owner, handle)?;
        let position = self
            .mappings
            .iter()
            .position(|mapping| {
                mapping.domain == handle
                    && mapping.iova == iova
                    && mapping.size == size
                    && mapping.memory.is_some()
            })
            .ok_or(IommuError::NotMapped)?;
        self.unmap_at(units, memory, frames, index, position)
    }

    fn unmap_at<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        domain_index: usize,
        position: usize,
    ) -> Result<(), IommuError> {
        let mapping = *self.mappings.get(position).ok_or(IommuError::NotMapped)?;
        let domain = self
            .domains
            .get_mut(domain_index)
            .ok_or(IommuError::UnknownDomain)?;
        domain.tables.unmap(memory, mapping.iova, mapping.size)?;
        let did = domain.did;
        self.mappings.swap_remove(position);
        let flushed = self.flush_domain(units, memory, mapping.domain, did)?;
        let domain = self
            .domains
            .get_mut(domain_index)
            .ok_or(IommuError::UnknownDomain)?;
        domain.tables.release_freed_tables(&flushed, did, frames)?;
        Ok(())
    }

    /// The kernel revoked a delegation: unmap (and flush) everything mapped from it, then
    /// forget it.
    pub fn revoke_delegation<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
        handle: u32,
    ) -> Result<(), IommuError> {
        let position = self
            .delegations
            .iter()
            .position(|delegation| delegation.handle == handle && delegation.owner == owner)
            .ok_or(IommuError::UnknownMemory)?;
        while let Some(mapping_position) = self
            .mappings
            .iter()
            .position(|mapping| mapping.memory == Some(handle))
        {
            let domain_handle = self
                .mappings
                .get(mapping_position)
                .map(|mapping| mapping.domain)
                .unwrap_or(0);
            let domain_index = self
                .domains
                .iter()
                .position(|domain| domain.handle == domain_handle)
                .ok_or(IommuError::UnknownDomain)?;
            self.unmap_at(units, memory, frames, domain_index, mapping_position)?;
        }
        self.delegations.swap_remove(position);
        Ok(())
    }

    /// Number of live mappings of a domain (including RMRR identity maps).
    pub fn mapping_count(&self, handle: u32) -> usize {
        self.mappings
            .iter()
            .filter(|mapping| mapping.domain == handle)
            .count()
    }

    /// Software translation in a domain (for tests and diagnostics).
    pub fn translate<M: PhysMemory>(
        &self,
        memory: &M,
        handle: u32,
        iova: IoVirt,
    ) -> Option<crate::dma_remapping::Translation> {
        self.domains
            .iter()
            .find(|domain| domain.handle == handle)?
            .tables
            .translate(memory, iova)
    }
}
