//! The driver on the Sluice kernel: set-up through the servers, the three checks (edu: DMA,
//! MSI, isolation; e1000e: MSI-X), the report to init (see the crate documentation).

use iommu_api::{
    CreateDomainReply, DelegateMemoryReply, DelegateMemoryRequest, FaultReport, IrteReply,
    MapRequest, MsiMessageReply, ProgramIrteRequest, SubscribeFaultsRequest, TakeFaultRequest,
};
use pci_api::{
    BarReply, BarRequest, Bdf, ClaimRequest, ConfigReadReply, ConfigReadRequest,
    ConfigWriteRequest, MsiProgramRequest,
};
use sluice_rt::abi::boot::selector::SELF_DOMAIN;
use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::{MemoryRights, Selector, Status};
use sluice_rt::mmio::Window;
use sluice_rt::protocol::{self, Request};
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::{sys, wire};
use zerocopy::IntoBytes;

use crate::clients::{reply, Failure, Servers};
use crate::e1000e::E1000e;
use crate::edu::{Edu, Transfer, IDENTIFICATION_MAGIC};
use crate::msix::{
    entry_matches, find_capability, state_matches, Entry, TableInfo, CAPABILITY_MSI,
    CAPABILITY_MSIX, ENTRY_MASKED,
};
use crate::verdict::{compare, fault_matches, pattern};
use crate::{IOVA_BUFFER, IOVA_UNMAPPED};

const IOMMU_PORTAL: Selector = Selector(3);
const PCI_PORTAL: Selector = Selector(4);
const BUFFER: Selector = Selector(5);
const CANARY: Selector = Selector(6);
const MSI_NOTIFICATION: Selector = Selector(7);
const MSI_INTERRUPT: Selector = Selector(8);
const BAR: Selector = Selector(20);
const FAULT_NOTIFICATION: Selector = Selector(21);
const SLEEP: Selector = Selector(22);
const TABLE_BAR: Selector = Selector(23);

const BUFFER_VIRTUAL: u64 = 0x10_0000_0000;
const BUFFER_SIZE: u64 = 64 * 1024;
const CANARY_VIRTUAL: u64 = 0x11_0000_0000;
const BAR_VIRTUAL: u64 = 0x12_0000_0000;
/// Where the BAR holding the MSI-X table is mapped (e1000e: BAR 3).
const TABLE_VIRTUAL: u64 = 0x12_1000_0000;
/// The MSI-X entry the e1000e checks program (not entry 0, so the entry offset matters).
const MSIX_ENTRY: u16 = 2;
/// QEMU's edu device.
const EDU_ID: (u16, u16) = (0x1234, 0x11e8);
const PAGE: u64 = 4096;
/// Bytes each transfer moves.
const COUNT: usize = 64;
/// Vector of interrupt line 0 (`docs/kernel.md`, "Interrupts").
const LINE_VECTOR_BASE: u64 = 0x30;
/// Scheduler ticks to wait for the device (its DMA timer runs 100 ms of virtual time).
const DEVICE_TICKS: u64 = 400;
/// PCI command register bits (PCIe Base spec 6.0 section 7.5.1.1.3).
const COMMAND_OFFSET: u16 = 0x04;
const COMMAND_MEMORY_SPACE: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

sluice_rt::entry!(run);

/// Which device the driver drives (from its vendor and device ID).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// QEMU's edu: DMA, MSI, isolation.
    Edu,
    /// Intel 82574L (QEMU e1000e): MSI-X.
    E1000e,
}

/// An MSI-X entry the pci-server programmed (e1000e check 1), for the later checks.
#[derive(Clone, Copy)]
struct Programmed {
    table: TableInfo,
    /// The table's BAR, mapped.
    window: Window,
    handle: u16,
    address: u64,
    data: u32,
}

/// What the set-up produced.
struct Driver {
    servers: Servers,
    device: Bdf,
    line: u32,
    kind: Kind,
    /// BAR 0 (edu registers, or the e1000e's).
    edu: Edu,
    buffer: Window,
    canary: Window,
    msix: Option<Programmed>,
}

