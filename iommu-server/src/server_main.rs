//! The server's start-up, fault watcher and request loop on the Sluice kernel (see the crate
//! documentation for the steps).

use iommu_api::IommuError;
use iommu_core::dmar::Dmar;
use sluice_rt::abi::boot::selector::{SELF_DOMAIN, SELF_THREAD};
use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::{MemoryRights, Selector, WAIT_FOREVER};
use sluice_rt::message::Message;
use sluice_rt::mmio::Window;
use sluice_rt::protocol;
use sluice_rt::start::Startup;
use sluice_rt::types::ThreadStart;
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::wire;

use iommu_core::units::MAX_UNITS;

use crate::bringup::{bring_up, scope, UnitRegisters};
use crate::hardware::{MmioRegisters, PollClock, PoolFrames, PoolMemory};
use crate::kernel::KernelCapabilities;
use crate::policy::{Policy, LINE_VECTOR_BASE};
use crate::service::{Iommu, Reply};

const DRHD_PAGE: Selector = Selector(3);
/// The register pages of the DMAR's units 1, 2, ... (DMAR order), when init delegates them.
const FURTHER_DRHD_PAGES: Selector = Selector(9);
/// Selectors 9..=15 (the watcher's objects start at 20).
const FURTHER_DRHD_PAGE_COUNT: u32 = MAX_UNITS as u32 - 1;
const DMAR_TABLE: Selector = Selector(4);
const TABLE_MEMORY: Selector = Selector(5);
const FAULT_NOTIFICATION: Selector = Selector(6);
const FAULT_INTERRUPT: Selector = Selector(7);
const WATCHER_MEMORY: Selector = Selector(8);
/// The watcher thread and its portal to this thread (created at start).
const WATCHER_THREAD: Selector = Selector(20);
const WATCHER_PORTAL: Selector = Selector(21);
/// The portal id the watcher's calls arrive with (no client has it).
const WATCHER_ID: u64 = 0xfa17;

const REGISTERS_VIRTUAL: u64 = 0x10_0000_0000;
const DMAR_VIRTUAL: u64 = 0x11_0000_0000;
const POOL_VIRTUAL: u64 = 0x12_0000_0000;
const WATCHER_VIRTUAL: u64 = 0x13_0000_0000;
const WATCHER_STACK: u64 = 16 * 1024;
const PAGE: u64 = 4096;
/// The table pool init gives (`init::programs::IOMMU_TABLE_MEMORY`).
const POOL_SIZE: u64 = 256 * 1024;
/// Priority of the server threads (init's `PROGRAM_PRIORITY`).
const PRIORITY: u8 = 10;

type Unit = Iommu<MmioRegisters, PollClock, PoolMemory, PoolFrames>;

sluice_rt::entry!(run);

fn run(startup: Startup) {
    sluice_rt::log!("iommu-server: started");
    let Some(mut buffer) = MessageBuffer::current() else {
        sluice_rt::log!("iommu-server: no UTCB recorded at entry");
        return;
    };
    // SAFETY: init starts the iommu-server with an argument block (sluice_rt::start).
    let arguments = unsafe { startup.arguments() }.unwrap_or(sluice_rt::start::Arguments::none());
    let word = |index| arguments.get(index).unwrap_or(0);
    let policy = Policy {
        device_manager: word(1),
        first_owner: word(2),
        first_owner_line: u32::try_from(word(3)).unwrap_or(u32::MAX),
        insecure_no_interrupt_remapping: word(4) != 0,
        ioapic_pins: u32::try_from(word(0)).unwrap_or(0),
    };
    let unit = match start(word(0), word(5), word(6), policy) {
        Ok(unit) => Some(unit),
        Err(reason) => {
            sluice_rt::log!("iommu-server: no DMA remapping: {reason}");
            None
        }
    };
    if let Err(error) = protocol::ready(&mut buffer, Selector(PARENT_PORTAL)) {
        sluice_rt::log!("iommu-server: telling the parent ready failed: {error}");
    }
    serve(&mut buffer, unit)
}

/// Maps `size` bytes of `memory` at `address` of this domain.
fn map_own(memory: Selector, address: u64, size: u64, write: bool) -> Result<Window, &'static str> {
    let mut rights = MemoryRights::READ;
    if write {
        rights |= MemoryRights::WRITE;
    }
    sluice_rt::sys::map(memory, Selector(SELF_DOMAIN), address, 0, size, rights)
        .map_err(|_| "a mapping was refused")?;
    // SAFETY: the range was just mapped with the rights the window's users need and stays
    // mapped for the program's life; nothing else refers to it.
    Ok(unsafe { Window::new(address, size) })
}

/// The selector of unit `index`'s register page: 3 for the DMAR's first DRHD (the unit the
/// kernel reports), [`FURTHER_DRHD_PAGES`] + n - 1 for unit n.
fn drhd_page(index: usize) -> Option<Selector> {
    match index {
        0 => Some(DRHD_PAGE),
        _ => u32::try_from(index - 1)
            .ok()
            .filter(|offset| *offset < FURTHER_DRHD_PAGE_COUNT)
            .map(|offset| Selector(FURTHER_DRHD_PAGES.0 + offset)),
    }
}

