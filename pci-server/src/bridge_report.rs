//! Telling the iommu-server every bridge's bus numbers (`iommu-api` `ReportBridges`), once at
//! boot after enumeration and before the first device goes to quarantine: the iommu-server has
//! no config space, and without the numbers it cannot tell which buses a DMAR bridge scope
//! covers (VT-d spec rev 4.1, 8.3.1), so devices behind root ports a unit lists are refused.
//!
//! Only bridges enumeration accepted are reported (a bridge named in a topology error had its
//! subtree skipped: nothing behind it is ever placed), and each must agree with those before it
//! (`BridgeBuses::consistent_with`, the check the iommu-server applies too), in enumeration
//! order, so that one bad bridge costs its own entry, not the whole report. The report goes
//! in parts of [`BRIDGES_PER_REPORT`]; an empty report is still sent (it tells the iommu-server
//! that no function is a bridge).

use core::fmt;

use iommu_api::{
    BridgeBuses, Operation, ReportBridgesRequest, BRIDGES_PER_REPORT, REPORT_LAST_PART,
};
use pci_core::ownership::IommuRefusal;
use pci_core::Inventory;
use zerocopy::IntoBytes;

use crate::iommu::IommuClient;

/// Most bridges reported (the iommu-server keeps as many: one per secondary bus).
pub const MAX_REPORTED: usize = 256;

/// Why a report did not go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportError {
    /// The iommu-server refused part `part` with error `code` (0: the call itself failed).
    Refused {
        /// The part's number.
        part: u16,
        /// The iommu-server's error code.
        code: u32,
    },
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Refused { part, code } => {
                let reason = iommu_api::IommuError::from_code(*code)
                    .map(|error| error.description())
                    .unwrap_or("the call failed");
                write!(f, "part {part} refused: {reason} (code {code})")
            }
        }
    }
}

/// Where the parts go (the iommu-server's portal; a recorder in tests).
pub trait ReportSink {
    /// Sends one part; the refusal carries the iommu-server's error code.
    fn send(&mut self, part: &ReportBridgesRequest) -> Result<(), IommuRefusal>;
}

impl ReportSink for IommuClient {
    fn send(&mut self, part: &ReportBridgesRequest) -> Result<(), IommuRefusal> {
        self.call(Operation::ReportBridges, part.as_bytes())
    }
}

/// The bridges to report: those enumeration accepted, each consistent with the ones before it.
/// `skipped` hears of every other bridge.
pub fn reported_bridges(
    inventory: &Inventory,
    mut skipped: impl FnMut(BridgeBuses),
) -> heapless::Vec<BridgeBuses, MAX_REPORTED> {
    let refused_by_enumeration = |bdf| {
        inventory.errors().iter().any(|error| {
            use pci_core::inventory::TopologyError::*;
            match *error {
                SecondaryNotBelowBridge { bridge, .. }
                | SubordinateBelowSecondary { bridge, .. }
                | OutsideParentRange { bridge, .. }
                | BusAlreadyClaimed { bridge, .. }
                | TooDeep { bridge } => bridge == bdf,
                InventoryFull | VirtualFunctionsOutOfRange { .. } => false,
            }
        })
    };
    let mut reported: heapless::Vec<BridgeBuses, MAX_REPORTED> = heapless::Vec::new();
    for function in inventory.functions() {
        let Some(numbers) = function.bus_numbers.filter(|_| function.is_bridge()) else {
            continue;
        };
        let entry = BridgeBuses {
            bridge: function.bdf,
            secondary: numbers.secondary,
            subordinate: numbers.subordinate,
        };
        let fits = !refused_by_enumeration(function.bdf)
            && entry.is_valid()
            && reported.iter().all(|other| other.consistent_with(&entry));
        if !fits || reported.push(entry).is_err() {
            skipped(entry);
        }
    }
    reported
}

/// Sends `bridges` in numbered parts, the last flagged; stops at the first refusal. Returns
/// how many parts were sent.
pub fn send_report(
    sink: &mut impl ReportSink,
    bridges: &[BridgeBuses],
) -> Result<u16, ReportError> {
    let parts = bridges.len().div_ceil(BRIDGES_PER_REPORT).max(1);
    let mut chunks = bridges.chunks(BRIDGES_PER_REPORT);
    for index in 0..parts {
        let chunk = chunks.next().unwrap_or(&[]);
        // At most MAX_REPORTED / BRIDGES_PER_REPORT + 1 parts, so the number fits.
        let part = u16::try_from(index).unwrap_or(u16::MAX);
        let mut request = ReportBridgesRequest {
            part,
            count: u8::try_from(chunk.len()).unwrap_or(0),
            flags: if index + 1 == parts {
                REPORT_LAST_PART
            } else {
                0
            },
            ..Default::default()
        };
        for (slot, entry) in request.bridges.iter_mut().zip(chunk) {
            *slot = *entry;
        }
        sink.send(&request)
            .map_err(|refusal| ReportError::Refused {
                part,
                code: refusal.0,
            })?;
    }
    Ok(u16::try_from(parts).unwrap_or(u16::MAX))
}