fn run(startup: Startup) {
    sluice_rt::log!("dma-test: started");
    // SAFETY: init starts dma-test with an argument block (sluice_rt::start).
    let arguments = unsafe { startup.arguments() }.unwrap_or(sluice_rt::start::Arguments::none());
    let word = |index| arguments.get(index).unwrap_or(u64::MAX);
    let guest = word(0);
    let line = u32::try_from(word(1)).unwrap_or(u32::MAX);
    let device = Bdf::from_requester_id(u16::try_from(word(2)).unwrap_or(u16::MAX));
    let Some(buffer) = MessageBuffer::current() else {
        sluice_rt::log!("dma-test: no UTCB recorded at entry");
        return;
    };
    let servers = Servers {
        buffer,
        iommu: IOMMU_PORTAL,
        pci: PCI_PORTAL,
    };
    let failed = match set_up(servers, device, line) {
        Ok(mut driver) => run_checks(&mut driver),
        Err(failure) => {
            sluice_rt::log!("dma-test: set-up for {device} failed: {failure}");
            0b111
        }
    };
    let passed = 3 - failed.count_ones();
    if failed == 0 {
        sluice_rt::log!("dma-test: all 3 checks passed");
    } else {
        sluice_rt::log!("dma-test: {passed} of 3 checks passed (failed mask {failed:#05b})");
    }
    let Some(mut parent) = MessageBuffer::current() else {
        return;
    };
    let report = Request::GuestDone {
        guest,
        status: u64::from(failed),
        exits: u64::from(passed),
    };
    if let Err(error) = protocol::request(&mut parent, Selector(PARENT_PORTAL), report, 0) {
        sluice_rt::log!("dma-test: reporting to init failed: {error}");
    }
}

fn kernel(status: Status) -> Failure {
    Failure::Call(wire::CallError::Kernel(status))
}

fn map_own(
    memory: Selector,
    address: u64,
    size: u64,
    rights: MemoryRights,
) -> Result<Window, Failure> {
    sys::map(memory, Selector(SELF_DOMAIN), address, 0, size, rights).map_err(kernel)?;
    // SAFETY: just mapped with `rights` for the program's life; nothing else refers to it.
    Ok(unsafe { Window::new(address, size) })
}

