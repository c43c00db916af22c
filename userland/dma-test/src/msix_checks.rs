//! The four MSI-X checks on the e1000e (`userland/systems/msix.toml`), run by the driver after
//! the set-up. The table and the Pending Bit Array are read through the pci-server
//! (`MsixRead`): their pages are never handed to an owner, so the table changes only through
//! `ProgramMsi` (PCIe Base spec 6.0 section 7.7.2).
//!
//! 1. the table's BAR is handed out only in parts that leave out the table and PBA pages; an
//!    IRTE for the driver's line is programmed into entry [`MSIX_ENTRY`]; the entry reads back
//!    as the iommu-server's message, unmasked; config space says MSI-X on, Function Mask off,
//!    MSI off, INTx disabled; every other entry is masked; the pending bits are readable;
//! 2. the NIC raises cause RXQ0, IVAR routes it to the entry, the message arrives on the line;
//! 3. refusals that change nothing: an entry beyond the table (`VectorOutOfRange`), an IRTE
//!    handle nobody allocated and one the driver allocated but never programmed
//!    (`IrteNotOwned`);
//! 4. release and claim again: the old entry reads back masked and cleared, a different entry
//!    ([`SECOND_ENTRY`]) is programmed with a new IRTE, and the interrupt arrives through it.

use pci_api::{
    BarReply, BarRequest, ClaimRequest, ConfigReadReply, FunctionReply, FunctionRequest,
    MsixReadRequest, PciError, ReleaseRequest,
};
use sluice_rt::abi::syscall::Selector;
use sluice_rt::sys;
use zerocopy::IntoBytes;

use crate::clients::{reply, Failure};
use crate::driver::{
    config_read, decode_and_master, irte_for_line, map_bar, Driver, COMMAND_OFFSET, DEVICE_TICKS,
    MSI_INTERRUPT, MSI_NOTIFICATION,
};
use crate::e1000e::E1000e;
use crate::edu::Edu;
use crate::msix::{
    entry_matches, find_capability, state_matches, Entry, TableInfo, CAPABILITY_MSI,
    CAPABILITY_MSIX, ENTRY_MASKED, MSIX_ENABLE,
};

/// The MSI-X entry the first checks program (not entry 0, so the entry offset matters).
pub const MSIX_ENTRY: u16 = 2;
/// The entry programmed after the device was released and claimed again.
pub const SECOND_ENTRY: u16 = 4;
/// A handle far above what this one-driver system allocates: nobody's.
const NOBODYS_HANDLE_OFFSET: u16 = 100;
/// Where BAR 0 is mapped again after the re-claim (the first mapping went with the release).
const BAR_AGAIN: Selector = Selector(24);
const BAR_AGAIN_VIRTUAL: u64 = 0x12_2000_0000;

/// An MSI-X entry the pci-server programmed (check 1), for the later checks.
#[derive(Clone, Copy)]
pub struct Programmed {
    pub table: TableInfo,
    /// Offset of the MSI-X capability in config space.
    pub capability: u16,
    pub handle: u16,
    pub address: u64,
    pub data: u32,
}