fn start(
    fault_line: u64,
    dmar_offset: u64,
    dmar_length: u64,
    policy: Policy,
) -> Result<Unit, &'static str> {
    let mut first_page = Some(
        map_own(DRHD_PAGE, REGISTERS_VIRTUAL, PAGE, true)
            .map_err(|_| "the machine has no VT-d unit (no DRHD register page delegated)")?,
    );
    let table_bytes = (dmar_offset + dmar_length).div_ceil(PAGE) * PAGE;
    let dmar_window = map_own(DMAR_TABLE, DMAR_VIRTUAL, table_bytes.max(PAGE), false)
        .map_err(|_| "the ACPI DMAR table was not delegated")?;
    let length = usize::try_from(dmar_length).map_err(|_| "DMAR length")?;
    if dmar_offset + dmar_length > dmar_window.size() {
        return Err("the DMAR table does not fit its capability");
    }
    // SAFETY: `dmar_length` bytes from `dmar_offset` lie inside the read-only mapping made
    // above, which stays for the program's life and is never written.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts((DMAR_VIRTUAL + dmar_offset) as *const u8, length) };
    let dmar = Dmar::parse(bytes).map_err(|_| "the ACPI DMAR table is malformed")?;
    let scope = scope(&dmar).map_err(|error| {
        sluice_rt::log!("iommu-server: the DMAR's units cannot be used: {error}");
        "the DMAR's units are inconsistent"
    })?;
    sluice_rt::log!(
        "iommu-server: DMAR: host address width {}, INTR_REMAP {}, {} unit(s)",
        dmar.host_address_width,
        scope.interrupt_remapping,
        scope.topology.units().len(),
    );
    let ioapics = crate::ioapic_pins::ioapic_count(&scope.topology);
    if ioapics > 1 {
        sluice_rt::log!(
            "iommu-server: the DMAR lists {ioapics} IOAPICs: which one has a GSI needs the MADT's \
             GSI bases, so IOAPIC pins are not remapped (AllocateIoapicIrte refuses: \
             AmbiguousIoapic)"
        );
    }
    let mut given: heapless::Vec<UnitRegisters<MmioRegisters, PollClock>, MAX_UNITS> =
        heapless::Vec::new();
    for (index, unit) in scope.topology.units().iter().enumerate() {
        sluice_rt::log!(
            "iommu-server: unit {index} at {} segment {}: {}, {} endpoint(s), {} bridge(s), {} IOAPIC(s), {} HPET(s){}",
            unit.register_base,
            unit.segment,
            if unit.include_pci_all { "INCLUDE_PCI_ALL" } else { "listed devices" },
            unit.endpoints.len(),
            unit.bridges.len(),
            unit.ioapics.len(),
            unit.hpets.len(),
            if unit.unresolved > 0 { ", some scope paths cross bridges it cannot walk" } else { "" }
        );
        for ioapic in &unit.ioapics {
            sluice_rt::log!(
                "iommu-server: unit {index}: IOAPIC {} source id {}",
                ioapic.enumeration_id,
                ioapic.source_id
            );
        }
        let address = REGISTERS_VIRTUAL + PAGE * index as u64;
        let window = match (index, first_page.take()) {
            (0, Some(window)) => Some(Ok(window)),
            (_, taken) => {
                first_page = taken;
                drhd_page(index).map(|page| map_own(page, address, PAGE, true))
            }
        };
        match window {
            Some(Ok(window)) => {
                let registers = UnitRegisters {
                    index,
                    registers: MmioRegisters { window },
                    clock: PollClock::default(),
                };
                let _ = given.push(registers);
            }
            _ => sluice_rt::log!(
                "iommu-server: unit {index} at {} not brought up: no register page delegated for it (init found it outside device memory, or could not read the DMAR); devices it translates are refused",
                unit.register_base
            ),
        }
    }
    if given.is_empty() {
        return Err("no DRHD unit has a register page");
    }
    let pool = map_own(TABLE_MEMORY, POOL_VIRTUAL, POOL_SIZE, true)
        .map_err(|_| "no RAM for tables was delegated")?;
    let physical_base = sluice_rt::sys::memory_physical(TABLE_MEMORY, 0)
        .map_err(|_| "the kernel refused the tables' physical address")?;
    let memory = PoolMemory {
        window: pool,
        physical_base,
    };
    let frames = PoolFrames::new(physical_base, POOL_SIZE);
    let vector = u64::from(LINE_VECTOR_BASE) + fault_line;
    let vector = u8::try_from(vector).map_err(|_| "fault line out of range")?;
    let iommu =
        bring_up(given, memory, frames, scope, vector, policy).map_err(|error: IommuError| {
            sluice_rt::log!("iommu-server: bring-up failed: {error}");
            "bring-up failed"
        })?;
    let levels = iommu.manager.levels().count();
    let enabled = iommu.remapping.enabled();
    for (index, unit) in iommu.units.iter_up() {
        let config = unit.config();
        let base = iommu
            .units
            .topology()
            .units()
            .get(index)
            .map(|unit| unit.register_base.0)
            .unwrap_or(0);
        sluice_rt::log!(
            "iommu-server: unit up: CAP {:#x} ECAP {:#x}, {levels}-level tables, {} invalidation, \
             interrupt remapping {}, quarantine domain ready, translation on, faults -> line {fault_line} (vector {vector:#x}), {} table frames free; unit {index} at {base:#x}",
            config.capability.0,
            config.extended_capability.0,
            if config.queued_invalidation { "queued" } else { "register" },
            if enabled.contains(index) { "on" } else { "UNAVAILABLE" },
            iommu.frames.free()
        );
    }
    if let Err(reason) = start_watcher() {
        sluice_rt::log!(
            "iommu-server: no fault watcher ({reason}): faults are read when an owner asks"
        );
    }
    Ok(iommu)
}