fn set_up(mut servers: Servers, device: Bdf, line: u32) -> Result<Driver, Failure> {
    use iommu_api::Operation as Iommu;
    use pci_api::Operation as Pci;
    let body = servers.iommu(Iommu::CreateDomain, &[0; 4], None)?;
    let domain: CreateDomainReply = reply(body.as_slice())?;
    let request = DelegateMemoryRequest {
        rights: 3,
        reserved: 0,
    };
    let rights = (MemoryRights::READ | MemoryRights::WRITE | MemoryRights::DMA_MAP).bits();
    let body = servers.iommu(
        Iommu::DelegateMemory,
        request.as_bytes(),
        Some((BUFFER, rights)),
    )?;
    let memory: DelegateMemoryReply = reply(body.as_slice())?;
    let map = MapRequest {
        domain: domain.domain,
        memory: memory.memory,
        offset: 0,
        iova: iommu_api::IoVirt(IOVA_BUFFER),
        size: BUFFER_SIZE,
        rights: 3,
        reserved: 0,
    };
    servers.iommu(Iommu::Map, map.as_bytes(), None)?;
    sluice_rt::log!(
        "dma-test: DMA domain {} ({}-bit IOVA), {} KiB buffer mapped at IOVA {IOVA_BUFFER:#x}",
        domain.domain,
        domain.address_width,
        memory.size / 1024
    );
    let claim = ClaimRequest {
        bdf: device,
        reserved: 0,
        domain: domain.domain,
    };
    servers.pci(Pci::Claim, claim.as_bytes())?;
    let request = BarRequest {
        bdf: device,
        index: 0,
        reserved: 0,
    };
    let (body, received) = servers.pci(Pci::BarMemory, request.as_bytes())?;
    let bar: BarReply = reply(body.as_slice())?;
    let inbox = received.ok_or(Failure::NoCapability)?;
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    sys::derive(inbox, BAR, read_write.bits()).map_err(kernel)?;
    let _ = sys::delete(inbox);
    let window = map_own(BAR, BAR_VIRTUAL, bar.capability_size, read_write)?;
    // SAFETY: the BAR lies inside the mapping just made (the pci-server says where).
    let registers = unsafe {
        Window::new(
            BAR_VIRTUAL + bar.offset_in_capability,
            bar.size.min(window.size()),
        )
    };
    let edu = Edu { registers };
    let read = ConfigReadRequest {
        bdf: device,
        offset: COMMAND_OFFSET,
        width: 2,
        reserved: [0; 3],
    };
    let (body, _) = servers.pci(Pci::ConfigRead, read.as_bytes())?;
    let command: ConfigReadReply = reply(body.as_slice())?;
    let write = ConfigWriteRequest {
        bdf: device,
        offset: COMMAND_OFFSET,
        width: 2,
        reserved: [0; 3],
        value: command.value | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER,
    };
    servers.pci(Pci::ConfigWrite, write.as_bytes())?;
    let id = config_read(&mut servers, device, 0, 4)?;
    let (vendor, device_id) = (id as u16, (id >> 16) as u16);
    let kind = if (vendor, device_id) == EDU_ID {
        Kind::Edu
    } else if (vendor, device_id) == (crate::e1000e::VENDOR_ID, crate::e1000e::DEVICE_ID) {
        Kind::E1000e
    } else {
        sluice_rt::log!(
            "dma-test: {device} is {vendor:04x}:{device_id:04x}, neither edu (1234:11e8) nor \
             e1000e (8086:10d3)"
        );
        return Err(Failure::UnknownDevice);
    };
    match kind {
        Kind::Edu => {
            let identification = edu.identification();
            if identification & 0xff != IDENTIFICATION_MAGIC {
                sluice_rt::log!("dma-test: {device} is not an edu device (id {identification:#x})");
                return Err(Failure::UnknownDevice);
            }
            sluice_rt::log!(
                "dma-test: {device} claimed: edu {}.{}, BAR0 {:#x} size {} KiB, memory decoding and bus mastering on",
                identification >> 24,
                (identification >> 16) & 0xff,
                bar.address,
                bar.size / 1024
            );
        }
        Kind::E1000e => sluice_rt::log!(
            "dma-test: {device} claimed: e1000e {vendor:04x}:{device_id:04x}, BAR0 {:#x} size {} \
             KiB, memory decoding and bus mastering on",
            bar.address,
            bar.size / 1024
        ),
    }
    sys::create_notification(FAULT_NOTIFICATION).map_err(kernel)?;
    sys::create_notification(SLEEP).map_err(kernel)?;
    let subscribe = SubscribeFaultsRequest {
        device: iommu_api::Bdf(device.requester_id()),
        reserved: 0,
    };
    servers.iommu(
        Iommu::SubscribeFaults,
        subscribe.as_bytes(),
        Some((FAULT_NOTIFICATION, 1)),
    )?;
    let buffer = map_own(BUFFER, BUFFER_VIRTUAL, BUFFER_SIZE, read_write)?;
    let canary = map_own(CANARY, CANARY_VIRTUAL, PAGE, MemoryRights::READ)?;
    Ok(Driver {
        servers,
        device,
        line,
        kind,
        edu,
        buffer,
        canary,
        msix: None,
    })
}

/// One config-space read through the pci-server's filter.
fn config_read(servers: &mut Servers, device: Bdf, offset: u16, width: u8) -> Result<u32, Failure> {
    let read = ConfigReadRequest {
        bdf: device,
        offset,
        width,
        reserved: [0; 3],
    };
    let (body, _) = servers.pci(pci_api::Operation::ConfigRead, read.as_bytes())?;
    let value: ConfigReadReply = reply(body.as_slice())?;
    Ok(value.value)
}

/// One check: passes, or says why not.
type Check = fn(&mut Driver) -> Result<(), &'static str>;

/// Runs the three checks; returns the mask of failed ones (bit n-1 = check n).
fn run_checks(driver: &mut Driver) -> u32 {
    let mut failed = 0;
    let checks: [(u32, Check); 3] = match driver.kind {
        Kind::Edu => [(1, check_own_dma), (2, check_msi), (3, check_isolation)],
        Kind::E1000e => [
            (1, check_msix_programmed),
            (2, check_msix_interrupt),
            (3, check_msix_refusal),
        ],
    };
    for (number, check) in checks {
        if let Err(reason) = check(driver) {
            sluice_rt::log!("dma-test: check {number} FAILED: {reason}");
            failed |= 1 << (number - 1);
        }
    }
    failed
}

