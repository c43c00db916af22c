//! Bringing the DMAR's VT-d units up, each in the order the VT-d spec asks for (rev 4.1):
//!
//! 1. `VtdUnit::initialize`: CAP/ECAP decide paging depth and invalidation; root table (SRTP,
//!    10.4.4), queued invalidation (6.5.2), global context and IOTLB invalidation;
//! 2. fault reporting (7.3, 10.4.10-10.4.13): FEDATA = the vector of the server's fault-event
//!    line, FEADDR = 0xFEE0_0000 with destination APIC id 0 (the kernel takes lines on CPU 0),
//!    then FECTL.IM cleared. Every unit signals the same line; the server then reads every
//!    unit's records. Fault events are not subject to interrupt remapping (5.1.6);
//! 3. interrupt remapping (5.1, 6.5.2.7): a table per unit, SIRTP, IEC flush, IRE;
//!    compatibility-format interrupts stay blocked;
//! 4. once every unit given is initialized: the paging depth all of them share
//!    (`UnitSet::retain_compatible`), the quarantine domain (nothing mapped: every DMA of a
//!    quarantined device faults and is logged) and the RMRRs;
//! 5. translation on (GCMD.TE) on each unit. From here a device without a context entry faults
//!    ("context entry not present") until the pci-server places it in quarantine.
//!
//! A unit the server has no register page for, or whose bring-up fails, stays down and is
//! named in the log; devices it translates are refused (`UnitNotBroughtUp`), never attached
//! through another unit.

use iommu_api::IommuError;
use iommu_core::clock::Clock;
use iommu_core::dmar::{Dmar, NoBusWalk, Topology, TopologyError};
use iommu_core::domain::{DeviceScope, DomainManager, QuarantineMode, ReservedRegion};
use iommu_core::interrupt_remapping::{InterruptRemapping, IrteTable};
use iommu_core::memory::{FrameAllocator, PhysMemory};
use iommu_core::registers::capability::PagingLevels;
use iommu_core::registers::{Register32, VtdRegisters};
use iommu_core::unit::VtdUnit;
use iommu_core::units::UnitSet;

use crate::policy::{FaultQueues, Policy};
use crate::service::Iommu;

/// The MSI address of an interrupt to APIC id 0 in compatibility format (Intel SDM vol. 3,
/// 11.11.1: 0xFEE, destination id in bits 19:12).
pub const FAULT_EVENT_ADDRESS: u32 = 0xfee0_0000;

/// What the DMAR says about the units, their devices and reserved regions.
pub struct Scope {
    /// Every DRHD unit and the devices behind it.
    pub topology: Topology,
    /// RMRRs whose device the server could name.
    pub reserved: heapless::Vec<ReservedRegion, { iommu_core::domain::MAX_RESERVED }>,
    /// Whether the DMAR's INTR_REMAP flag is set.
    pub interrupt_remapping: bool,
    /// The DMAR, read again once the pci-server reports the bridges ([`crate::bridges`]).
    pub dmar: Option<Dmar<'static>>,
}

/// The units (checked: no overlaps, at least one) and RMRRs of the DMAR. No bridge can be
/// walked yet (the iommu-server has no config space): paths through bridges do not resolve and
/// bridge scopes have no known bus range until the pci-server reports the bridges. An RMRR
/// whose device no unit translates is skipped with a log line: nothing could attach that
/// device.
pub fn scope(dmar: &Dmar<'static>) -> Result<Scope, TopologyError> {
    let topology = Topology::from_dmar(dmar, &mut NoBusWalk)?;
    let mut reserved = heapless::Vec::new();
    for rmrr in dmar.reserved_regions() {
        let Ok((base, size)) = rmrr.region() else {
            continue;
        };
        for entry in rmrr.scopes() {
            match entry.resolve(&mut NoBusWalk) {
                Ok(device) => {
                    match topology.unit_of(device) {
                        Ok(_) => {
                            if reserved
                                .push(ReservedRegion { device, base, size })
                                .is_err()
                            {
                                sluice_rt::log!("iommu-server: RMRR at {base} for {device} skipped: too many RMRRs");
                            }
                        }
                        Err(error) => {
                            sluice_rt::log!("iommu-server: RMRR at {base} skipped: {error}")
                        }
                    }
                }
                Err(error) => sluice_rt::log!(
                    "iommu-server: RMRR at {base} waits for the bridge report (a device behind a bridge): {error}"
                ),
            }
        }
    }
    Ok(Scope {
        topology,
        reserved,
        interrupt_remapping: dmar.interrupt_remapping(),
        dmar: Some(*dmar),
    })
}

