//! DMAR tables shaped like QEMU's q35 + intel-iommu and like a real desktop.

use super::bdf;
use crate::dmar::{BusWalk, Dmar, DmarError, RemappingStructure, ScopeKind};
use crate::fake::dmar::{drhd, rmrr, scope, structure, table};
use iommu_api::{Bdf, HostPhys};
use proptest::prelude::*;
use std::vec::Vec;

/// QEMU 7.2 q35 with intel-iommu,intremap=on: explicit scopes, IOAPIC at 255:00.0.
pub fn qemu_dmar() -> Vec<u8> {
    table(
        39,
        0x3,
        &[drhd(
            0,
            0xfed9_0000,
            &[
                scope(3, 0, 0xff, &[(0, 0)]),
                scope(1, 0, 0, &[(0, 0)]),
                scope(1, 0, 0, &[(1, 0)]),
                scope(2, 0, 0, &[(2, 0)]),
                scope(1, 0, 0, &[(0x1f, 0)]),
                scope(1, 0, 0, &[(0x1f, 2)]),
                scope(1, 0, 0, &[(0x1f, 3)]),
            ],
        )],
    )
}

/// A desktop: one unit for the integrated GPU, one INCLUDE_PCI_ALL unit with IOAPIC and HPET,
/// an RMRR for the USB controller (00:14.0) and one for the GPU, an ATSR and an RHSA.
pub fn desktop_dmar() -> Vec<u8> {
    let mut atsr = std::vec![0u8, 0];
    atsr.extend(0u16.to_le_bytes());
    let mut rhsa = std::vec![0u8; 4];
    rhsa.extend(0xfed9_1000u64.to_le_bytes());
    rhsa.extend(0u32.to_le_bytes());
    table(
        39,
        0x1,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(
                1,
                0xfed9_1000,
                &[scope(3, 2, 0, &[(0x1e, 7)]), scope(4, 0, 0, &[(0x1e, 6)])],
            ),
            rmrr(0x7b80_0000, 0x7ba3_ffff, &[scope(1, 0, 0, &[(0x14, 0)])]),
            rmrr(0x7c00_0000, 0x7fff_ffff, &[scope(1, 0, 0, &[(2, 0)])]),
            structure(2, &atsr, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            structure(3, &rhsa, &[]),
        ],
    )
}

struct Topology;

impl BusWalk for Topology {
    fn secondary_bus(&mut self, bridge: Bdf) -> Option<u8> {
        match (bridge.bus(), bridge.device(), bridge.function()) {
            (0, 0x1c, 0) => Some(3),
            (3, 0, 0) => Some(4),
            _ => None,
        }
    }
}

#[test]
fn qemu_table_parses() {
    let bytes = qemu_dmar();
    let dmar = Dmar::parse(&bytes).unwrap();
    assert_eq!(dmar.host_address_width, 39);
    assert!(dmar.interrupt_remapping());
    let units: Vec<_> = dmar.units().collect();
    assert_eq!(units.len(), 1);
    let unit = units[0];
    assert_eq!(unit.register_base, HostPhys(0xfed9_0000));
    assert!(!unit.include_pci_all());
    let scopes: Vec<_> = unit.scopes().collect();
    assert_eq!(scopes.len(), 7);
    assert_eq!(scopes[0].kind, ScopeKind::IoApic);
    assert_eq!(scopes[0].resolve(&mut Topology), Ok(bdf(0xff, 0, 0)));
    assert_eq!(scopes[3].kind, ScopeKind::Bridge);
    let devices: Vec<_> = scopes[1..]
        .iter()
        .map(|scope| scope.resolve(&mut Topology).unwrap())
        .collect();
    assert_eq!(
        devices,
        [
            bdf(0, 0, 0),
            bdf(0, 1, 0),
            bdf(0, 2, 0),
            bdf(0, 0x1f, 0),
            bdf(0, 0x1f, 2),
            bdf(0, 0x1f, 3)
        ]
    );
    assert_eq!(dmar.reserved_regions().count(), 0);
}

#[test]
fn desktop_table_parses() {
    let bytes = desktop_dmar();
    let dmar = Dmar::parse(&bytes).unwrap();
    let units: Vec<_> = dmar.units().collect();
    assert_eq!(units.len(), 2);
    assert!(!units[0].include_pci_all() && units[1].include_pci_all());
    assert_eq!(units[1].register_base, HostPhys(0xfed9_1000));
    let kinds: Vec<_> = units[1].scopes().map(|scope| scope.kind).collect();
    assert_eq!(kinds, [ScopeKind::IoApic, ScopeKind::Hpet]);
    assert_eq!(units[1].scopes().next().unwrap().enumeration_id, 2);
    let regions: Vec<_> = dmar.reserved_regions().collect();
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].region(), Ok((HostPhys(0x7b80_0000), 0x24_0000)));
    assert_eq!(
        regions[0].scopes().next().unwrap().resolve(&mut Topology),
        Ok(bdf(0, 0x14, 0))
    );
    let kinds: Vec<_> = dmar
        .structures()
        .map(|structure| match structure {
            RemappingStructure::Drhd(_) => 0,
            RemappingStructure::Rmrr(_) => 1,
            RemappingStructure::Atsr(atsr) => {
                assert!(!atsr.all_ports());
                assert_eq!(atsr.scopes().count(), 1);
                2
            }
            RemappingStructure::Skipped { kind } => kind,
        })
        .collect();
    assert_eq!(kinds, [0, 0, 1, 1, 2, 3]);
}