/// Asks the pci-server to program MSI-X entry `entry` with IRTE `handle`.
fn program_msix(driver: &mut Driver, entry: u16, handle: u16) -> Result<(), Failure> {
    let request = pci_api::MsiProgramRequest {
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

/// One DWORD of the table (`structure` 0) or PBA (1), read through the pci-server.
fn msix_read(driver: &mut Driver, structure: u8, offset: u32) -> Result<u32, Failure> {
    let request = MsixReadRequest {
        bdf: driver.device,
        structure,
        reserved: 0,
        offset,
    };
    let (body, _) = driver
        .servers
        .pci(pci_api::Operation::MsixRead, request.as_bytes())?;
    let value: ConfigReadReply = reply(body.as_slice())?;
    Ok(value.value)
}

/// Entry `entry` of the table, read through the pci-server.
fn read_entry(driver: &mut Driver, entry: u16) -> Option<Entry> {
    let base = u32::from(entry) * 16;
    Some(Entry {
        address_low: msix_read(driver, 0, base).ok()?,
        address_high: msix_read(driver, 0, base + 4).ok()?,
        data: msix_read(driver, 0, base + 8).ok()?,
        vector_control: msix_read(driver, 0, base + 12).ok()?,
    })
}

/// Asks for part 0 of the table's BAR and checks it covers neither the table nor the PBA;
/// returns (parts, part offset, part size). The capability is dropped again.
fn table_bar_part(
    driver: &mut Driver,
    table: &TableInfo,
    pba_register: u32,
) -> Result<(u32, u64, u64), &'static str> {
    let request = BarRequest {
        bdf: driver.device,
        index: table.bir,
        part: 0,
    };
    let (body, received) = match driver
        .servers
        .pci(pci_api::Operation::BarMemory, request.as_bytes())
    {
        Ok(answer) => answer,
        Err(Failure::Pci(code)) if code == PciError::BarPartUnavailable.code() => {
            return Ok((0, 0, 0))
        }
        Err(failure) => {
            sluice_rt::log!("dma-test: BAR{} part 0: {failure}", table.bir);
            return Err("the table's BAR was refused for another reason");
        }
    };
    if let Some(inbox) = received {
        let _ = sys::delete(inbox);
    }
    let bar: BarReply = reply(body.as_slice()).map_err(|_| "bad BAR reply")?;
    let part_end = bar
        .part_offset
        .saturating_add(bar.capability_size.saturating_sub(bar.offset_in_capability));
    let table_start = u64::from(table.offset);
    let table_end = table_start + u64::from(table.entries) * 16;
    if bar.part_offset < table_end && table_start < part_end {
        sluice_rt::log!(
            "dma-test: BAR{} part 0 covers {:#x}..{part_end:#x}, the table lies at \
             {table_start:#x}..{table_end:#x}",
            table.bir,
            bar.part_offset
        );
        return Err("the owner was handed the MSI-X table's page");
    }
    // PBA Offset/BIR (PCIe 6.0 section 7.7.2.3): one bit per entry, whole QWORDs.
    let pba_start = u64::from(pba_register & !0x7);
    let pba_end = pba_start + u64::from(table.entries).div_ceil(64) * 8;
    let same_bar = (pba_register & 0x7) as u8 == table.bir;
    if same_bar && bar.part_offset < pba_end && pba_start < part_end {
        sluice_rt::log!(
            "dma-test: BAR{} part 0 covers {:#x}..{part_end:#x}, the PBA lies at \
             {pba_start:#x}..{pba_end:#x}",
            table.bir,
            bar.part_offset
        );
        return Err("the owner was handed the PBA's page");
    }
    Ok((
        bar.parts,
        bar.part_offset,
        part_end.saturating_sub(bar.part_offset),
    ))
}

/// Check 1: see the module documentation.
pub fn check_msix_programmed(driver: &mut Driver) -> Result<(), &'static str> {
    let device = driver.device;
    let byte = |driver: &mut Driver, offset| {
        config_read(&mut driver.servers, device, offset, 1)
            .ok()
            .and_then(|value| u8::try_from(value).ok())
    };
    let capability = find_capability(|offset| byte(driver, offset), CAPABILITY_MSIX)
        .ok_or("no MSI-X capability in the capability list")?;
    let msi = find_capability(|offset| byte(driver, offset), CAPABILITY_MSI);
    let control = config_read(&mut driver.servers, device, capability + 2, 2)
        .map_err(|_| "MSI-X Message Control unreadable")?;
    let table_register = config_read(&mut driver.servers, device, capability + 4, 4)
        .map_err(|_| "MSI-X Table Offset/BIR unreadable")?;
    let table = TableInfo::decode(control as u16, table_register);
    if table.entry_offset(SECOND_ENTRY.max(MSIX_ENTRY)).is_none() {
        sluice_rt::log!(
            "dma-test: {device}'s MSI-X table has {} entries, entries {MSIX_ENTRY} and \
             {SECOND_ENTRY} are needed",
            table.entries
        );
        return Err("the MSI-X table is too small");
    }
    let pba_register = config_read(&mut driver.servers, device, capability + 8, 4)
        .map_err(|_| "MSI-X PBA Offset/BIR unreadable")?;
    let (parts, part_offset, part_size) = table_bar_part(driver, &table, pba_register)?;
    let (handle, message) = irte_for_line(driver)?;
    let address = u64::from(message.address_high) << 32 | u64::from(message.address_low);
    program_msix(driver, MSIX_ENTRY, handle).map_err(|failure| {
        sluice_rt::log!("dma-test: programming MSI-X entry {MSIX_ENTRY}: {failure}");
        "the MSI-X entry was refused"
    })?;
    let entry = read_entry(driver, MSIX_ENTRY).ok_or("the entry is unreadable")?;
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
    for other in (0..table.entries).filter(|&other| other != MSIX_ENTRY) {
        let found = read_entry(driver, other).ok_or("an entry is unreadable")?;
        if found.vector_control & ENTRY_MASKED == 0 {
            sluice_rt::log!("dma-test: MSI-X entry {other} is unmasked: {found}");
            return Err("an entry nobody programmed is unmasked");
        }
    }
    let pending = msix_read(driver, 1, 0).map_err(|failure| {
        sluice_rt::log!("dma-test: reading the pending bits: {failure}");
        "the pending bits are unreadable"
    })?;
    driver.msix = Some(Programmed {
        table,
        capability,
        handle,
        address,
        data: message.data,
    });
    sluice_rt::log!(
        "dma-test: check 1 passed: MSI-X entry {MSIX_ENTRY} of {} (BAR{}+{:#x}) reads back \
         address {address:#x} data {:#x} unmasked, the message of IRTE {handle}; MSI-X control \
         {control:#06x} (enabled, function unmasked), MSI off, command {command:#06x} (INTx \
         disabled); the other {} entries stay masked",
        table.entries,
        table.bir,
        table.entry_offset(MSIX_ENTRY).unwrap_or(0),
        message.data,
        table.entries - 1
    );
    sluice_rt::log!(
        "dma-test: table and pending bits read through the pci-server (PBA dword 0 = \
         {pending:#x}); BAR{} comes in {parts} part(s) without the table and PBA pages (part 0: \
         {part_offset:#x}+{part_size:#x})",
        table.bir
    );
    Ok(())
}