/// The watcher thread: waits for the fault-event line and tells the main thread.
extern "C" fn watcher(utcb: u64, _argument: u64) -> ! {
    // SAFETY: the kernel passes this thread's own UTCB page, mapped read-write, used only here.
    let mut buffer = unsafe { MessageBuffer::from_address(utcb) };
    loop {
        match sluice_rt::sys::wait(FAULT_NOTIFICATION, WAIT_FOREVER) {
            Ok(bits) => {
                let request = protocol::Request::Fault { bits }.encode();
                let _ = buffer.call(WATCHER_PORTAL, &request);
                let _ = sluice_rt::sys::interrupt_acknowledge(FAULT_INTERRUPT);
            }
            Err(_) => sluice_rt::sys::exit(),
        }
    }
}

fn start_watcher() -> Result<(), &'static str> {
    let memory = map_own(WATCHER_MEMORY, WATCHER_VIRTUAL, WATCHER_STACK + PAGE, true)
        .map_err(|_| "no memory for its stack")?;
    let top = WATCHER_VIRTUAL + WATCHER_STACK;
    let (stack_pointer, bytes) =
        sluice_rt::thread::initial_stack(top, watcher, 0).map_err(|_| "bad stack")?;
    for (index, chunk) in bytes.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let offset = stack_pointer - WATCHER_VIRTUAL + 8 * index as u64;
        memory.write64(offset, u64::from_le_bytes(word));
    }
    let start = ThreadStart {
        instruction_pointer: sluice_rt::thread::trampoline_address(),
        stack_pointer,
        utcb: top,
        priority: PRIORITY,
        cpu: 0,
    };
    sluice_rt::sys::create_thread(Selector(SELF_DOMAIN), WATCHER_THREAD, start)
        .map_err(|_| "thread creation refused")?;
    sluice_rt::sys::create_portal(Selector(SELF_THREAD), WATCHER_PORTAL, WATCHER_ID)
        .map_err(|_| "portal creation refused")?;
    sluice_rt::sys::start_thread(WATCHER_THREAD).map_err(|_| "thread start refused")
}

fn reply_of(reply: &Reply) -> Message {
    wire::reply(reply.as_slice()).unwrap_or(Message::new(wire::API_BIT))
}

fn serve(buffer: &mut MessageBuffer, mut unit: Option<Unit>) -> ! {
    let mut kernel = KernelCapabilities::default();
    let mut reply = protocol::success(&[]);
    let mut errors_logged = 0u32;
    loop {
        // Clients delegate memory and notifications to the inbox, one per request.
        buffer.set_receive_window(sluice_rt::message::receive_window(wire::INBOX, 1));
        let (portal_id, request) = match buffer.reply_and_wait(&reply) {
            Ok(received) => received,
            Err(status) => {
                if errors_logged < 8 {
                    sluice_rt::log!("iommu-server: reply_and_wait failed: {status:?}");
                    errors_logged += 1;
                }
                reply = protocol::Refusal::Malformed.reply();
                continue;
            }
        };
        if portal_id == WATCHER_ID {
            if let Some(unit) = unit.as_mut() {
                let records = unit.sweep_faults(&mut kernel);
                sluice_rt::log!(
                    "iommu-server: fault event interrupt: {records} fault record(s) read and cleared"
                );
            }
            reply = protocol::success(&[]);
            continue;
        }
        reply = match (wire::decode(&request), unit.as_mut()) {
            (Ok((operation, bytes)), Some(unit)) => {
                if operation == iommu_api::Operation::TakeFault as u16 {
                    // Also a poll, so owners hear of faults even if the event is late.
                    unit.sweep_faults(&mut kernel);
                }
                let answer = unit.handle(&mut kernel, portal_id, operation, bytes.as_slice());
                kernel.clear_inbox();
                reply_of(&answer)
            }
            (Ok(_), None) => {
                kernel.clear_inbox();
                reply_of(&Reply::refusal(IommuError::UnsupportedHardware))
            }
            (Err(wire::WireError::NotApi), _) => {
                protocol::answer("iommu-server", portal_id, &request)
            }
            (Err(error), _) => {
                sluice_rt::log!("iommu-server: portal {portal_id}: malformed request: {error}");
                kernel.clear_inbox();
                reply_of(&Reply::refusal(IommuError::MalformedMessage))
            }
        };
    }
}
