//! The unit topology of a DMAR: devices routed by the units' device scopes (endpoint, bridge
//! bus range, INCLUDE_PCI_ALL), IOAPIC and HPET scopes, and the tables that must be refused.

use super::bdf;
use super::multi_unit::{desktop, topology, NoWalk, RootPort, GPU, NIC, SATA};
use crate::dmar::{Dmar, Topology, TopologyError};
use crate::fake::dmar::{drhd, rmrr, scope, table};
use iommu_api::{Bdf, HostPhys};
use proptest::prelude::*;

#[test]
fn devices_route_by_the_units_device_scopes() {
    let topology = topology(&desktop(), &mut NoWalk).unwrap();
    assert_eq!(topology.units().len(), 2);
    assert_eq!(topology.unit_of(GPU), Ok(0), "listed explicitly");
    assert_eq!(topology.unit_of(bdf(0, 2, 1)), Ok(1), "another function");
    assert_eq!(
        topology.unit_of(SATA),
        Ok(1),
        "INCLUDE_PCI_ALL catches the rest"
    );
    assert_eq!(topology.unit_of(NIC), Ok(1));
    assert_eq!(topology.ioapic(2), Some((1, bdf(0xf0, 0x1f, 0))));
    assert_eq!(topology.ioapic(0), None);
    assert_eq!(topology.hpet(0), Some((1, bdf(0, 0x1f, 0))));
    let units = &topology.units()[1];
    assert!(units.include_pci_all && units.endpoints.is_empty());
    assert_eq!(units.register_base, HostPhys(0xfed9_1000));
}

#[test]
fn bridge_scopes_cover_their_buses_or_make_devices_ambiguous() {
    let bytes = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            drhd(1, 0xfed9_1000, &[]),
        ],
    );
    let walked = topology(&bytes, &mut RootPort).unwrap();
    assert_eq!(walked.unit_of(bdf(0, 0x1c, 0)), Ok(0), "the bridge itself");
    assert_eq!(walked.unit_of(bdf(4, 0, 0)), Ok(0), "behind it");
    assert_eq!(walked.unit_of(bdf(5, 0, 0)), Ok(1), "outside its buses");
    let blind = topology(&bytes, &mut NoWalk).unwrap();
    assert_eq!(blind.unit_of(bdf(0, 0x1c, 0)), Ok(0));
    assert_eq!(
        blind.unit_of(bdf(0, 3, 0)),
        Ok(1),
        "a sibling on the bridge's bus"
    );
    assert_eq!(
        blind.unit_of(bdf(4, 0, 0)),
        Err(TopologyError::Ambiguous(bdf(4, 0, 0))),
        "never guessed into the catch-all unit"
    );
}

#[test]
fn bad_dmars_and_uncovered_devices_are_named() {
    let none = table(39, 0, &[rmrr(0x1000, 0x1fff, &[scope(1, 0, 0, &[(2, 0)])])]);
    assert_eq!(topology(&none, &mut NoWalk), Err(TopologyError::NoUnits));
    let overlap = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 0, &[(2, 0)])]),
        ],
    );
    assert_eq!(
        topology(&overlap, &mut NoWalk),
        Err(TopologyError::Overlap {
            first: 0,
            second: 1,
            device: GPU
        })
    );
    let buses = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 3, &[(0, 0)])]),
        ],
    );
    assert_eq!(
        topology(&buses, &mut RootPort),
        Err(TopologyError::Overlap {
            first: 0,
            second: 1,
            device: bdf(3, 0, 0)
        }),
        "unit 1 lists a device on unit 0's bridge buses"
    );
    let catch_all = table(
        39,
        0,
        &[drhd(1, 0xfed9_0000, &[]), drhd(1, 0xfed9_1000, &[])],
    );
    assert_eq!(
        topology(&catch_all, &mut NoWalk),
        Err(TopologyError::TwoCatchAllUnits { segment: 0 })
    );
    let shared = table(
        39,
        0,
        &[drhd(0, 0xfed9_0000, &[]), drhd(1, 0xfed9_0000, &[])],
    );
    assert_eq!(
        topology(&shared, &mut NoWalk),
        Err(TopologyError::SharedRegisters {
            base: HostPhys(0xfed9_0000)
        })
    );
    let listed = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 0, &[(3, 0)])]),
        ],
    );
    let listed = topology(&listed, &mut NoWalk).unwrap();
    assert_eq!(
        listed.unit_of(SATA),
        Err(TopologyError::NotCovered(SATA)),
        "two units, no catch-all, not listed"
    );
    assert_eq!(
        std::format!("{}", TopologyError::NotCovered(SATA)),
        "no DRHD unit covers 00:17.0"
    );
}

proptest! {
    #[test]
    fn topologies_of_mutated_tables_never_panic(
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8),
        device in any::<u16>(),
    ) {
        let mut bytes = desktop();
        for (offset, value) in flips {
            let index = offset % bytes.len();
            bytes[index] = value;
        }
        // Keep the checksum right so the mutation reaches the structures.
        bytes[9] = 0;
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        bytes[9] = 0u8.wrapping_sub(sum);
        if let Ok(dmar) = Dmar::parse(&bytes) {
            if let Ok(topology) = Topology::from_dmar(&dmar, &mut RootPort) {
                let _ = topology.unit_of(Bdf(device));
                let _ = topology.ioapic(device as u8);
                prop_assert!(!topology.units().is_empty());
            }
        }
    }
}
