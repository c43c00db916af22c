//! The driver on the Sluice kernel: set-up through the servers, the checks (edu: DMA, MSI,
//! isolation, INTx; e1000e: MSI-X), the report to init (see the crate documentation).

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
use crate::edu::{Edu, Transfer, IDENTIFICATION_MAGIC};
use crate::msix_checks::{
    check_msix_interrupt, check_msix_programmed, check_msix_reclaim, check_msix_refusals,
    Programmed,
};
use crate::verdict::{compare, fault_matches, pattern};
use crate::{IOVA_BUFFER, IOVA_UNMAPPED};

const IOMMU_PORTAL: Selector = Selector(3);
const PCI_PORTAL: Selector = Selector(4);
const BUFFER: Selector = Selector(5);
const CANARY: Selector = Selector(6);
pub(crate) const MSI_NOTIFICATION: Selector = Selector(7);
pub(crate) const MSI_INTERRUPT: Selector = Selector(8);
const BAR: Selector = Selector(20);
const FAULT_NOTIFICATION: Selector = Selector(21);
const SLEEP: Selector = Selector(22);

const BUFFER_VIRTUAL: u64 = 0x10_0000_0000;
const BUFFER_SIZE: u64 = 64 * 1024;
const CANARY_VIRTUAL: u64 = 0x11_0000_0000;
const BAR_VIRTUAL: u64 = 0x12_0000_0000;
/// QEMU's edu device.
const EDU_ID: (u16, u16) = (0x1234, 0x11e8);
const PAGE: u64 = 4096;
/// Bytes each transfer moves.
const COUNT: usize = 64;
/// Vector of interrupt line 0 (`docs/kernel.md`, "Interrupts").
const LINE_VECTOR_BASE: u64 = 0x30;
/// Scheduler ticks to wait for the device (its DMA timer runs 100 ms of virtual time).
pub(crate) const DEVICE_TICKS: u64 = 400;
/// PCI command register bits (PCIe Base spec 6.0 section 7.5.1.1.3).
pub(crate) const COMMAND_OFFSET: u16 = 0x04;
pub(crate) const COMMAND_MEMORY_SPACE: u32 = 1 << 1;
pub(crate) const COMMAND_BUS_MASTER: u32 = 1 << 2;

sluice_rt::entry!(run);

/// Which device the driver drives (from its vendor and device ID).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// QEMU's edu: DMA, MSI, isolation.
    Edu,
    /// Intel 82574L (QEMU e1000e): MSI-X.
    E1000e,
}

/// What the set-up produced.
pub(crate) struct Driver {
    pub(crate) servers: Servers,
    pub(crate) device: Bdf,
    pub(crate) line: u32,
    kind: Kind,
    /// The DMA domain the device is claimed into.
    pub(crate) domain: u32,
    /// BAR 0 (edu registers, or the e1000e's).
    pub(crate) edu: Edu,
    buffer: Window,
    canary: Window,
    pub(crate) msix: Option<Programmed>,
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
    let (failed, count) = match set_up(servers, device, line) {
        Ok(mut driver) => (run_checks(&mut driver), check_count(driver.kind)),
        Err(failure) => {
            sluice_rt::log!("dma-test: set-up for {device} failed: {failure}");
            (0b1111, 4)
        }
    };
    let passed = count.saturating_sub(failed.count_ones());
    if failed == 0 {
        sluice_rt::log!("dma-test: all {count} checks passed");
    } else {
        sluice_rt::log!("dma-test: {passed} of {count} checks passed (failed mask {failed:#06b})");
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

pub(crate) fn kernel(status: Status) -> Failure {
    Failure::Call(wire::CallError::Kernel(status))
}

pub(crate) fn map_own(
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
        part: 0,
    };
    let (body, received) = servers.pci(Pci::BarMemory, request.as_bytes())?;
    let bar: BarReply = reply(body.as_slice())?;
    let inbox = received.ok_or(Failure::NoCapability)?;
    let edu = Edu {
        registers: map_bar(inbox, BAR, BAR_VIRTUAL, &bar)?,
    };
    let read = ConfigReadRequest {
        bdf: device,
        offset: COMMAND_OFFSET,
        width: 2,
        reserved: [0; 3],
    };
    let (body, _) = servers.pci(Pci::ConfigRead, read.as_bytes())?;
    let command: ConfigReadReply = reply(body.as_slice())?;
    decode_and_master(&mut servers, device, command.value)?;
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
        device,
        reserved: 0,
    };
    servers.iommu(
        Iommu::SubscribeFaults,
        subscribe.as_bytes(),
        Some((FAULT_NOTIFICATION, 1)),
    )?;
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    let buffer = map_own(BUFFER, BUFFER_VIRTUAL, BUFFER_SIZE, read_write)?;
    let canary = map_own(CANARY, CANARY_VIRTUAL, PAGE, MemoryRights::READ)?;
    Ok(Driver {
        servers,
        device,
        line,
        kind,
        domain: domain.domain,
        edu,
        buffer,
        canary,
        msix: None,
    })
}

