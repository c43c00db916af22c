//! Bringing the VT-d unit up, in the order the VT-d spec asks for (rev 4.1):
//!
//! 1. `VtdUnit::initialize`: CAP/ECAP decide paging depth and invalidation; root table (SRTP,
//!    10.4.4), queued invalidation (6.5.2), global context and IOTLB invalidation;
//! 2. fault reporting (7.3, 10.4.10-10.4.13): FEDATA = the vector of the server's fault-event
//!    line, FEADDR = 0xFEE0_0000 with destination APIC id 0 (the kernel takes lines on CPU 0),
//!    then FECTL.IM cleared. Fault events are not subject to interrupt remapping (5.1.6);
//! 3. interrupt remapping (5.1, 6.5.2.7): table, SIRTP, IEC flush, IRE; compatibility-format
//!    interrupts stay blocked;
//! 4. the quarantine domain (nothing mapped: every DMA of a quarantined device faults and is
//!    logged) and the device scope from the DMAR;
//! 5. translation on (GCMD.TE). From here a device without a context entry faults
//!    ("context entry not present") until the pci-server places it in quarantine.

use iommu_api::IommuError;
use iommu_core::clock::Clock;
use iommu_core::dmar::{Dmar, ScopeKind};
use iommu_core::domain::{DeviceScope, DomainManager, QuarantineMode, ReservedRegion};
use iommu_core::interrupt_remapping::IrteTable;
use iommu_core::memory::{FrameAllocator, PhysMemory};
use iommu_core::registers::capability::PagingLevels;
use iommu_core::registers::{Register32, VtdRegisters};
use iommu_core::unit::VtdUnit;

use crate::policy::{FaultQueues, Policy};
use crate::service::{Iommu, Remapping};

/// The MSI address of an interrupt to APIC id 0 in compatibility format (Intel SDM vol. 3,
/// 11.11.1: 0xFEE, destination id in bits 19:12).
pub const FAULT_EVENT_ADDRESS: u32 = 0xfee0_0000;

/// What the DMAR says about the unit's devices and reserved regions.
pub struct Scope {
    /// Devices behind the unit.
    pub devices: DeviceScope,
    /// RMRRs whose device the server could name.
    pub reserved: heapless::Vec<ReservedRegion, { iommu_core::domain::MAX_RESERVED }>,
    /// Whether the DMAR's INTR_REMAP flag is set.
    pub interrupt_remapping: bool,
}

/// No bridge can be walked (the iommu-server has no config space): paths through bridges do
/// not resolve.
struct NoWalk;

impl iommu_core::dmar::BusWalk for NoWalk {
    fn secondary_bus(&mut self, _bridge: iommu_api::Bdf) -> Option<u8> {
        None
    }
}

/// The scope of the DMAR's first unit. With INCLUDE_PCI_ALL, or when it is the only unit of
/// the table (QEMU lists the bus-0 devices and bridges; a bridge scope covers its whole
/// subtree, which the server cannot walk), every device is behind it.
pub fn scope(dmar: &Dmar<'_>) -> Scope {
    let units = dmar.units().count();
    let devices = match dmar.units().next() {
        Some(unit) if unit.include_pci_all() || units == 1 => DeviceScope::All,
        Some(unit) => {
            let mut list = heapless::Vec::new();
            for entry in unit
                .scopes()
                .filter(|s| matches!(s.kind, ScopeKind::Endpoint | ScopeKind::Bridge))
            {
                if let Ok(bdf) = entry.resolve(&mut NoWalk) {
                    let _ = list.push(bdf);
                }
            }
            DeviceScope::Devices(list)
        }
        None => DeviceScope::Devices(heapless::Vec::new()),
    };
    let mut reserved = heapless::Vec::new();
    for rmrr in dmar.reserved_regions() {
        let Ok((base, size)) = rmrr.region() else {
            continue;
        };
        for entry in rmrr.scopes() {
            match entry.resolve(&mut NoWalk) {
                Ok(device) => {
                    let _ = reserved.push(ReservedRegion { device, base, size });
                }
                Err(error) => sluice_rt::log!(
                    "iommu-server: RMRR at {base} skipped for a device behind a bridge: {error}"
                ),
            }
        }
    }
    Scope {
        devices,
        reserved,
        interrupt_remapping: dmar.interrupt_remapping(),
    }
}

/// Brings the unit up (see the module documentation) and returns the server state.
pub fn bring_up<R: VtdRegisters, C: Clock, M: PhysMemory, A: FrameAllocator>(
    registers: R,
    clock: C,
    mut memory: M,
    mut frames: A,
    scope: Scope,
    fault_vector: u8,
    policy: Policy,
) -> Result<Iommu<R, C, M, A>, IommuError> {
    let mut unit = VtdUnit::initialize(
        registers,
        clock,
        &mut memory,
        &mut frames,
        PagingLevels::Three,
    )?;
    let registers = unit.registers_mut();
    registers.write32(Register32::FaultEventData, u32::from(fault_vector));
    registers.write32(Register32::FaultEventAddress, FAULT_EVENT_ADDRESS);
    registers.write32(Register32::FaultEventUpperAddress, 0);
    registers.write32(Register32::FaultEventControl, 0);
    let remapping = if unit.config().interrupt_remapping && scope.interrupt_remapping {
        match IrteTable::enable(&mut unit, &mut memory, &mut frames) {
            Ok(table) => Remapping::Enabled(table),
            Err(error) => {
                sluice_rt::log!("iommu-server: interrupt remapping could not be enabled: {error}");
                Remapping::Unavailable
            }
        }
    } else {
        Remapping::Unavailable
    };
    let manager = DomainManager::new(
        &unit,
        &mut memory,
        &mut frames,
        scope.devices,
        &scope.reserved,
        QuarantineMode::Blocking,
    )?;
    unit.enable_translation()?;
    Ok(Iommu {
        unit,
        manager,
        remapping,
        memory,
        frames,
        policy,
        faults: FaultQueues::default(),
        domain_owners: heapless::Vec::new(),
        subscriptions: heapless::Vec::new(),
    })
}