/// Check 2: the NIC raises cause RXQ0 (ICS), IVAR routes it to `entry`, and the MSI-X message
/// arrives on the driver's line through the IRTE.
fn interrupt_through(driver: &mut Driver, entry: u16) -> Result<(), &'static str> {
    let nic = E1000e {
        registers: driver.edu.registers,
    };
    nic.quiesce();
    let _ = sys::wait(MSI_NOTIFICATION, 0);
    if !nic.route_rxq0(entry) {
        return Err("the NIC cannot route to that entry");
    }
    nic.raise_rxq0();
    let arrived = sys::wait(MSI_NOTIFICATION, DEVICE_TICKS);
    let causes = nic.causes();
    nic.quiesce();
    let _ = sys::interrupt_acknowledge(MSI_INTERRUPT);
    let Ok(bits) = arrived else {
        let control = read_entry(driver, entry).map_or(u32::MAX, |found| found.vector_control);
        sluice_rt::log!("dma-test: no MSI-X interrupt: ICR {causes:#x}, entry {entry}: {control}");
        return Err("no interrupt arrived");
    };
    if bits & 1 == 0 {
        return Err("the notification was signalled without the line's bit");
    }
    Ok(())
}

/// Check 2: see the module documentation.
pub fn check_msix_interrupt(driver: &mut Driver) -> Result<(), &'static str> {
    let programmed = driver
        .msix
        .ok_or("no MSI-X entry was programmed (check 1)")?;
    interrupt_through(driver, MSIX_ENTRY)?;
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

/// Asks for `entry` with `handle` and expects `error`; the programmed entry must not change.
fn refused(
    driver: &mut Driver,
    entry: u16,
    handle: u16,
    error: PciError,
) -> Result<(), &'static str> {
    let before = read_entry(driver, MSIX_ENTRY).ok_or("the entry is unreadable")?;
    match program_msix(driver, entry, handle) {
        Ok(()) => {
            sluice_rt::log!("dma-test: MSI-X entry {entry} with IRTE {handle} was accepted");
            return Err("a request that must be refused was accepted");
        }
        Err(Failure::Pci(code)) if code == error.code() => {}
        Err(failure) => {
            sluice_rt::log!("dma-test: MSI-X entry {entry} with IRTE {handle}: {failure}");
            return Err("a request was refused for another reason");
        }
    }
    let after = read_entry(driver, MSIX_ENTRY).ok_or("the entry is unreadable")?;
    if after != before {
        sluice_rt::log!("dma-test: MSI-X entry {MSIX_ENTRY} was {before}, is {after}");
        return Err("the refused request changed the table");
    }
    Ok(())
}

/// Check 3: see the module documentation.
pub fn check_msix_refusals(driver: &mut Driver) -> Result<(), &'static str> {
    let programmed = driver
        .msix
        .ok_or("no MSI-X entry was programmed (check 1)")?;
    let beyond = programmed.table.entries;
    refused(
        driver,
        beyond,
        programmed.handle,
        PciError::VectorOutOfRange,
    )?;
    let nobodys = programmed.handle.saturating_add(NOBODYS_HANDLE_OFFSET);
    refused(driver, MSIX_ENTRY, nobodys, PciError::IrteNotOwned)?;
    let body = driver
        .servers
        .iommu(iommu_api::Operation::AllocateIrte, &[0; 4], None)
        .map_err(|_| "no IRTE")?;
    let unprogrammed = reply::<iommu_api::IrteReply>(body.as_slice())
        .map_err(|_| "no IRTE")?
        .handle;
    let result = refused(driver, MSIX_ENTRY, unprogrammed, PciError::IrteNotOwned);
    let free = iommu_api::IrteRequest {
        handle: unprogrammed,
        reserved: 0,
    };
    let _ = driver
        .servers
        .iommu(iommu_api::Operation::FreeIrte, free.as_bytes(), None);
    result?;
    sluice_rt::log!(
        "dma-test: check 3 passed: MSI-X entry {beyond} of a {beyond}-entry table was refused \
         (vector out of range); IRTE {nobodys} (allocated by nobody) and IRTE {unprogrammed} \
         (allocated, never programmed) were refused (IRTE not the owner's for this device); \
         entry {MSIX_ENTRY} is unchanged"
    );
    Ok(())
}