/// Keeps the BAR capability that arrived in `inbox` as `selector`, maps it at `address` and
/// returns a window on the BAR's bytes in it (the first part: `part_offset` 0).
pub(crate) fn map_bar(
    inbox: Selector,
    selector: Selector,
    address: u64,
    bar: &BarReply,
) -> Result<Window, Failure> {
    let read_write = MemoryRights::READ | MemoryRights::WRITE;
    let derived = sys::derive(inbox, selector, read_write.bits()).map_err(kernel);
    let _ = sys::delete(inbox);
    derived?;
    let window = map_own(selector, address, bar.capability_size, read_write)?;
    let visible = window
        .size()
        .saturating_sub(bar.offset_in_capability)
        .min(bar.size.saturating_sub(bar.part_offset));
    // SAFETY: the BAR's bytes from `part_offset` on lie inside the mapping just made at
    // `offset_in_capability` (the pci-server says where), and the window is cut to what is
    // mapped.
    Ok(unsafe { Window::new(address + bar.offset_in_capability, visible) })
}

/// Sets Memory Space Enable and Bus Master Enable on top of `command` (filtered write).
pub(crate) fn decode_and_master(
    servers: &mut Servers,
    device: Bdf,
    command: u32,
) -> Result<(), Failure> {
    let write = ConfigWriteRequest {
        bdf: device,
        offset: COMMAND_OFFSET,
        width: 2,
        reserved: [0; 3],
        value: command | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER,
    };
    servers
        .pci(pci_api::Operation::ConfigWrite, write.as_bytes())
        .map(|_| ())
}

/// One config-space read through the pci-server's filter.
pub(crate) fn config_read(
    servers: &mut Servers,
    device: Bdf,
    offset: u16,
    width: u8,
) -> Result<u32, Failure> {
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

/// The edu checks.
const EDU_CHECKS: [Check; 4] = [
    check_own_dma,
    check_msi,
    check_isolation,
    crate::intx_check::check_intx,
];
/// The e1000e (MSI-X) checks.
const MSIX_CHECKS: [Check; 4] = [
    check_msix_programmed,
    check_msix_interrupt,
    check_msix_refusals,
    check_msix_reclaim,
];

/// How many checks the device's kind runs.
fn check_count(kind: Kind) -> u32 {
    match kind {
        Kind::Edu => EDU_CHECKS.len() as u32,
        Kind::E1000e => MSIX_CHECKS.len() as u32,
    }
}

/// Runs the checks; returns the mask of failed ones (bit n-1 = check n).
fn run_checks(driver: &mut Driver) -> u32 {
    let mut failed = 0;
    let checks: &[Check] = match driver.kind {
        Kind::Edu => &EDU_CHECKS,
        Kind::E1000e => &MSIX_CHECKS,
    };
    for (number, check) in (1u32..).zip(checks.iter()) {
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
pub(crate) fn irte_for_line(driver: &mut Driver) -> Result<(u16, MsiMessageReply), &'static str> {
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
        source_id: driver.device,
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
