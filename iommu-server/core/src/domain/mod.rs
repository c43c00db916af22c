//! The server's DMA policy over its remapping units ([`crate::units::Units`]): domains owned by
//! clients, memory clients delegated (the kernel validated it), mappings only within that
//! memory and its rights, devices and their DMA aliases moving between a quarantine domain and
//! client domains, RMRR identity maps, fault routing to device owners. The MSI window is never
//! mapped.
//!
//! Each requester id's context entry lives in the unit that translates it (routed by the
//! DMAR's device scopes). A domain is one page-table tree and one domain id, pointed at by
//! context entries in every unit its devices sit behind; map and unmap invalidate each of those
//! units (a domain with no device anywhere is flushed on every up unit when tables are freed).
//!
//! Every operation validates the whole request first; a rejected request changes nothing.

mod devices;
mod mapping;
pub mod quarantine;

use crate::dma_remapping::SecondLevelTable;
use crate::invalidation::IotlbFlushed;
use crate::memory::{is_page_aligned, FrameAllocator, PhysMemory};
use crate::registers::capability::PagingLevels;
use crate::units::{UnitMask, Units};
use crate::DomainId;
use iommu_api::{
    Bdf, DelegatedMemory, HostPhys, IoVirt, IommuError, Rights, MSI_WINDOW_BASE, MSI_WINDOW_LAST,
};
pub use quarantine::QuarantineMode;

/// The domain handle of the quarantine domain (never a client's).
pub const QUARANTINE: u32 = 0;
/// Client domains per unit.
pub const MAX_DOMAINS: usize = 32;
/// Mappings over all domains.
pub const MAX_MAPPINGS: usize = 256;
/// Devices and aliases tracked.
pub const MAX_DEVICES: usize = 64;
/// Delegated memory records.
pub const MAX_DELEGATIONS: usize = 128;
/// RMRR regions.
pub const MAX_RESERVED: usize = 16;
/// Explicit device scope entries.
pub const MAX_SCOPE: usize = 64;
/// The quarantine domain's hardware id (DID 0 is left unused: with caching mode it tags
/// not-present entries).
pub const QUARANTINE_DID: DomainId = DomainId(1);

/// A client of the server (the kernel tells the server who called).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(pub u32);

/// A reserved memory region a device keeps using (ACPI RMRR, VT-d spec 8.4): identity-mapped
/// into whichever client domain the device is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// The device (from the RMRR's device scope).
    pub device: Bdf,
    /// First byte (4 KiB aligned).
    pub base: HostPhys,
    /// Length (multiple of 4 KiB).
    pub size: u64,
}

/// Which devices are behind this unit (from its DRHD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceScope {
    /// INCLUDE_PCI_ALL: every device not claimed by another unit.
    All,
    /// Exactly these requester ids.
    Devices(heapless::Vec<Bdf, MAX_SCOPE>),
}

impl DeviceScope {
    /// Whether `device` is behind the unit.
    pub fn contains(&self, device: Bdf) -> bool {
        match self {
            DeviceScope::All => true,
            DeviceScope::Devices(devices) => devices.contains(&device),
        }
    }
}

