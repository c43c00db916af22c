//! Host tests of MSI-X through the server's request path: a q35 fake whose nvme (MSI-X, 65
//! entries in BAR0 at 0x2000) the system description gives to owner 33, a fake table behind
//! the real slot bookkeeping, and the refusals (not the owner, entry out of range, table
//! outside the windows, memory decoding off) that must write nothing. The fixtures are shared
//! with [`crate::msix_lifecycle_tests`].

use iommu_api::IrteStatusReply;
use pci_api::{ClaimRequest, ConfigWriteRequest, MsiProgramRequest, Operation, OwnerId, PciError};
use pci_core::fake::{
    q35, q35_ecam, q35_topology, FakeConfigSpace, FakeMsixTable, RecordingDelay, RecordingIommu,
};
use pci_core::msi::{irte_index, MsiMessage, MsixEntryRegister, MsixTable};
use pci_core::msix::{MsixPbaLocation, MsixTableLocation};
use pci_core::ownership::{DmaIdentity, IommuBinding, IommuRefusal, Ownership};
use pci_core::registers::{header, msix, Command};
use pci_core::{ConfigSpace, EnumerationOptions, Inventory};
use sluice_rt::abi::syscall::Selector;
use zerocopy::IntoBytes;

use crate::assignments::{Assignments, Record};
use crate::bars::{DeviceWindow, DeviceWindows};
use crate::iommu::DomainBinding;
use crate::msix::{TableAccess, TableSlots, MSIX_VIRTUAL, PBA_SLOT_OFFSET, SLOT_BYTES};
use crate::service::{Carver, Server};

pub(crate) const OWNER: OwnerId = OwnerId(33);
pub(crate) const OTHER: OwnerId = OwnerId(34);

/// The recording IOMMU plus the IRTEs the iommu-server would report: (index, what it says),
/// and its IOAPIC pin entries.
pub(crate) struct TestIommu(
    pub RecordingIommu,
    pub Vec<(u16, IrteStatusReply)>,
    pub crate::intx_tests::FakeIoapicEntries,
);

impl IommuBinding for TestIommu {
    fn attach_quarantine(&mut self, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        self.0.attach_quarantine(device)
    }
    fn attach_owner(&mut self, owner: OwnerId, device: &DmaIdentity) -> Result<(), IommuRefusal> {
        self.0.attach_owner(owner, device)
    }
}

impl DomainBinding for TestIommu {
    fn set_owner_domain(&mut self, _owner: OwnerId, _domain: u32) {}
    fn irte_status(&mut self, handle: u16) -> Result<IrteStatusReply, IommuRefusal> {
        self.1
            .iter()
            .find(|(index, _)| *index == handle)
            .map(|(_, status)| *status)
            .ok_or(IommuRefusal(iommu_api::IommuError::UnknownIrte.code()))
    }
    fn allocate_ioapic_irte(
        &mut self,
        gsi: u32,
        owner: OwnerId,
    ) -> Result<iommu_api::IoapicIrteReply, IommuRefusal> {
        self.2.allocate(gsi, owner)
    }
    fn free_irte(&mut self, handle: u16) -> Result<(), IommuRefusal> {
        self.2.free(handle)
    }
}

/// Records IRTE `index` as programmed by `owner` for `source` (requester-id verification).
pub(crate) fn grant(server: &mut TestServer, index: u16, owner: OwnerId, source: pci_api::Bdf) {
    server.iommu.1.retain(|(known, _)| *known != index);
    server.iommu.1.push((
        index,
        IrteStatusReply {
            owner: owner.0,
            present: 1,
            source_validation: 1,
            source_qualifier: 0,
            vector: 0x49,
            source_id: iommu_api::Bdf(source.requester_id()),
            reserved: 0,
        },
    ));
}

pub(crate) struct TestCarver;

impl Carver for TestCarver {
    fn carve(&mut self, _: Selector, _: u64, _: u64) -> Result<Selector, PciError> {
        Ok(Selector(40))
    }
    fn revoke(&mut self, _: Selector) {}
}

/// The real slot bookkeeping over an in-memory table.
#[derive(Default)]
pub(crate) struct FakeTables {
    pub slots: TableSlots,
    pub table: FakeMsixTable,
    pub mapped: Vec<MsixTableLocation>,
    pub unmapped: Vec<pci_api::Bdf>,
    /// Pending bits the device shows: (function, PBA dword, bits).
    pub pending: Vec<(pci_api::Bdf, u32, u32)>,
}