/// Sleeps one scheduler tick.
fn sleep_tick() {
    let _ = sys::wait(SLEEP, 1);
}

fn wait_idle(edu: &Edu) -> Result<(), &'static str> {
    for _ in 0..DEVICE_TICKS {
        if !edu.busy() {
            return Ok(());
        }
        sleep_tick();
    }
    Err("the device's DMA engine did not finish")
}

fn read_bytes(window: &Window, offset: u64) -> [u8; COUNT] {
    let mut bytes = [0u8; COUNT];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = window.read8(offset + index as u64).unwrap_or(0);
    }
    bytes
}

fn check_own_dma(driver: &mut Driver) -> Result<(), &'static str> {
    let expected: [u8; COUNT] = core::array::from_fn(pattern);
    for (index, byte) in expected.iter().enumerate() {
        driver.buffer.write8(index as u64, *byte);
    }
    let inward = Transfer::into_device(IOVA_BUFFER, 0, COUNT as u64).ok_or("bad transfer")?;
    driver.edu.start(&inward);
    wait_idle(&driver.edu)?;
    let back = IOVA_BUFFER + 0x1000;
    let outward = Transfer::to_host(0, back, COUNT as u64).ok_or("bad transfer")?;
    driver.edu.start(&outward);
    wait_idle(&driver.edu)?;
    let found = read_bytes(&driver.buffer, 0x1000);
    if let Err(mismatch) = compare(&expected, &found) {
        sluice_rt::log!("dma-test: the copy read back differs: {mismatch}");
        return Err("the bytes read back differ from the pattern");
    }
    sluice_rt::log!(
        "dma-test: check 1 passed: the device copied {COUNT} bytes from IOVA {IOVA_BUFFER:#x} \
         of its own buffer into the device and back to IOVA {back:#x}, read back intact"
    );
    Ok(())
}

fn check_msi(driver: &mut Driver) -> Result<(), &'static str> {
    let (handle, message) = irte_for_line(driver)?;
    let msi = MsiProgramRequest {
        bdf: driver.device,
        vector: 0,
        irte_handle: handle,
        subhandle: 0,
        vector_count: 1,
        kind: 0,
        flags: 0,
    };
    driver
        .servers
        .pci(pci_api::Operation::ProgramMsi, msi.as_bytes())
        .map_err(|failure| {
            sluice_rt::log!("dma-test: programming MSI: {failure}");
            "the MSI was refused"
        })?;
    let _ = sys::wait(MSI_NOTIFICATION, 0);
    driver.edu.raise_interrupt(1);
    let bits = sys::wait(MSI_NOTIFICATION, DEVICE_TICKS).map_err(|_| "no interrupt arrived")?;
    driver.edu.acknowledge_interrupts();
    let _ = sys::interrupt_acknowledge(MSI_INTERRUPT);
    if bits & 1 == 0 {
        return Err("the notification was signalled without the line's bit");
    }
    sluice_rt::log!(
        "dma-test: check 2 passed: the device's MSI (address {:#x} data {:#x}, remappable \
         format) arrived on line {} through IRTE {handle}, which verifies source-id {}",
        message.address_low,
        message.data,
        driver.line,
        driver.device
    );
    Ok(())
}

/// Makes the device write to bus address `target`, then takes the fault report.
fn blocked_write(driver: &mut Driver, target: u64) -> Result<(FaultReport, bool), &'static str> {
    let _ = sys::wait(FAULT_NOTIFICATION, 0);
    let transfer = Transfer::to_host(0, target, COUNT as u64).ok_or("bad transfer")?;
    driver.edu.start(&transfer);
    wait_idle(&driver.edu)?;
    let notified = sys::wait(FAULT_NOTIFICATION, DEVICE_TICKS).is_ok();
    let request = TakeFaultRequest { reserved: 0 };
    let body = driver
        .servers
        .iommu(iommu_api::Operation::TakeFault, request.as_bytes(), None)
        .map_err(|failure| {
            sluice_rt::log!("dma-test: no fault report for the write to {target:#x}: {failure}");
            "the blocked write was not reported to the driver"
        })?;
    let report: FaultReport = reply(body.as_slice()).map_err(|_| "bad fault report")?;
    if let Err(mismatch) = fault_matches(&report, driver.device.requester_id(), target) {
        sluice_rt::log!("dma-test: the fault for {target:#x} was {mismatch}");
        return Err("the fault report names another device or page");
    }
    Ok((report, notified))
}