#[derive(Debug)]
struct Domain {
    handle: u32,
    did: DomainId,
    owner: ClientId,
    tables: SecondLevelTable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    domain: u32,
    iova: IoVirt,
    size: u64,
    phys: HostPhys,
    rights: Rights,
    /// The delegation it came from; `None` for an RMRR identity map.
    memory: Option<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Delegation {
    handle: u32,
    owner: ClientId,
    memory: DelegatedMemory,
}

#[derive(Clone, Copy, Debug)]
struct DeviceRecord {
    bdf: Bdf,
    /// The device this requester id belongs to (itself, or the device it is an alias of).
    primary: Bdf,
    domain: u32,
    /// The unit whose context table holds its entry.
    unit: usize,
}

/// The domain manager of one unit.
#[derive(Debug)]
pub struct DomainManager {
    domains: heapless::Vec<Domain, MAX_DOMAINS>,
    quarantine_root: HostPhys,
    levels: PagingLevels,
    large_pages: crate::dma_remapping::LargePages,
    domain_count: u32,
    mappings: heapless::Vec<Mapping, MAX_MAPPINGS>,
    delegations: heapless::Vec<Delegation, MAX_DELEGATIONS>,
    devices: heapless::Vec<DeviceRecord, MAX_DEVICES>,
    reserved: heapless::Vec<ReservedRegion, MAX_RESERVED>,
    subscribers: heapless::Vec<(Bdf, ClientId), MAX_DEVICES>,
    scope: DeviceScope,
    next_handle: u32,
}

/// Whether `start..start+size` overlaps the MSI window.
pub fn overlaps_msi_window(start: u64, size: u64) -> bool {
    let last = start.saturating_add(size.saturating_sub(1));
    size != 0 && start <= MSI_WINDOW_LAST && last >= MSI_WINDOW_BASE
}

impl DomainManager {
    /// Builds the quarantine domain's tables for `units` (shared by all of them) and starts
    /// with no client domains.
    pub fn new<U: Units, M: PhysMemory, A: FrameAllocator>(
        units: &U,
        memory: &mut M,
        frames: &mut A,
        scope: DeviceScope,
        reserved: &[ReservedRegion],
        quarantine: QuarantineMode,
    ) -> Result<Self, IommuError> {
        let mut regions = heapless::Vec::new();
        for region in reserved {
            if !is_page_aligned(region.base.0) || !is_page_aligned(region.size) || region.size == 0
            {
                return Err(IommuError::Misaligned);
            }
            regions
                .push(*region)
                .map_err(|_| IommuError::DeviceLimitReached)?;
        }
        let parameters = units.parameters();
        let levels = parameters.levels;
        let quarantine_root =
            quarantine::build_quarantine_tables(memory, frames, levels, quarantine)?;
        Ok(Self {
            domains: heapless::Vec::new(),
            quarantine_root,
            levels,
            large_pages: parameters.large_pages,
            domain_count: parameters.domain_count,
            mappings: heapless::Vec::new(),
            delegations: heapless::Vec::new(),
            devices: heapless::Vec::new(),
            reserved: regions,
            subscribers: heapless::Vec::new(),
            scope,
            next_handle: 1,
        })
    }

    /// Whether any requester id is placed (in quarantine or a client domain): its context
    /// entry sits in the unit routing chose, so routing must not change any more.
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Adds RMRR regions learnt after start (devices behind bridges, once their buses are
    /// known); regions already known are skipped. Checked whole first: `Misaligned` for an
    /// unaligned or empty region, `DeviceLimitReached` past [`MAX_RESERVED`], both changing
    /// nothing.
    pub fn add_reserved(&mut self, regions: &[ReservedRegion]) -> Result<(), IommuError> {
        let mut added = self.reserved.clone();
        for region in regions {
            if !is_page_aligned(region.base.0) || !is_page_aligned(region.size) || region.size == 0
            {
                return Err(IommuError::Misaligned);
            }
            if !added.contains(region) {
                added
                    .push(*region)
                    .map_err(|_| IommuError::DeviceLimitReached)?;
            }
        }
        self.reserved = added;
        Ok(())
    }

    /// The RMRR regions identity-mapped for their devices.
    pub fn reserved(&self) -> &[ReservedRegion] {
        &self.reserved
    }

    /// The quarantine domain's top-level table.
    pub fn quarantine_root(&self) -> HostPhys {
        self.quarantine_root
    }

    fn domain_index(&self, owner: ClientId, handle: u32) -> Result<usize, IommuError> {
        if handle == QUARANTINE {
            return Err(IommuError::QuarantineDomain);
        }
        let index = self
            .domains
            .iter()
            .position(|domain| domain.handle == handle)
            .ok_or(IommuError::UnknownDomain)?;
        match self.domains.get(index) {
            Some(domain) if domain.owner == owner => Ok(index),
            Some(_) => Err(IommuError::NotOwner),
            None => Err(IommuError::UnknownDomain),
        }
    }

    /// The hardware domain id behind a client handle (for tests and diagnostics).
    pub fn hardware_id(&self, handle: u32) -> Option<DomainId> {
        if handle == QUARANTINE {
            return Some(QUARANTINE_DID);
        }
        self.domains
            .iter()
            .find(|domain| domain.handle == handle)
            .map(|domain| domain.did)
    }

    /// Creates an empty domain owned by `owner`; returns its handle.
    pub fn create_domain<M: PhysMemory, A: FrameAllocator>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
    ) -> Result<u32, IommuError> {
        if self.domains.is_full() {
            return Err(IommuError::DomainLimitReached);
        }
        let did = (QUARANTINE_DID.0 + 1..=u16::MAX)
            .take_while(|did| u32::from(*did) < self.domain_count)
            .find(|did| self.domains.iter().all(|domain| domain.did.0 != *did))
            .ok_or(IommuError::DomainLimitReached)?;
        let handle = self.next_handle;
        let next = handle
            .checked_add(1)
            .ok_or(IommuError::DomainLimitReached)?;
        let tables = SecondLevelTable::new(memory, frames, self.levels, self.large_pages)?;
        self.domains
            .push(Domain {
                handle,
                did: DomainId(did),
                owner,
                tables,
            })
            .map_err(|_| IommuError::DomainLimitReached)?;
        self.next_handle = next;
        Ok(handle)
    }

