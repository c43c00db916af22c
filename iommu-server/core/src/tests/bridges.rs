//! Bridges' bus numbers as the pci-server reports them: the table refuses what cannot be a bus
//! tree, and a multi-socket DMAR whose units list root-port bridge scopes routes the devices
//! behind those ports once the table is known (and refuses them as ambiguous before).

use super::bdf;
use super::multi_unit::{topology, NoWalk};
use crate::dmar::bridges::MAX_BRIDGES;
use crate::dmar::{BridgeTable, BridgeTableError, BusWalk, TopologyError};
use crate::fake::dmar::{drhd, scope, table};
use iommu_api::{Bdf, BridgeBuses};
use proptest::prelude::*;
use std::vec::Vec;

fn bridge(bus: u8, device: u8, secondary: u8, subordinate: u8) -> BridgeBuses {
    BridgeBuses {
        bridge: bdf(bus, device, 0),
        secondary,
        subordinate,
    }
}

/// A server's root complexes: root ports 00:1c.0 (buses 3..=4, a switch 03:00.0 with bus 4
/// below) and 00:1d.0 (bus 5), and a root port 00:1e.0 with bus 6.
fn server_bridges() -> BridgeTable {
    let mut table = BridgeTable::new();
    table
        .extend(&[
            bridge(0, 0x1c, 3, 4),
            bridge(3, 0, 4, 4),
            bridge(0, 0x1d, 5, 5),
            bridge(0, 0x1e, 6, 6),
        ])
        .unwrap();
    table
}

/// Two units as on a two-socket server: unit 0 lists root port 00:1c.0 as a bridge scope and
/// an endpoint behind it by path (00:1c.0 -> 03:00.0 -> 04:00.0's sibling 04:01.0); unit 1 is
/// INCLUDE_PCI_ALL.
fn two_sockets() -> Vec<u8> {
    table(
        46,
        0x1,
        &[
            drhd(
                0,
                0xd37f_c000,
                &[
                    scope(2, 0, 0, &[(0x1c, 0)]),
                    scope(1, 0, 0, &[(0x1c, 0), (0, 0), (1, 0)]),
                ],
            ),
            drhd(1, 0xfbff_c000, &[scope(3, 8, 0, &[(0x1f, 0)])]),
        ],
    )
}

#[test]
fn the_table_accepts_a_tree_and_walks_it() {
    let mut table = server_bridges();
    assert_eq!(table.bridges().len(), 4);
    assert_eq!(table.secondary_bus(bdf(0, 0x1c, 0)), Some(3));
    assert_eq!(table.bus_range(bdf(3, 0, 0)), Some((4, 4)));
    assert_eq!(table.bus_range(bdf(0, 2, 0)), None);
    assert!(table.knows_every_bridge());
}

#[test]
fn what_cannot_be_a_bus_tree_is_refused_and_changes_nothing() {
    let cases = [
        (
            bridge(0, 0x1c, 0, 4),
            BridgeTableError::InvalidRange(bdf(0, 0x1c, 0)),
        ),
        (
            bridge(5, 0, 5, 5),
            BridgeTableError::InvalidRange(bdf(5, 0, 0)),
        ),
        (
            bridge(0, 2, 7, 6),
            BridgeTableError::InvalidRange(bdf(0, 2, 0)),
        ),
        // The same bridge twice.
        (
            bridge(0, 0x1d, 5, 5),
            BridgeTableError::Overlapping {
                first: bdf(0, 0x1d, 0),
                second: bdf(0, 0x1d, 0),
            },
        ),
        // A sibling root port overlapping 00:1c.0's buses.
        (
            bridge(0, 2, 4, 7),
            BridgeTableError::Overlapping {
                first: bdf(0, 0x1c, 0),
                second: bdf(0, 2, 0),
            },
        ),
        // A bridge below 00:1c.0 (on bus 3) forwarding buses outside it.
        (
            bridge(3, 1, 7, 7),
            BridgeTableError::Overlapping {
                first: bdf(0, 0x1c, 0),
                second: bdf(3, 1, 0),
            },
        ),
    ];
    for (entry, error) in cases {
        let mut table = server_bridges();
        let before = table.clone();
        assert_eq!(
            table.extend(&[bridge(0, 0x10, 0x20, 0x20), entry]),
            Err(error),
            "{entry:?}"
        );
        assert_eq!(table, before, "{entry:?} changed the table");
    }
    let mut table = BridgeTable::new();
    let many: Vec<_> = (1..=255u8).map(|bus| bridge(0, 0, bus, bus)).collect();
    assert!(table.extend(&many[..1]).is_ok());
    assert_eq!(
        table.extend(&many[1..2]),
        Err(BridgeTableError::Overlapping {
            first: bdf(0, 0, 0),
            second: bdf(0, 0, 0)
        })
    );
    let distinct: Vec<_> = (0..=MAX_BRIDGES as u16)
        .map(|n| BridgeBuses {
            bridge: Bdf(n % 256),
            secondary: 1,
            subordinate: 1,
        })
        .collect();
    assert_eq!(
        BridgeTable::new().extend(&distinct),
        Err(BridgeTableError::TooMany)
    );
}