impl MsixTable for FakeTables {
    fn read_entry(&self, bdf: pci_api::Bdf, entry: u16, register: MsixEntryRegister) -> u32 {
        self.table.read_entry(bdf, entry, register)
    }
    fn write_entry(
        &mut self,
        bdf: pci_api::Bdf,
        entry: u16,
        register: MsixEntryRegister,
        value: u32,
    ) {
        assert!(
            self.slots.register_address(bdf, entry, register).is_some(),
            "a write to a table that is not mapped"
        );
        self.table.write_entry(bdf, entry, register, value);
    }
}

impl TableAccess for FakeTables {
    fn map_table(
        &mut self,
        location: &MsixTableLocation,
        pba: Option<&MsixPbaLocation>,
        windows: &DeviceWindows,
    ) -> Result<(), PciError> {
        if self.slots.is_mapped(location) {
            return Ok(());
        }
        let placement = self.slots.place(location, pba, windows)?;
        assert!(self.slots.record(location, &placement));
        self.mapped.push(*location);
        Ok(())
    }
    fn unmap_table(&mut self, bdf: pci_api::Bdf) {
        if self.slots.forget(bdf).is_some() {
            self.unmapped.push(bdf);
        }
    }
    fn read_pba(&self, bdf: pci_api::Bdf, dword: u32) -> Option<u32> {
        self.slots.pba_address(bdf, dword)?;
        Some(
            self.pending
                .iter()
                .find(|(owner, index, _)| *owner == bdf && *index == dword)
                .map_or(0, |(_, _, bits)| *bits),
        )
    }
}

pub(crate) type TestServer = Server<
    FakeConfigSpace,
    RecordingDelay,
    TestIommu,
    TestCarver,
    FakeTables,
    crate::intx_tests::FakeLines,
>;

/// A server whose description gives nvme and edu to `OWNER`; device window at `window_base`.
pub(crate) fn server(window_base: u64) -> Box<TestServer> {
    let mut config = q35_topology();
    let inventory = Inventory::enumerate(&mut config, &q35_ecam(), EnumerationOptions::default());
    let ownership = Ownership::new(&mut config, &inventory);
    let records = [q35::NVME, q35::EDU].map(|host_bdf| Record {
        host_bdf,
        guest: 1,
        virtual_function: false,
    });
    let assignments = Assignments::check(records.into_iter(), &inventory, 32, &mut |_| {});
    let mut windows = heapless::Vec::new();
    windows
        .push(DeviceWindow {
            selector: Selector(6),
            base: window_base,
            size: 0x100_0000,
        })
        .unwrap();
    Box::new(Server {
        config,
        delay: RecordingDelay::default(),
        iommu: TestIommu(RecordingIommu::default(), Vec::new(), Default::default()),
        carver: TestCarver,
        inventory,
        ownership,
        assignments,
        windows: DeviceWindows::new(windows),
        tables: FakeTables::default(),
        lines: crate::intx_tests::FakeLines::default(),
        intx: crate::intx::IntxRoutes::default(),
    })
}

pub(crate) fn call(
    server: &mut TestServer,
    caller: OwnerId,
    operation: Operation,
    bytes: &[u8],
) -> u32 {
    server.handle(caller, operation as u16, bytes).status
}

pub(crate) fn claim(server: &mut TestServer, bdf: pci_api::Bdf) {
    let request = ClaimRequest {
        bdf,
        reserved: 0,
        domain: 3,
    };
    assert_eq!(call(server, OWNER, Operation::Claim, request.as_bytes()), 0);
    // The claim cleared the table (tested on its own): the logs start after it.
    server.tables.table.writes.clear();
    server.tables.mapped.clear();
}

pub(crate) fn set_command(server: &mut TestServer, value: u16) -> u32 {
    let request = ConfigWriteRequest {
        bdf: q35::NVME,
        offset: header::COMMAND,
        width: 2,
        reserved: [0; 3],
        value: u32::from(value),
    };
    call(server, OWNER, Operation::ConfigWrite, request.as_bytes())
}

pub(crate) fn msix_request(bdf: pci_api::Bdf, entry: u16, handle: u16) -> MsiProgramRequest {
    MsiProgramRequest {
        bdf,
        vector: entry,
        irte_handle: handle,
        subhandle: 0,
        vector_count: 1,
        kind: 1,
        flags: 0,
    }
}