    /// The units holding a context entry that points at domain `handle`.
    pub fn attached_units(&self, handle: u32) -> UnitMask {
        let mut mask = UnitMask::default();
        for record in self.devices.iter().filter(|record| record.domain == handle) {
            mask.insert(record.unit);
        }
        mask
    }

    /// The units a change to domain `handle`'s tables must be announced to: those it is
    /// attached to, or every up unit when it is attached nowhere.
    fn flush_targets<U: Units>(&self, units: &U, handle: u32) -> UnitMask {
        let targets = self.attached_units(handle);
        if targets.is_empty() {
            units.up()
        } else {
            targets
        }
    }

    /// Domain-selective IOTLB invalidation of `did` on every unit `handle` is attached to, or on
    /// every up unit when it is attached nowhere (so freed tables are released only after a
    /// hardware flush). Returns the last unit's proof.
    fn flush_domain<U: Units, M: PhysMemory>(
        &self,
        units: &mut U,
        memory: &mut M,
        handle: u32,
        did: DomainId,
    ) -> Result<IotlbFlushed, IommuError> {
        let targets = self.flush_targets(units, handle);
        let mut proof = Err(IommuError::UnsupportedHardware);
        for index in targets.iter() {
            let unit = units.unit(index).ok_or(IommuError::UnitNotBroughtUp)?;
            proof = Ok(unit.flush_domain(memory, did)?);
        }
        proof
    }

    /// Destroys a domain without devices: flushes its IOTLB entries, then frees its tables.
    pub fn destroy_domain<U: Units, M: PhysMemory, A: FrameAllocator>(
        &mut self,
        units: &mut U,
        memory: &mut M,
        frames: &mut A,
        owner: ClientId,
        handle: u32,
    ) -> Result<(), IommuError> {
        let index = self.domain_index(owner, handle)?;
        if self.devices.iter().any(|device| device.domain == handle) {
            return Err(IommuError::DomainInUse);
        }
        let did = self
            .domains
            .get(index)
            .map(|domain| domain.did)
            .ok_or(IommuError::UnknownDomain)?;
        let flushed = self.flush_domain(units, memory, handle, did)?;
        let domain = self.domains.swap_remove(index);
        self.mappings.retain(|mapping| mapping.domain != handle);
        domain.tables.destroy(memory, &flushed, did, frames)
    }

    /// Records memory the kernel validated and delegated to the server on `owner`'s behalf;
    /// returns the handle map requests name it by.
    pub fn accept_delegation(
        &mut self,
        owner: ClientId,
        memory: DelegatedMemory,
    ) -> Result<u32, IommuError> {
        if memory.size == 0 {
            return Err(IommuError::ZeroSize);
        }
        if !is_page_aligned(memory.base.0) || !is_page_aligned(memory.size) {
            return Err(IommuError::Misaligned);
        }
        memory
            .base
            .checked_add(memory.size)
            .ok_or(IommuError::AddressOverflow)?;
        if memory.rights.is_empty() {
            return Err(IommuError::InvalidRights);
        }
        let handle = self.next_handle;
        let next = handle
            .checked_add(1)
            .ok_or(IommuError::MappingLimitReached)?;
        self.delegations
            .push(Delegation {
                handle,
                owner,
                memory,
            })
            .map_err(|_| IommuError::MappingLimitReached)?;
        self.next_handle = next;
        Ok(handle)
    }

    /// The paging depth of every domain.
    pub fn levels(&self) -> PagingLevels {
        self.levels
    }
}