#[test]
fn root_port_scopes_route_the_devices_behind_them_once_buses_are_known() {
    let blind = topology(&two_sockets(), &mut NoWalk).unwrap();
    assert_eq!(blind.unit_of(bdf(0, 0x1c, 0)), Ok(0), "the port itself");
    // The unwalkable path might name any device, even one on the port's own bus.
    for behind in [
        bdf(0, 2, 0),
        bdf(3, 0, 0),
        bdf(4, 0, 0),
        bdf(4, 1, 0),
        bdf(5, 0, 0),
    ] {
        assert_eq!(
            blind.unit_of(behind),
            Err(TopologyError::Ambiguous(behind)),
            "{behind} before the report"
        );
    }
    assert_eq!(blind.units()[0].unresolved, 1, "the path through the port");

    let mut table = server_bridges();
    let known = topology(&two_sockets(), &mut table).unwrap();
    assert_eq!(known.units()[0].bridges[0].buses, Some((3, 4)));
    assert_eq!(known.units()[0].endpoints.as_slice(), &[bdf(4, 1, 0)]);
    assert_eq!(known.units()[0].unresolved, 0);
    for behind in [bdf(3, 0, 0), bdf(4, 0, 0), bdf(4, 1, 0), bdf(4, 0x1f, 7)] {
        assert_eq!(known.unit_of(behind), Ok(0), "{behind} behind 00:1c.0");
    }
    for elsewhere in [bdf(5, 0, 0), bdf(6, 0, 0), bdf(0, 2, 0), bdf(0x80, 0, 0)] {
        assert_eq!(known.unit_of(elsewhere), Ok(1), "{elsewhere}");
    }
}

#[test]
fn a_scope_naming_no_bridge_claims_the_function_alone_once_every_bridge_is_known() {
    let bytes = table(
        39,
        0,
        &[
            drhd(
                0,
                0xfed9_0000,
                &[
                    scope(2, 0, 0, &[(0x1b, 0)]),
                    scope(1, 0, 0, &[(0x1b, 0), (0, 0)]),
                ],
            ),
            drhd(1, 0xfed9_1000, &[]),
        ],
    );
    let blind = topology(&bytes, &mut NoWalk).unwrap();
    assert_eq!(
        blind.unit_of(bdf(3, 0, 0)),
        Err(TopologyError::Ambiguous(bdf(3, 0, 0)))
    );
    let known = topology(&bytes, &mut server_bridges()).unwrap();
    assert_eq!(known.unit_of(bdf(0, 0x1b, 0)), Ok(0));
    assert_eq!(known.unit_of(bdf(3, 0, 0)), Ok(1));
    assert_eq!(known.units()[0].absent, 1, "the path through 00:1b.0");
    assert!(known.units()[0].bridges.is_empty());
}

#[test]
fn bus_numbers_that_contradict_the_dmar_are_named() {
    // Unit 1 names 03:00.0 explicitly, but unit 0's root port forwards bus 3.
    let bytes = table(
        39,
        0,
        &[
            drhd(0, 0xfed9_0000, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            drhd(0, 0xfed9_1000, &[scope(1, 0, 3, &[(0, 0)])]),
            drhd(1, 0xfed9_2000, &[]),
        ],
    );
    assert!(topology(&bytes, &mut NoWalk).is_ok());
    assert_eq!(
        topology(&bytes, &mut server_bridges()),
        Err(TopologyError::Overlap {
            first: 0,
            second: 1,
            device: bdf(3, 0, 0)
        })
    );
}

proptest! {
    /// Whatever is accepted is a tree: the bridges covering any bus are nested in one chain.
    #[test]
    fn accepted_tables_are_trees(
        entries in proptest::collection::vec((0u8..8, 0u8..4, 0u8..10, 0u8..10), 0..24)
    ) {
        let mut table = BridgeTable::new();
        for (bus, device, secondary, subordinate) in entries {
            let before = table.clone();
            if table.extend(&[bridge(bus, device, secondary, subordinate)]).is_err() {
                prop_assert_eq!(&table, &before);
            }
        }
        for bus in 0..=10u8 {
            let covering: Vec<_> =
                table.bridges().iter().filter(|entry| entry.covers(bus)).collect();
            for a in &covering {
                for b in &covering {
                    let a_in_b = a.secondary >= b.secondary && a.subordinate <= b.subordinate;
                    let b_in_a = b.secondary >= a.secondary && b.subordinate <= a.subordinate;
                    prop_assert!(a_in_b || b_in_a);
                }
            }
        }
    }
}