#[test]
fn paths_walk_through_bridges() {
    let bytes = table(
        39,
        0,
        &[drhd(
            0,
            0x1000,
            &[scope(1, 0, 0, &[(0x1c, 0), (0, 0), (5, 1)])],
        )],
    );
    let dmar = Dmar::parse(&bytes).unwrap();
    let first = dmar.units().next().unwrap().scopes().next().unwrap();
    assert_eq!(first.resolve(&mut Topology), Ok(bdf(4, 5, 1)));
    let bytes = table(39, 0, &[drhd(0, 0x1000, &[scope_bad_path()])]);
    let dmar = Dmar::parse(&bytes).unwrap();
    let unresolved = dmar.units().next().unwrap().scopes().next().unwrap();
    assert_eq!(
        unresolved.resolve(&mut Topology),
        Err(DmarError::PathNotFound)
    );
    let bytes = table(39, 0, &[drhd(0, 0x1000, &[scope(1, 0, 0, &[(32, 0)])])]);
    let invalid = Dmar::parse(&bytes)
        .unwrap()
        .units()
        .next()
        .unwrap()
        .scopes()
        .next()
        .unwrap();
    assert_eq!(invalid.resolve(&mut Topology), Err(DmarError::InvalidPath));
}

fn scope_bad_path() -> Vec<u8> {
    scope(1, 0, 0, &[(0x1d, 0), (0, 0)])
}

#[test]
fn malformed_tables_are_refused() {
    let good = qemu_dmar();
    assert_eq!(Dmar::parse(&good[..40]), Err(DmarError::TooShort));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Dmar::parse(&bad), Err(DmarError::BadSignature));
    let mut bad = good.clone();
    bad[60] ^= 1;
    assert_eq!(Dmar::parse(&bad), Err(DmarError::BadChecksum));
    assert_eq!(
        Dmar::parse(&good[..good.len() - 1]),
        Err(DmarError::LengthMismatch)
    );
    // A zero-length structure would loop forever if accepted.
    let bytes = table(39, 0, &[std::vec![0, 0, 0, 0]]);
    assert_eq!(
        Dmar::parse(&bytes),
        Err(DmarError::StructureLength { offset: 48 })
    );
    // A scope that claims more bytes than the DRHD has.
    let mut scope_bytes = scope(1, 0, 0, &[(1, 0)]);
    scope_bytes[1] = 12;
    let bytes = table(39, 0, &[drhd(0, 0x1000, &[scope_bytes])]);
    assert_eq!(
        Dmar::parse(&bytes),
        Err(DmarError::ScopeLength { offset: 64 })
    );
    let bytes = table(39, 0, &[rmrr(0x2000, 0x1fff, &[])]);
    assert_eq!(
        Dmar::parse(&bytes)
            .unwrap()
            .reserved_regions()
            .next()
            .unwrap()
            .region(),
        Err(DmarError::InvalidRegion)
    );
}

fn exercise(bytes: &[u8]) {
    if let Ok(dmar) = Dmar::parse(bytes) {
        if let Ok(units) = crate::dmar::Topology::from_dmar(&dmar, &mut Topology) {
            assert!(!units.units().is_empty());
            let _ = units.unit_of(bdf(4, 0, 0));
        }
        for structure in dmar.structures() {
            if let RemappingStructure::Drhd(drhd) = structure {
                for scope in drhd.scopes() {
                    let _ = scope.resolve(&mut Topology);
                    let _ = scope.path().count();
                }
            }
            if let RemappingStructure::Rmrr(rmrr) = structure {
                let _ = rmrr.region();
                let _ = rmrr.scopes().count();
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_tables_never_panic(flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8), desktop in any::<bool>()) {
        let mut bytes = if desktop { desktop_dmar() } else { qemu_dmar() };
        for (position, value) in flips {
            let length = bytes.len();
            bytes[position % length] = value;
        }
        // Fix the checksum so the structure validation is reached.
        bytes[9] = 0;
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        bytes[9] = 0u8.wrapping_sub(sum);
        exercise(&bytes);
    }
}