fn check_isolation(driver: &mut Driver) -> Result<(), &'static str> {
    let canary_address =
        sys::memory_physical(CANARY, 0).map_err(|_| "the canary's address is unknown")?;
    let mut before = [0u64; (PAGE / 8) as usize];
    for (index, word) in before.iter_mut().enumerate() {
        *word = driver.canary.read64(8 * index as u64).unwrap_or(0);
    }
    let (unmapped, first_notified) = blocked_write(driver, IOVA_UNMAPPED)?;
    let (canary, second_notified) = blocked_write(driver, canary_address)?;
    let unchanged = before
        .iter()
        .enumerate()
        .all(|(index, word)| driver.canary.read64(8 * index as u64) == Some(*word));
    if !unchanged {
        return Err("the canary page changed");
    }
    let how = if first_notified && second_notified {
        "notification + report"
    } else {
        "report (taken without a notification)"
    };
    sluice_rt::log!(
        "dma-test: check 3 passed: writes to unmapped IOVA {IOVA_UNMAPPED:#x} and to the canary \
         page at {canary_address:#x} (outside the domain) were blocked; both faults reached the \
         driver by {how} (reasons {:#04x}, {:#04x}); the canary is unchanged",
        unmapped.reason,
        canary.reason
    );
    Ok(())
}

/// An IRTE allocated at the iommu-server and programmed for the driver's line with source-id
/// verification of its device: the handle and the message the iommu-server says it takes.
fn irte_for_line(driver: &mut Driver) -> Result<(u16, MsiMessageReply), &'static str> {
    use iommu_api::Operation as Iommu;
    let body = driver
        .servers
        .iommu(Iommu::AllocateIrte, &[0; 4], None)
        .map_err(|_| "no IRTE")?;
    let handle = reply::<IrteReply>(body.as_slice())
        .map_err(|_| "no IRTE")?
        .handle;
    let vector = LINE_VECTOR_BASE + u64::from(driver.line);
    let program = ProgramIrteRequest {
        handle,
        source_id: iommu_api::Bdf(driver.device.requester_id()),
        source_validation: 1,
        vector: u8::try_from(vector).map_err(|_| "line out of range")?,
        ..Default::default()
    };
    let body = driver
        .servers
        .iommu(Iommu::ProgramIrte, program.as_bytes(), None)
        .map_err(|failure| {
            sluice_rt::log!("dma-test: programming IRTE {handle}: {failure}");
            "the IRTE was refused"
        })?;
    let message: MsiMessageReply = reply(body.as_slice()).map_err(|_| "bad IRTE reply")?;
    Ok((handle, message))
}

/// Asks the pci-server to program MSI-X entry `entry` with IRTE `handle`.
fn program_msix(driver: &mut Driver, entry: u16, handle: u16) -> Result<(), Failure> {
    let request = MsiProgramRequest {
        bdf: driver.device,
        vector: entry,
        irte_handle: handle,
        subhandle: 0,
        vector_count: 1,
        kind: 1,
        flags: 0,
    };
    driver
        .servers
        .pci(pci_api::Operation::ProgramMsi, request.as_bytes())
        .map(|_| ())
}

/// Reads entry `entry` of the table through the driver's own mapping of its BAR.
fn read_entry(programmed: &Programmed, entry: u16) -> Option<Entry> {
    let offset = programmed.table.entry_offset(entry)?;
    let window = &programmed.window;
    Some(Entry {
        address_low: window.read32(offset)?,
        address_high: window.read32(offset + 4)?,
        data: window.read32(offset + 8)?,
        vector_control: window.read32(offset + 12)?,
    })
}

/// Config byte reader for the capability walk.
fn config_byte(servers: &mut Servers, device: Bdf, offset: u16) -> Option<u8> {
    config_read(servers, device, offset, 1)
        .ok()
        .and_then(|value| u8::try_from(value).ok())
}