/// One unit's register access, with the unit's number in DMAR order.
pub struct UnitRegisters<R, C> {
    /// The unit's number (index in the DMAR's DRHD order).
    pub index: usize,
    /// Its registers.
    pub registers: R,
    /// The clock of its bounded waits.
    pub clock: C,
}

/// Brings up one unit: tables, invalidation, fault reporting and interrupt remapping.
fn bring_up_unit<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator>(
    given: UnitRegisters<R, C>,
    memory: &mut M,
    frames: &mut A,
    fault_vector: u8,
    platform_remapping: bool,
    remapping: &mut InterruptRemapping,
) -> Result<VtdUnit<R, C>, IommuError> {
    let mut unit = VtdUnit::initialize(
        given.registers,
        given.clock,
        memory,
        frames,
        PagingLevels::Three,
    )?;
    let registers = unit.registers_mut();
    registers.write32(Register32::FaultEventData, u32::from(fault_vector));
    registers.write32(Register32::FaultEventAddress, FAULT_EVENT_ADDRESS);
    registers.write32(Register32::FaultEventUpperAddress, 0);
    registers.write32(Register32::FaultEventControl, 0);
    if unit.config().interrupt_remapping && platform_remapping {
        match IrteTable::enable(&mut unit, memory, frames) {
            Ok(table) => remapping.install(given.index, table)?,
            Err(error) => sluice_rt::log!(
                "iommu-server: unit {}: interrupt remapping could not be enabled: {error}",
                given.index
            ),
        }
    }
    Ok(unit)
}

/// Brings up every unit in `given` (see the module documentation) and returns the server
/// state. Fails only when no unit could be brought up.
pub fn bring_up<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator>(
    given: impl IntoIterator<Item = UnitRegisters<R, C>>,
    mut memory: M,
    mut frames: A,
    scope: Scope,
    fault_vector: u8,
    policy: Policy,
) -> Result<Iommu<R, C, M, A>, IommuError> {
    let mut units = UnitSet::new(scope.topology);
    let mut remapping = InterruptRemapping::new();
    let mut last_error = IommuError::UnsupportedHardware;
    for unit_registers in given {
        let index = unit_registers.index;
        match bring_up_unit(
            unit_registers,
            &mut memory,
            &mut frames,
            fault_vector,
            scope.interrupt_remapping,
            &mut remapping,
        )
        .and_then(|unit| units.install(index, unit))
        {
            Ok(()) => {}
            Err(error) => {
                sluice_rt::log!("iommu-server: unit {index} not brought up: {error}");
                last_error = error;
            }
        }
    }
    for index in units.retain_compatible().iter() {
        sluice_rt::log!(
            "iommu-server: unit {index} not brought up: its SAGAW shares no paging depth with unit 0's tables"
        );
    }
    let manager = DomainManager::new(
        &units,
        &mut memory,
        &mut frames,
        DeviceScope::All,
        &scope.reserved,
        QuarantineMode::Blocking,
    )?;
    let mut failed = iommu_core::units::UnitMask::default();
    for (index, unit) in units.iter_up_mut() {
        if let Err(error) = unit.enable_translation() {
            sluice_rt::log!(
                "iommu-server: unit {index} not brought up: translation on failed: {error}"
            );
            last_error = error;
            failed.insert(index);
        }
    }
    for index in failed.iter() {
        let _ = units.remove(index);
    }
    if units.iter_up().next().is_none() {
        return Err(last_error);
    }
    Ok(Iommu {
        units,
        manager,
        remapping,
        memory,
        frames,
        policy,
        faults: FaultQueues::default(),
        domain_owners: heapless::Vec::new(),
        subscriptions: heapless::Vec::new(),
        ioapic_pins: crate::ioapic_pins::IoapicPins::default(),
        bridges: crate::bridges::BridgeRouting::new(scope.dmar),
    })
}