/// Releases the device and claims it again into the same domain; maps BAR 0 anew and turns
/// decoding and bus mastering back on.
fn release_and_claim(driver: &mut Driver) -> Result<(), Failure> {
    use pci_api::Operation as Pci;
    let device = driver.device;
    let question = FunctionRequest {
        bdf: device,
        reserved: 0,
        index: 0,
    };
    let (body, _) = driver.servers.pci(Pci::Function, question.as_bytes())?;
    let function: FunctionReply = reply(body.as_slice())?;
    let release = ReleaseRequest {
        bdf: device,
        reserved: 0,
        owner: function.owner,
    };
    driver.servers.pci(Pci::Release, release.as_bytes())?;
    let claim = ClaimRequest {
        bdf: device,
        reserved: 0,
        domain: driver.domain,
    };
    driver.servers.pci(Pci::Claim, claim.as_bytes())?;
    let request = BarRequest {
        bdf: device,
        index: 0,
        part: 0,
    };
    let (body, received) = driver.servers.pci(Pci::BarMemory, request.as_bytes())?;
    let bar: BarReply = reply(body.as_slice())?;
    let inbox = received.ok_or(Failure::NoCapability)?;
    driver.edu = Edu {
        registers: map_bar(inbox, BAR_AGAIN, BAR_AGAIN_VIRTUAL, &bar)?,
    };
    let command = config_read(&mut driver.servers, device, COMMAND_OFFSET, 2)?;
    decode_and_master(&mut driver.servers, device, command)
}

/// Check 4: see the module documentation.
pub fn check_msix_reclaim(driver: &mut Driver) -> Result<(), &'static str> {
    let programmed = driver
        .msix
        .ok_or("no MSI-X entry was programmed (check 1)")?;
    release_and_claim(driver).map_err(|failure| {
        sluice_rt::log!("dma-test: release and claim again: {failure}");
        "the device could not be released and claimed again"
    })?;
    let old = read_entry(driver, MSIX_ENTRY).ok_or("the old entry is unreadable")?;
    if old.vector_control & ENTRY_MASKED == 0 || old.address_low != 0 || old.data != 0 {
        sluice_rt::log!("dma-test: after the re-claim MSI-X entry {MSIX_ENTRY} is {old}");
        return Err("the old entry survived the re-claim");
    }
    let control = config_read(
        &mut driver.servers,
        driver.device,
        programmed.capability + 2,
        2,
    )
    .map_err(|_| "MSI-X Message Control unreadable")?;
    if control as u16 & MSIX_ENABLE != 0 {
        sluice_rt::log!("dma-test: after the re-claim MSI-X control is {control:#06x}");
        return Err("MSI-X stayed enabled across the re-claim");
    }
    let (handle, message) = irte_for_line(driver)?;
    program_msix(driver, SECOND_ENTRY, handle).map_err(|failure| {
        sluice_rt::log!("dma-test: programming MSI-X entry {SECOND_ENTRY}: {failure}");
        "the MSI-X entry was refused after the re-claim"
    })?;
    let address = u64::from(message.address_high) << 32 | u64::from(message.address_low);
    let entry = read_entry(driver, SECOND_ENTRY).ok_or("the entry is unreadable")?;
    if let Err(mismatch) = entry_matches(&entry, address, message.data) {
        sluice_rt::log!("dma-test: MSI-X entry {SECOND_ENTRY} reads back {entry}: {mismatch}");
        return Err("the new entry does not carry the IRTE's message");
    }
    interrupt_through(driver, SECOND_ENTRY)?;
    sluice_rt::log!(
        "dma-test: check 4 passed: released and claimed again, entry {MSIX_ENTRY} reads back \
         masked and cleared ({old}), MSI-X off; entry {SECOND_ENTRY} programmed with IRTE \
         {handle} ({address:#x}), the RXQ0 interrupt arrived on line {} through it",
        driver.line
    );
    Ok(())
}