/// e1000e check 1: the pci-server programs MSI-X entry [`MSIX_ENTRY`] with an IRTE of the
/// driver's line; the entry reads back (through the driver's own mapping of the table's BAR)
/// as the iommu-server's message, unmasked; config space says MSI-X on, Function Mask off, MSI
/// off, INTx disabled; every other entry is still masked.
fn check_msix_programmed(driver: &mut Driver) -> Result<(), &'static str> {
    let device = driver.device;
    let capability = find_capability(
        |offset| config_byte(&mut driver.servers, device, offset),
        CAPABILITY_MSIX,
    )
    .ok_or("no MSI-X capability in the capability list")?;
    let msi = find_capability(
        |offset| config_byte(&mut driver.servers, device, offset),
        CAPABILITY_MSI,
    );
    let control = config_read(&mut driver.servers, device, capability + 2, 2)
        .map_err(|_| "MSI-X Message Control unreadable")?;
    let table_register = config_read(&mut driver.servers, device, capability + 4, 4)
        .map_err(|_| "MSI-X Table Offset/BIR unreadable")?;
    let table = TableInfo::decode(control as u16, table_register);
    if table.entry_offset(MSIX_ENTRY).is_none() {
        sluice_rt::log!(
            "dma-test: {device}'s MSI-X table has {} entries, entry {MSIX_ENTRY} is needed",
            table.entries
        );
        return Err("the MSI-X table is too small");
    }
    let request = BarRequest {
        bdf: device,
        index: table.bir,
        reserved: 0,
    };
    let (body, received) = driver
        .servers
        .pci(pci_api::Operation::BarMemory, request.as_bytes())
        .map_err(|failure| {
            sluice_rt::log!("dma-test: BAR{} (MSI-X table): {failure}", table.bir);
            "the table's BAR was refused"
        })?;
    let bar: BarReply = reply(body.as_slice()).map_err(|_| "bad BAR reply")?;
    let inbox = received.ok_or("the BAR reply carried no capability")?;
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    let derived = sys::derive(inbox, TABLE_BAR, read_write.bits());
    let _ = sys::delete(inbox);
    derived.map_err(|_| "the table's BAR capability could not be kept")?;
    let mapped = map_own(TABLE_BAR, TABLE_VIRTUAL, bar.capability_size, read_write)
        .map_err(|_| "the table's BAR could not be mapped")?;
    let visible = bar
        .size
        .min(mapped.size().saturating_sub(bar.offset_in_capability));
    let table_end = u64::from(table.offset) + u64::from(table.entries) * 16;
    if table_end > visible {
        return Err("the MSI-X table lies outside its BAR");
    }
    // SAFETY: the BAR lies inside the mapping just made (the pci-server says where), and the
    // window is cut to what is mapped.
    let window = unsafe { Window::new(TABLE_VIRTUAL + bar.offset_in_capability, visible) };
    let (handle, message) = irte_for_line(driver)?;
    let address = u64::from(message.address_high) << 32 | u64::from(message.address_low);
    let programmed = Programmed {
        table,
        window,
        handle,
        address,
        data: message.data,
    };
    program_msix(driver, MSIX_ENTRY, handle).map_err(|failure| {
        sluice_rt::log!("dma-test: programming MSI-X entry {MSIX_ENTRY}: {failure}");
        "the MSI-X entry was refused"
    })?;
    let entry = read_entry(&programmed, MSIX_ENTRY).ok_or("the entry is unreadable")?;
    if let Err(mismatch) = entry_matches(&entry, address, message.data) {
        sluice_rt::log!(
            "dma-test: MSI-X entry {MSIX_ENTRY} reads back {entry}: {mismatch} (IRTE {handle} \
             takes address {address:#x} data {:#x})",
            message.data
        );
        return Err("the entry does not carry the IRTE's message");
    }
    let control = config_read(&mut driver.servers, device, capability + 2, 2)
        .map_err(|_| "MSI-X Message Control unreadable")?;
    let msi_control = match msi {
        Some(offset) => Some(
            config_read(&mut driver.servers, device, offset + 2, 2)
                .map_err(|_| "MSI Message Control unreadable")? as u16,
        ),
        None => None,
    };
    let command = config_read(&mut driver.servers, device, COMMAND_OFFSET, 2)
        .map_err(|_| "command unreadable")?;
    if let Err(mismatch) = state_matches(control as u16, msi_control, command as u16) {
        sluice_rt::log!(
            "dma-test: after programming: {mismatch} (MSI-X control {control:#06x}, command \
             {command:#06x})"
        );
        return Err("MSI-X is not the device's only interrupt");
    }
    let others = (0..table.entries).filter(|&other| other != MSIX_ENTRY);
    for other in others.clone() {
        let found = read_entry(&programmed, other).ok_or("an entry is unreadable")?;
        if found.vector_control & ENTRY_MASKED == 0 {
            sluice_rt::log!("dma-test: MSI-X entry {other} is unmasked: {found}");
            return Err("an entry nobody programmed is unmasked");
        }
    }
    driver.msix = Some(programmed);
    sluice_rt::log!(
        "dma-test: check 1 passed: MSI-X entry {MSIX_ENTRY} of {} (BAR{}+{:#x}) reads back \
         address {address:#x} data {:#x} unmasked, the message of IRTE {handle}; MSI-X control \
         {control:#06x} (enabled, function unmasked), MSI off, command {command:#06x} (INTx \
         disabled); the other {} entries stay masked",
        table.entries,
        table.bir,
        table.entry_offset(MSIX_ENTRY).unwrap_or(0),
        message.data,
        others.count()
    );
    Ok(())
}