pub(crate) fn program(server: &mut TestServer, caller: OwnerId, request: MsiProgramRequest) -> u32 {
    call(server, caller, Operation::ProgramMsi, request.as_bytes())
}

#[test]
fn the_owner_gets_an_entry_programmed_masked_then_enabled() {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::NVME);
    grant(&mut server, 0x1234, OWNER, q35::NVME);
    grant(&mut server, 0x22, OWNER, q35::NVME);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 7, 0x1234)),
        0
    );
    let expected = 0xfee0_0000 | (0x1234 << 5) | (1 << 4);
    assert_eq!(
        irte_index(
            MsiMessage {
                address: expected,
                data: 0
            },
            0
        ),
        0x1234
    );
    let writes: Vec<(u16, MsixEntryRegister, u32)> = server
        .tables
        .table
        .writes
        .iter()
        .map(|(bdf, entry, register, value)| {
            assert_eq!(*bdf, q35::NVME);
            (*entry, *register, *value)
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            (7, MsixEntryRegister::VectorControl, 1),
            (7, MsixEntryRegister::AddressLow, expected as u32),
            (7, MsixEntryRegister::AddressHigh, 0),
            (7, MsixEntryRegister::Data, 0),
            (7, MsixEntryRegister::VectorControl, 0),
        ]
    );
    // The table was mapped from the window at the claim (BAR0 0xfe60_0000 + 0x2000, in the
    // first slot) and is used as it is.
    assert!(server.tables.mapped.is_empty());
    assert_eq!(
        server.tables.slots.mapped(q35::NVME).unwrap().address.0,
        0xfe60_2000
    );
    assert_eq!(
        server
            .tables
            .slots
            .register_address(q35::NVME, 7, MsixEntryRegister::Data),
        Some(MSIX_VIRTUAL + 7 * 16 + 8)
    );
    let capability = server
        .inventory
        .get(q35::NVME)
        .unwrap()
        .capabilities
        .msix
        .unwrap();
    let control = server
        .config
        .read16(q35::NVME, capability.offset + msix::CONTROL);
    assert_eq!(control & (msix::ENABLE | msix::FUNCTION_MASK), msix::ENABLE);
    let command = Command::from_bits_retain(server.config.read16(q35::NVME, header::COMMAND));
    assert!(command.contains(Command::INTX_DISABLE));
    // A second entry reuses the mapping.
    let mut second = msix_request(q35::NVME, 64, 0x20);
    second.flags = 1;
    second.subhandle = 2;
    assert_eq!(program(&mut server, OWNER, second), 0);
    assert!(server.tables.mapped.is_empty());
    assert_eq!(
        server
            .tables
            .read_entry(q35::NVME, 64, MsixEntryRegister::Data),
        2
    );
}

#[test]
fn refusals_change_nothing() {
    let mut server = server(0xfe00_0000);
    claim(&mut server, q35::NVME);
    claim(&mut server, q35::EDU);
    grant(&mut server, 1, OWNER, q35::NVME);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    server.config.clear_log();
    let checks = [
        (OTHER, msix_request(q35::NVME, 0, 1), PciError::NotOwner),
        (
            OWNER,
            msix_request(q35::NVME, 65, 1),
            PciError::VectorOutOfRange,
        ),
        (
            OWNER,
            msix_request(q35::EDU, 0, 1),
            PciError::NoMsixCapability,
        ),
        (OWNER, msix_request(q35::AHCI, 0, 1), PciError::NotOwner),
    ];
    for (caller, request, error) in checks {
        assert_eq!(
            program(&mut server, caller, request),
            error.code(),
            "{request:?}"
        );
    }
    let mut malformed = msix_request(q35::NVME, 0, 1);
    malformed.vector_count = 2;
    assert_eq!(
        program(&mut server, OWNER, malformed),
        PciError::MalformedRequest.code()
    );
    assert!(server.config.writes().is_empty());
    assert!(server.tables.table.writes.is_empty());
    // Memory decoding off: mapped, but nothing written to the device.
    assert_eq!(set_command(&mut server, 0x0004), 0);
    server.config.clear_log();
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 0, 1)),
        PciError::MemoryDecodingDisabled.code()
    );
    assert!(server.config.writes().is_empty());
    assert!(server.tables.table.writes.is_empty());
}

