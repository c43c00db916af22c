//! `ReportBridges`: the pci-server's report of segment 0's bridges and their bus numbers, and
//! re-routing devices by it (VT-d spec rev 4.1, 8.3 and 8.3.1).
//!
//! The server has no config space, so at start a DMAR bridge scope covers unknown buses and a
//! device scope path through a bridge does not resolve; devices that may sit behind such a
//! bridge are refused (`AmbiguousUnit`). The pci-server, the only caller allowed, reports every
//! bridge once at boot, after enumeration and before it places the first device, in numbered
//! parts. Each part is checked against the parts before it ([`BridgeTable::extend`]); on the
//! last part the DMAR is read again with the bridges as its bus walk, checked whole (two units
//! claiming one device is `ConflictingUnits`), and only then does routing change, together
//! with the RMRRs of devices behind bridges, which become known too.
//!
//! Decided: the report is accepted once. Once a last part was accepted every further part is
//! refused (`BridgesAlreadyReported`), and any part is refused while a device is placed
//! (`DevicesAlreadyPlaced`): a placed requester id's context entry sits in the unit routing
//! chose, and IRTEs are programmed only for placed devices (`ProgramIrte` checks the device's
//! owner; the pci-server asks `AllocateIoapicIrte` for claimed functions only), so changing
//! routing under them would leave an entry in a unit that no longer translates the device. A refused part changes
//! nothing; a part 0 starts the report afresh (dropping an unfinished one).

use iommu_api::{BridgeReport, IommuError};
use iommu_core::clock::Clock;
use iommu_core::dmar::{BridgeTable, BridgeTableError, Dmar, NoBusWalk, Topology, TopologyError};
use iommu_core::domain::{ReservedRegion, MAX_RESERVED};
use iommu_core::memory::{FrameAllocator, PhysMemory};
use iommu_core::registers::VtdRegisters;

use crate::service::{Iommu, Reply};

/// Where the report stands.
#[derive(Clone, Debug, Default)]
pub struct BridgeRouting {
    /// The DMAR, kept to read it again with the bridges (mapped for the program's life).
    dmar: Option<Dmar<'static>>,
    /// The parts accepted so far of a report not finished yet.
    pending: BridgeTable,
    /// The number the next part must carry (`None`: no report begun).
    next_part: Option<u16>,
    /// A last part was accepted: routing is final.
    done: bool,
}

impl BridgeRouting {
    /// Nothing reported yet; `dmar` is read again when the report is complete.
    pub fn new(dmar: Option<Dmar<'static>>) -> Self {
        BridgeRouting {
            dmar,
            ..Self::default()
        }
    }

    /// Whether a report was accepted.
    #[cfg(test)]
    pub fn done(&self) -> bool {
        self.done
    }
}

fn table_error(error: BridgeTableError) -> IommuError {
    match error {
        BridgeTableError::InvalidRange(_) => IommuError::InvalidBusRange,
        BridgeTableError::Overlapping { .. } => IommuError::OverlappingBridges,
        BridgeTableError::TooMany => IommuError::BridgeLimitReached,
    }
}

/// The RMRRs of segment 0 whose device scope resolves only through the bridges, for devices a
/// unit of `topology` translates.
fn reserved_behind_bridges(
    dmar: &Dmar<'_>,
    topology: &Topology,
    bridges: &mut BridgeTable,
) -> heapless::Vec<ReservedRegion, MAX_RESERVED> {
    let mut found = heapless::Vec::new();
    for rmrr in dmar.reserved_regions().filter(|rmrr| rmrr.segment == 0) {
        let Ok((base, size)) = rmrr.region() else {
            continue;
        };
        for entry in rmrr.scopes() {
            if entry.resolve(&mut NoBusWalk).is_ok() {
                continue; // known from the start
            }
            let Ok(device) = entry.resolve(bridges) else {
                continue;
            };
            match topology.unit_of(device) {
                Ok(_) => {
                    if found.push(ReservedRegion { device, base, size }).is_err() {
                        sluice_rt::log!(
                            "iommu-server: RMRR at {base} for {device} skipped: too many RMRRs"
                        );
                    }
                }
                Err(error) => sluice_rt::log!("iommu-server: RMRR at {base} skipped: {error}"),
            }
        }
    }
    found
}

impl<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator> Iommu<R, C, M, A> {
    /// Takes one part of the pci-server's bridge report (the caller was checked).
    pub(crate) fn report_bridges(&mut self, report: &BridgeReport) -> Result<Reply, IommuError> {
        if self.bridges.done {
            return Err(IommuError::BridgesAlreadyReported);
        }
        if self.manager.has_devices() {
            return Err(IommuError::DevicesAlreadyPlaced);
        }
        let dmar = self.bridges.dmar.ok_or(IommuError::UnsupportedHardware)?;
        let mut table = match (report.part, self.bridges.next_part) {
            (0, _) => BridgeTable::new(),
            (part, Some(next)) if part == next => self.bridges.pending.clone(),
            _ => return Err(IommuError::ReportOutOfOrder),
        };
        table.extend(report.bridges()).map_err(table_error)?;
        let next_part = report
            .part
            .checked_add(1)
            .ok_or(IommuError::ReportOutOfOrder)?;
        if !report.last {
            self.bridges.pending = table;
            self.bridges.next_part = Some(next_part);
            return Ok(Reply::ok(&[]));
        }
        let topology = Topology::from_dmar(&dmar, &mut table).map_err(|error| {
            sluice_rt::log!(
                "iommu-server: the reported bridges contradict the DMAR ({error}): routing unchanged"
            );
            match error {
                TopologyError::Overlap { .. } => IommuError::ConflictingUnits,
                _ => IommuError::UnsupportedHardware,
            }
        })?;
        let reserved = reserved_behind_bridges(&dmar, &topology, &mut table);
        // Check both changes before making either.
        let mut manager_reserved: heapless::Vec<ReservedRegion, MAX_RESERVED> =
            heapless::Vec::from_slice(self.manager.reserved()).unwrap_or_default();
        for region in &reserved {
            if !manager_reserved.contains(region) && manager_reserved.push(*region).is_err() {
                return Err(IommuError::DeviceLimitReached);
            }
        }
        self.units.reroute(topology)?;
        // Cannot fail: the same regions fit above, and the DMAR's regions are aligned.
        self.manager.add_reserved(&reserved)?;
        self.bridges.pending = BridgeTable::new();
        self.bridges.next_part = None;
        self.bridges.done = true;
        sluice_rt::log!(
            "iommu-server: {} bridge(s) reported by the pci-server: bridge scopes resolved, devices re-routed",
            table.bridges().len()
        );
        for (index, unit) in self.units.topology().units().iter().enumerate() {
            let known = unit.bridges.iter().filter(|b| b.buses.is_some()).count();
            sluice_rt::log!(
                "iommu-server: unit {index}: {} endpoint(s), {known} of {} bridge scope(s) with known buses, {} scope path(s) to absent devices, {} unresolved",
                unit.endpoints.len(),
                unit.bridges.len(),
                unit.absent,
                unit.unresolved
            );
        }
        Ok(Reply::ok(&[]))
    }
}
