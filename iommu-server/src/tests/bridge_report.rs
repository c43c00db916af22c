//! `ReportBridges` end to end on a two-unit server DMAR whose first unit lists a root-port
//! bridge scope (as a multi-socket server's per-root-complex units do): devices behind the port
//! are refused before the report and routed to that unit after it; malformed, out-of-order,
//! foreign and late reports are refused by name and change nothing; QEMU's single unit keeps
//! routing every device to itself.

use super::*;
use iommu_api::{BridgeBuses, ReportBridgesRequest, REPORT_LAST_PART};
use iommu_core::domain::ReservedRegion;
use iommu_core::fake::dmar::rmrr;

/// Root port 00:1c.0 (unit 0's bridge scope) with a switch: upstream port 03:00.0 forwarding
/// bus 4.
const PORT: Bdf = Bdf(0x00e0);
const BEHIND: Bdf = Bdf(0x0300); // 03:00.0, the switch's upstream port
const DEEPER: Bdf = Bdf(0x0400); // 04:00.0, a NIC below the switch
const ELSEWHERE: Bdf = Bdf(0x0500); // 05:00.0, below root port 00:1d.0 (unit 1)
const ON_BUS_0: Bdf = Bdf(0x0010); // 00:02.0

/// Unit 0 at 0xd37fc000: bridge scope 00:1c.0; unit 1 at 0xfbffc000: INCLUDE_PCI_ALL with the
/// IOAPIC. An RMRR for 04:00.0, named by its path through 00:1c.0 and 03:00.0.
fn two_sockets() -> &'static [u8] {
    table(
        46,
        0x1,
        &[
            drhd(0, 0xd37f_c000, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            drhd(1, 0xfbff_c000, &[scope(3, 8, 0xf0, &[(0x1f, 0)])]),
            rmrr(
                0x7c00_0000,
                0x7c00_ffff,
                &[scope(1, 0, 0, &[(0x1c, 0), (0, 0), (0, 0)])],
            ),
        ],
    )
    .leak()
}

fn server_over(bytes: &'static [u8]) -> Server {
    let dmar = Dmar::parse(bytes).unwrap();
    let scope = crate::bringup::scope(&dmar).unwrap();
    let memory = FakeMemory::new();
    let given: Vec<_> = (0..scope.topology.units().len())
        .map(|index| UnitRegisters {
            index,
            registers: FakeVtd::new(FakeVtdConfig::qemu(), memory.clone()),
            clock: FakeClock::default(),
        })
        .collect();
    let frames = FakeFrameAllocator::new(HostPhys(0x1000_0000), 512);
    bring_up(given, memory, frames, scope, 0x48, policy(false)).unwrap()
}

fn entry(bridge: Bdf, secondary: u8, subordinate: u8) -> BridgeBuses {
    BridgeBuses {
        bridge,
        secondary,
        subordinate,
    }
}

/// The machine's bridges: 00:1c.0 (3..=4), 03:00.0 (4), 00:1d.0 (5).
fn bridges() -> [BridgeBuses; 3] {
    [
        entry(PORT, 3, 4),
        entry(BEHIND, 4, 4),
        entry(Bdf(0x00e8), 5, 5),
    ]
}

fn part(number: u16, last: bool, entries: &[BridgeBuses]) -> ReportBridgesRequest {
    let mut request = ReportBridgesRequest {
        part: number,
        count: entries.len() as u8,
        flags: if last { REPORT_LAST_PART } else { 0 },
        ..Default::default()
    };
    request.bridges[..entries.len()].copy_from_slice(entries);
    request
}

fn report(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    caller: u64,
    request: &ReportBridgesRequest,
) -> Result<Vec<u8>, IommuError> {
    call(
        server,
        kernel,
        caller,
        Operation::ReportBridges,
        request.as_bytes(),
    )
}

fn quarantine(
    server: &mut Server,
    kernel: &mut FakeCapabilities,
    device: Bdf,
) -> Result<Vec<u8>, IommuError> {
    let request = DeviceRequest {
        domain: 0,
        device,
        alias_count: 0,
        aliases: [Bdf::default(); MAX_ALIASES],
    };
    call(
        server,
        kernel,
        PCI,
        Operation::AttachDevice,
        request.as_bytes(),
    )
}