/// e1000e check 2: the NIC raises cause RXQ0 (ICS), IVAR routes it to the programmed entry,
/// and the MSI-X message arrives on the driver's line through the IRTE.
fn check_msix_interrupt(driver: &mut Driver) -> Result<(), &'static str> {
    let programmed = driver
        .msix
        .ok_or("no MSI-X entry was programmed (check 1)")?;
    let nic = E1000e {
        registers: driver.edu.registers,
    };
    nic.quiesce();
    let _ = sys::wait(MSI_NOTIFICATION, 0);
    if !nic.route_rxq0(MSIX_ENTRY) {
        return Err("the NIC cannot route to that entry");
    }
    nic.raise_rxq0();
    let arrived = sys::wait(MSI_NOTIFICATION, DEVICE_TICKS);
    let causes = nic.causes();
    nic.quiesce();
    let _ = sys::interrupt_acknowledge(MSI_INTERRUPT);
    let bits = arrived.map_err(|_| {
        sluice_rt::log!(
            "dma-test: no MSI-X interrupt: ICR {causes:#x}, entry {MSIX_ENTRY}: {}",
            read_entry(&programmed, MSIX_ENTRY)
                .map(|entry| entry.vector_control)
                .unwrap_or(u32::MAX)
        );
        "no interrupt arrived"
    })?;
    if bits & 1 == 0 {
        return Err("the notification was signalled without the line's bit");
    }
    sluice_rt::log!(
        "dma-test: check 2 passed: the e1000e raised cause RXQ0 (ICS), IVAR sent it to MSI-X \
         entry {MSIX_ENTRY}, and the message (address {:#x} data {:#x}) arrived on line {} \
         through IRTE {}, which verifies source-id {}",
        programmed.address,
        programmed.data,
        driver.line,
        programmed.handle,
        driver.device
    );
    Ok(())
}

/// e1000e check 3: an entry beyond the table is refused with `VectorOutOfRange`, and the
/// programmed entry is unchanged afterwards.
fn check_msix_refusal(driver: &mut Driver) -> Result<(), &'static str> {
    let programmed = driver
        .msix
        .ok_or("no MSI-X entry was programmed (check 1)")?;
    let before = read_entry(&programmed, MSIX_ENTRY).ok_or("the entry is unreadable")?;
    let beyond = programmed.table.entries;
    match program_msix(driver, beyond, programmed.handle) {
        Ok(()) => return Err("an entry beyond the table was accepted"),
        Err(Failure::Pci(code)) if code == pci_api::PciError::VectorOutOfRange as u32 => {}
        Err(failure) => {
            sluice_rt::log!("dma-test: MSI-X entry {beyond}: {failure}");
            return Err("an entry beyond the table was refused for another reason");
        }
    }
    let after = read_entry(&programmed, MSIX_ENTRY).ok_or("the entry is unreadable")?;
    if after != before {
        sluice_rt::log!("dma-test: MSI-X entry {MSIX_ENTRY} was {before}, is {after}");
        return Err("the refused request changed the table");
    }
    sluice_rt::log!(
        "dma-test: check 3 passed: MSI-X entry {beyond} of a {beyond}-entry table was refused \
         (vector out of range); entry {MSIX_ENTRY} is unchanged"
    );
    Ok(())
}