#[test]
fn a_table_outside_the_device_windows_is_unavailable() {
    let mut server = server(0x8000_0000);
    claim(&mut server, q35::NVME);
    grant(&mut server, 1, OWNER, q35::NVME);
    assert_eq!(set_command(&mut server, 0x0006), 0);
    server.config.clear_log();
    assert_eq!(
        program(&mut server, OWNER, msix_request(q35::NVME, 0, 1)),
        PciError::MsixTableUnavailable.code()
    );
    assert!(server.tables.mapped.is_empty());
    assert!(server.config.writes().is_empty());
}

#[test]
fn slots_are_page_granular_carry_the_pba_and_are_reused_after_a_release() {
    let windows = {
        let mut list = heapless::Vec::new();
        list.push(DeviceWindow {
            selector: Selector(7),
            base: 0xfe00_0000,
            size: 0x100_0000,
        })
        .unwrap();
        DeviceWindows::new(list)
    };
    let location = |bdf, address, entries: u16| MsixTableLocation {
        bdf,
        bar_index: 0,
        address: pci_core::HostPhys(address),
        bytes: u64::from(entries) * 16,
        entries,
    };
    let mut slots = TableSlots::default();
    let first = location(q35::NVME, 0xfe60_2f80, 16);
    let pba = MsixPbaLocation {
        bar_index: 0,
        address: pci_core::HostPhys(0xfe60_3ff8),
        bytes: 16,
    };
    let placement = slots.place(&first, Some(&pba), &windows).unwrap();
    assert_eq!(placement.slot, 0);
    assert_eq!(placement.table.window, Selector(7));
    assert_eq!(
        (placement.table.offset, placement.table.size),
        (0x60_2000, 0x2000)
    );
    assert_eq!(placement.entry0, MSIX_VIRTUAL + 0xf80);
    let (pba_run, pba_first, pba_bytes) = placement.pba.unwrap();
    assert_eq!(
        (pba_run.offset, pba_run.size),
        (0x60_3000, 0x2000),
        "straddles two pages"
    );
    assert_eq!(pba_run.address, MSIX_VIRTUAL + PBA_SLOT_OFFSET);
    assert_eq!(
        (pba_first, pba_bytes),
        (MSIX_VIRTUAL + PBA_SLOT_OFFSET + 0xff8, 16)
    );
    assert!(slots.record(&first, &placement));
    assert!(slots.is_mapped(&first));
    assert!(
        !slots.record(&first, &placement),
        "one mapping per function"
    );
    assert_eq!(
        slots.register_address(q35::NVME, 15, MsixEntryRegister::VectorControl),
        Some(MSIX_VIRTUAL + 0xf80 + 15 * 16 + 12)
    );
    assert_eq!(
        slots.register_address(q35::NVME, 16, MsixEntryRegister::Data),
        None
    );
    assert_eq!(slots.pba_address(q35::NVME, 3), Some(pba_first + 12));
    assert_eq!(slots.pba_address(q35::NVME, 4), None);
    assert_eq!(
        slots.register_address(q35::EDU, 0, MsixEntryRegister::Data),
        None
    );
    let second = location(q35::EDU, 0xfe70_0000, 2048);
    let placement = slots.place(&second, None, &windows).unwrap();
    assert_eq!(placement.table.address, MSIX_VIRTUAL + SLOT_BYTES);
    assert_eq!(placement.table.size, 0x8000);
    assert!(slots.record(&second, &placement));
    // Released: forgotten, its slot is the next one used, nothing answers for it.
    let forgotten = slots.forget(q35::NVME).unwrap();
    assert_eq!(forgotten.slot, 0);
    assert!(slots.forget(q35::NVME).is_none());
    assert_eq!(
        slots.register_address(q35::NVME, 0, MsixEntryRegister::Data),
        None
    );
    assert_eq!(slots.pba_address(q35::NVME, 0), None);
    let again = slots.place(&first, None, &windows).unwrap();
    assert_eq!(again.slot, 0);
    // Outside every window, or wrapping: refused.
    let outside = location(q35::EDU, 0xff00_0000, 1);
    assert_eq!(
        slots.place(&outside, None, &windows),
        Err(PciError::MsixTableUnavailable)
    );
    let wrapping = location(q35::EDU, u64::MAX - 8, 1);
    assert_eq!(
        slots.place(&wrapping, None, &windows),
        Err(PciError::MsixTableUnavailable)
    );
    let far_pba = MsixPbaLocation {
        address: pci_core::HostPhys(0xff00_0000),
        ..pba
    };
    assert_eq!(
        slots.place(&first, Some(&far_pba), &windows),
        Err(PciError::MsixTableUnavailable)
    );
}