#[test]
fn devices_behind_a_root_port_scope_are_refused_before_the_report_and_routed_after() {
    let mut server = server_over(two_sockets());
    let mut kernel = FakeCapabilities::default();
    for device in [BEHIND, DEEPER, ELSEWHERE] {
        assert_eq!(
            quarantine(&mut server, &mut kernel, device),
            Err(IommuError::AmbiguousUnit),
            "{device} before the report"
        );
    }
    assert!(!server.manager.has_devices(), "refusals placed nothing");
    assert!(server.manager.reserved().is_empty(), "the RMRR waits");

    report(
        &mut server,
        &mut kernel,
        PCI,
        &part(0, false, &bridges()[..1]),
    )
    .unwrap();
    assert_eq!(
        quarantine(&mut server, &mut kernel, DEEPER),
        Err(IommuError::AmbiguousUnit),
        "routing changes only with the last part"
    );
    report(
        &mut server,
        &mut kernel,
        PCI,
        &part(1, true, &bridges()[1..]),
    )
    .unwrap();
    assert!(server.bridges.done());

    for (device, unit) in [
        (BEHIND, 0),
        (DEEPER, 0),
        (ELSEWHERE, 1),
        (ON_BUS_0, 1),
        (PORT, 0),
    ] {
        quarantine(&mut server, &mut kernel, device).unwrap();
        assert_eq!(server.manager.device_unit(device), Some(unit), "{device}");
    }
    // Quarantine blocks the device on its own unit: the DMA faults there.
    assert!(unit_fake(&mut server, 0)
        .dma(DEEPER, IoVirt(0x1000), AccessKind::Read)
        .is_err());
    assert_eq!(
        server.manager.reserved(),
        &[ReservedRegion {
            device: DEEPER,
            base: HostPhys(0x7c00_0000),
            size: 0x1_0000,
        }],
        "the RMRR behind the bridges is known now"
    );
    assert_eq!(
        server.units.topology().units()[0].bridges[0].buses,
        Some((3, 4))
    );

    assert_eq!(
        report(&mut server, &mut kernel, PCI, &part(0, true, &bridges())),
        Err(IommuError::BridgesAlreadyReported),
        "routing is final"
    );
}

#[test]
fn bad_reports_are_refused_by_name_and_change_nothing() {
    let mut server = server_over(two_sockets());
    let mut kernel = FakeCapabilities::default();
    let before = server.units.topology().clone();
    let refused = [
        (OWNER, part(0, true, &bridges()), IommuError::NotOwner),
        (
            PCI,
            part(0, true, &[entry(PORT, 0, 4)]),
            IommuError::InvalidBusRange,
        ),
        (
            PCI,
            part(0, true, &[entry(PORT, 3, 4), entry(ON_BUS_0, 4, 6)]),
            IommuError::OverlappingBridges,
        ),
        (
            PCI,
            part(0, true, &[entry(PORT, 3, 4), entry(PORT, 3, 4)]),
            IommuError::OverlappingBridges,
        ),
        (PCI, part(1, true, &bridges()), IommuError::ReportOutOfOrder),
    ];
    for (caller, request, error) in refused {
        assert_eq!(
            report(&mut server, &mut kernel, caller, &request),
            Err(error)
        );
        assert_eq!(
            server.units.topology(),
            &before,
            "{error:?} changed routing"
        );
        assert!(!server.bridges.done());
    }
    let mut unused_not_zero = part(0, true, &bridges());
    unused_not_zero.bridges[5] = entry(PORT, 9, 9);
    assert_eq!(
        report(&mut server, &mut kernel, PCI, &unused_not_zero),
        Err(IommuError::InvalidField)
    );
    assert_eq!(
        call(
            &mut server,
            &mut kernel,
            PCI,
            Operation::ReportBridges,
            &part(0, true, &bridges()).as_bytes()[..100],
        ),
        Err(IommuError::MalformedMessage)
    );
    // An unfinished report, then a wrong next part: the pending part survives the refusal.
    report(
        &mut server,
        &mut kernel,
        PCI,
        &part(0, false, &bridges()[..2]),
    )
    .unwrap();
    assert_eq!(
        report(
            &mut server,
            &mut kernel,
            PCI,
            &part(2, true, &bridges()[2..])
        ),
        Err(IommuError::ReportOutOfOrder)
    );
    assert_eq!(
        report(
            &mut server,
            &mut kernel,
            PCI,
            &part(1, true, &[entry(PORT, 3, 4)])
        ),
        Err(IommuError::OverlappingBridges),
        "checked against the earlier part"
    );
    assert_eq!(server.units.topology(), &before);
    report(
        &mut server,
        &mut kernel,
        PCI,
        &part(1, true, &bridges()[2..]),
    )
    .unwrap();
    quarantine(&mut server, &mut kernel, DEEPER).unwrap();
    assert_eq!(server.manager.device_unit(DEEPER), Some(0));
}