/// Reports the inventory's bridges to the iommu-server and logs the outcome.
pub fn report_bridges(sink: &mut impl ReportSink, inventory: &Inventory) {
    let bridges = reported_bridges(inventory, |entry| {
        sluice_rt::log!(
            "pci-server: bridge {} (buses {:02x}-{:02x}) not reported to the iommu-server: enumeration refused it or it contradicts an earlier bridge",
            entry.bridge,
            entry.secondary,
            entry.subordinate
        )
    });
    match send_report(sink, &bridges) {
        Ok(parts) => sluice_rt::log!(
            "pci-server: {} bridge bus range(s) reported to the iommu-server in {parts} part(s)",
            bridges.len()
        ),
        Err(error) => sluice_rt::log!(
            "pci-server: bridge report to the iommu-server failed ({error}): devices behind bridge scopes stay refused"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pci_api::Bdf;
    use pci_core::fake::{desktop, desktop_topology, q35, q35_ecam, q35_topology, root_port};
    use pci_core::EnumerationOptions;

    #[derive(Default)]
    struct Recorder {
        parts: Vec<ReportBridgesRequest>,
        refuse_part: Option<(u16, u32)>,
    }

    impl ReportSink for Recorder {
        fn send(&mut self, part: &ReportBridgesRequest) -> Result<(), IommuRefusal> {
            if let Some((number, code)) = self.refuse_part {
                if part.part == number {
                    return Err(IommuRefusal(code));
                }
            }
            self.parts.push(*part);
            Ok(())
        }
    }

    fn entry(bridge: Bdf, secondary: u8, subordinate: u8) -> BridgeBuses {
        BridgeBuses {
            bridge,
            secondary,
            subordinate,
        }
    }

    #[test]
    fn q35s_bridges_are_reported_with_their_buses() {
        let mut config = q35_topology();
        let inventory =
            Inventory::enumerate(&mut config, &q35_ecam(), EnumerationOptions::default());
        let mut skipped = Vec::new();
        let bridges = reported_bridges(&inventory, |entry| skipped.push(entry));
        assert!(skipped.is_empty());
        for expected in [
            entry(q35::ROOT_PORT_NVME, 1, 1),
            entry(q35::ROOT_PORT_SWITCH, 2, 5),
            entry(q35::SWITCH_UPSTREAM, 3, 5),
            entry(q35::SWITCH_DOWNSTREAM_0, 4, 4),
            entry(q35::SWITCH_DOWNSTREAM_1, 5, 5),
            entry(q35::PCIE_PCI_BRIDGE, 7, 7),
            entry(q35::ROOT_PORT_EDU, 9, 9),
        ] {
            assert!(bridges.contains(&expected), "{expected:?}");
        }
        assert_eq!(
            bridges.len(),
            9,
            "five root ports, the switch's three, the PCI bridge"
        );
        assert!(!bridges
            .iter()
            .any(|b| b.bridge == q35::EDU || b.bridge == q35::LPC));
    }

    #[test]
    fn bridges_enumeration_refused_or_that_contradict_earlier_ones_are_left_out() {
        // A second root port claiming the GPU port's bus: enumeration refuses it.
        let mut config = desktop_topology().with(
            pci_core::Bdf::from_bus_devfn(0, 7 << 3),
            root_port(0, 1, 1, true),
        );
        let inventory =
            Inventory::enumerate(&mut config, &q35_ecam(), EnumerationOptions::default());
        let mut skipped = Vec::new();
        let bridges = reported_bridges(&inventory, |entry| skipped.push(entry));
        assert_eq!(skipped, [entry(Bdf::new(0, 7, 0).unwrap(), 1, 1)]);
        assert!(bridges.contains(&entry(desktop::GPU_ROOT_PORT, 1, 1)));
        assert!(bridges.contains(&entry(desktop::PCIE_PCI_BRIDGE, 6, 6)));
        for (index, a) in bridges.iter().enumerate() {
            for b in &bridges[index + 1..] {
                assert!(a.consistent_with(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn reports_go_in_numbered_parts_with_the_last_flagged() {
        let bridges: Vec<_> = (1..=250u8)
            .map(|bus| entry(Bdf::new(0, bus % 32, bus / 32).unwrap(), bus, bus))
            .collect();
        let mut sink = Recorder::default();
        assert_eq!(send_report(&mut sink, &bridges), Ok(3));
        let parts: Vec<_> = sink
            .parts
            .iter()
            .map(|p| (p.part, p.count, p.flags))
            .collect();
        assert_eq!(parts, [(0, 120, 0), (1, 120, 0), (2, 10, REPORT_LAST_PART)]);
        assert_eq!(sink.parts[2].bridges[9], bridges[249]);
        assert_eq!(sink.parts[2].bridges[10], BridgeBuses::default());

        let mut empty = Recorder::default();
        assert_eq!(send_report(&mut empty, &[]), Ok(1));
        assert_eq!(
            (empty.parts[0].count, empty.parts[0].flags),
            (0, REPORT_LAST_PART)
        );

        let mut refusing = Recorder {
            refuse_part: Some((1, 45)),
            ..Recorder::default()
        };
        assert_eq!(
            send_report(&mut refusing, &bridges),
            Err(ReportError::Refused { part: 1, code: 45 })
        );
        assert_eq!(refusing.parts.len(), 1, "nothing after the refusal");
    }
}