#[test]
fn bus_ranges_contradicting_the_dmar_are_refused_and_routing_stays() {
    // Unit 1 names 03:00.0 explicitly, but unit 0's root port forwards bus 3.
    let bytes = table(
        46,
        0x1,
        &[
            drhd(0, 0xd37f_c000, &[scope(2, 0, 0, &[(0x1c, 0)])]),
            drhd(0, 0xe0ff_c000, &[scope(1, 0, 3, &[(0, 0)])]),
            drhd(1, 0xfbff_c000, &[]),
        ],
    )
    .leak();
    let mut server = server_over(bytes);
    let mut kernel = FakeCapabilities::default();
    let before = server.units.topology().clone();
    assert_eq!(
        report(&mut server, &mut kernel, PCI, &part(0, true, &bridges())),
        Err(IommuError::ConflictingUnits)
    );
    assert_eq!(server.units.topology(), &before);
    assert!(!server.bridges.done());
    quarantine(&mut server, &mut kernel, BEHIND).unwrap();
    assert_eq!(
        server.manager.device_unit(BEHIND),
        Some(1),
        "as the DMAR names it"
    );
}

#[test]
fn a_report_after_a_device_is_placed_is_refused() {
    let mut server = server_over(two_sockets());
    let mut kernel = FakeCapabilities::default();
    quarantine(&mut server, &mut kernel, ON_BUS_0).unwrap();
    let before = server.units.topology().clone();
    assert_eq!(
        report(&mut server, &mut kernel, PCI, &part(0, true, &bridges())),
        Err(IommuError::DevicesAlreadyPlaced)
    );
    assert_eq!(server.units.topology(), &before);
    assert_eq!(
        quarantine(&mut server, &mut kernel, DEEPER),
        Err(IommuError::AmbiguousUnit)
    );
}

#[test]
fn qemus_single_unit_keeps_every_device_after_the_report() {
    let bytes = table(
        39,
        0x3,
        &[drhd(
            0,
            0xfed9_0000,
            &[
                scope(3, 0, 0xff, &[(0, 0)]),
                scope(1, 0, 0, &[(1, 0)]),
                scope(2, 0, 0, &[(0x1c, 0)]),
            ],
        )],
    )
    .leak();
    let mut server = server_over(bytes);
    let mut kernel = FakeCapabilities::default();
    report(&mut server, &mut kernel, PCI, &part(0, true, &bridges())).unwrap();
    for device in [BEHIND, DEEPER, ELSEWHERE, ON_BUS_0, Bdf(0x0008)] {
        quarantine(&mut server, &mut kernel, device).unwrap();
        assert_eq!(server.manager.device_unit(device), Some(0), "{device}");
    }
    let empty = server_over(
        table(
            39,
            0x3,
            &[drhd(0, 0xfed9_0000, &[scope(1, 0, 0, &[(1, 0)])])],
        )
        .leak(),
    );
    let mut empty = empty;
    report(&mut empty, &mut kernel, PCI, &part(0, true, &[])).unwrap();
    quarantine(&mut empty, &mut kernel, DEEPER).unwrap();
}
