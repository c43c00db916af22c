//! The server's start-up and request loop on the Sluice kernel (see the crate documentation
//! for the steps).

use core::fmt::Write;

use pci_api::{Bdf, OwnerId, PciError};
use pci_core::listing::Listing;
use pci_core::ownership::Ownership;
use pci_core::sriov::{enable_virtual_functions, virtual_function_bdf};
use pci_core::{EcamRegion, EnumerationOptions, HostPhys, Inventory};
use sluice_rt::abi::boot::PARENT_PORTAL;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::message::Message;
use sluice_rt::protocol;
use sluice_rt::start::Startup;
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::wire;

use crate::assignments::{Assignments, Refusal};
use crate::bars::{DeviceWindow, DeviceWindows};
use crate::delay::TickDelay;
use crate::ecam::{EcamSpace, KernelMapper};
use crate::intx::{IntxRoutes, KernelLines};
use crate::iommu::IommuClient;
use crate::msix::KernelTables;
use crate::service::{KernelCarver, Server};

/// Selector of the iommu-server's portal.
const IOMMU_PORTAL: Selector = Selector(3);
/// Selector of the ECAM window.
const ECAM_WINDOW: Selector = Selector(4);
/// Selector of the system description.
const SYSDESC: Selector = Selector(5);
/// First device window (selectors 6..=15, `bars::MAX_WINDOWS`).
const FIRST_WINDOW: u32 = 6;
/// The notification the delays wait on (created at start).
const DELAY_NOTIFICATION: Selector = Selector(20);
/// The kernel's interrupt lines (INTx routing), after the last possible device window
/// (`init::programs::PCI_INTERRUPT_LINES`).
const INTERRUPT_LINES: Selector = Selector(FIRST_WINDOW + crate::bars::MAX_WINDOWS as u32);
/// Where a notification an owner sends is kept while its line is bound.
const RECEIVED_NOTIFICATION: Selector = Selector(21);
/// Selectors for bound INTx lines.
const FIRST_BOUND_LINE: u32 = 22;
/// Selectors for BAR capabilities handed out.
const FIRST_CARVED: u32 = 32;
const LAST_CARVED: u32 = 190;

sluice_rt::entry!(run);

type Pci = Server<
    EcamSpace<KernelMapper>,
    TickDelay,
    IommuClient,
    KernelCarver,
    KernelTables,
    KernelLines,
>;

fn run(startup: Startup) {
    sluice_rt::log!("pci-server: started");
    let Some(mut buffer) = MessageBuffer::current() else {
        sluice_rt::log!("pci-server: no UTCB recorded at entry");
        return;
    };
    match protocol::hello(&mut buffer, IOMMU_PORTAL) {
        Ok(version) => {
            sluice_rt::log!("pci-server: iommu-server answered hello: version {version}")
        }
        Err(error) => sluice_rt::log!("pci-server: hello to iommu-server failed: {error}"),
    }
    // SAFETY: init starts the pci-server with an argument block (sluice_rt::start).
    let arguments = match unsafe { startup.arguments() } {
        Ok(arguments) => arguments,
        Err(error) => {
            sluice_rt::log!("pci-server: bad argument block: {error}");
            sluice_rt::protocol::run_server(
                &mut buffer,
                "pci-server",
                None,
                Selector(PARENT_PORTAL),
            )
        }
    };
    let decoded = crate::arguments::decode(|index| arguments.get(index).unwrap_or(0));
    if decoded.windows_ignored > 0 {
        sluice_rt::log!(
            "pci-server: {} device window(s) beyond the {} it keeps are not used",
            decoded.windows_ignored,
            crate::bars::MAX_WINDOWS
        );
    }
    let ecam_base = decoded.ecam_base;
    let region = EcamRegion::new(HostPhys(ecam_base), 0, decoded.start_bus, decoded.end_bus);
    let region = match region {
        Ok(region) if ecam_base != 0 => region,
        _ => {
            sluice_rt::log!("pci-server: no ECAM window: no PCI functions to manage");
            sluice_rt::protocol::run_server(
                &mut buffer,
                "pci-server",
                None,
                Selector(PARENT_PORTAL),
            )
        }
    };
    let windows = device_windows(&decoded.windows);
    let mut server = start(region, windows, decoded.first_owner);
    if let Err(error) = protocol::ready(&mut buffer, Selector(PARENT_PORTAL)) {
        sluice_rt::log!("pci-server: telling the parent ready failed: {error}");
    }
    serve(&mut buffer, &mut server)
}

/// The windows init delegated, at selectors [`FIRST_WINDOW`].. in argument order.
fn device_windows(ranges: &[(u64, u64)]) -> DeviceWindows {
    let mut windows = heapless::Vec::new();
    for (selector, (base, size)) in (FIRST_WINDOW..).zip(ranges) {
        let window = DeviceWindow {
            selector: Selector(selector),
            base: *base,
            size: *size,
        };
        // Cannot fail: `ranges` holds at most MAX_WINDOWS.
        let _ = windows.push(window);
    }
    DeviceWindows::new(windows)
}

/// Enumerates, checks the description, enables assigned VFs, lists, reports the bridges to the
/// iommu-server, quarantines.
fn start(region: EcamRegion, windows: DeviceWindows, first_owner: u32) -> Pci {
    let mut config = EcamSpace::new(
        region,
        KernelMapper {
            window: ECAM_WINDOW,
        },
    );
    let notification = match sluice_rt::sys::create_notification(DELAY_NOTIFICATION) {
        Ok(()) => DELAY_NOTIFICATION,
        Err(status) => {
            sluice_rt::log!("pci-server: no notification for delays ({status:?}): waits are polls");
            DELAY_NOTIFICATION
        }
    };
    let mut delay = TickDelay { notification };
    let mut inventory = Inventory::enumerate(&mut config, &region, EnumerationOptions::default());
    let mut ownership = Ownership::new(&mut config, &inventory);
    let assignments = match crate::description::map_and_parse(SYSDESC) {
        Ok(description) => {
            let mut refused = |refusal: Refusal| sluice_rt::log!("pci-server: REFUSED: {refusal}");
            Assignments::check(
                crate::description::records(&description),
                &inventory,
                first_owner,
                &mut refused,
            )
        }
        Err(error) => {
            sluice_rt::log!(
                "pci-server: system description unreadable ({error}): nothing is assigned"
            );
            Assignments::default()
        }
    };
    enable_assigned_vfs(&mut config, &mut delay, &mut inventory, &assignments);
    ownership.track_new_functions(&mut config, &inventory);
    let (first, last) = inventory.bus_range();
    sluice_rt::log!(
        "pci-server: {} functions on segment {:04x} buses {first:02x}-{last:02x}",
        inventory.functions().len(),
        inventory.segment()
    );
    let mut lines = sluice_rt::log::Lines::with_prefix("pci-server: ");
    let _ = write!(
        lines,
        "{}",
        Listing {
            inventory: &inventory,
            ownership: Some(&ownership),
        }
    );
    lines.finish();
    for assignment in assignments.accepted() {
        sluice_rt::log!(
            "pci-server: {} is assigned to guest {} ({})",
            assignment.bdf,
            assignment.guest,
            assignment.owner
        );
    }
    let Some(buffer) = MessageBuffer::current() else {
        sluice_rt::log!("pci-server: no UTCB recorded at entry");
        sluice_rt::sys::exit()
    };
    let mut iommu = IommuClient::new(buffer, IOMMU_PORTAL);
    // Before the first device is placed: the iommu-server fixes its routing with it.
    crate::bridge_report::report_bridges(&mut iommu, &inventory);
    quarantine_all(&mut iommu, &inventory);
    Server {
        config,
        delay,
        iommu,
        carver: KernelCarver {
            next: FIRST_CARVED,
            last: LAST_CARVED,
        },
        inventory,
        ownership,
        assignments,
        windows,
        tables: KernelTables::default(),
        lines: kernel_lines(),
        intx: IntxRoutes::default(),
    }
}

/// The interrupt lines init gives (selector 16; a route fails with the kernel's `EmptySlot`,
/// logged, when there are none), with free slots for bound lines.
fn kernel_lines() -> KernelLines {
    let mut free = heapless::Vec::new();
    for slot in (FIRST_BOUND_LINE..FIRST_BOUND_LINE + crate::intx::MAX_ROUTES as u32).rev() {
        let _ = free.push(Selector(slot));
    }
    KernelLines {
        lines: Some(INTERRUPT_LINES),
        notification_slot: RECEIVED_NOTIFICATION,
        free,
    }
}

/// Enables, on each physical function, as many VFs as the highest-numbered assigned one needs.
fn enable_assigned_vfs(
    config: &mut EcamSpace<KernelMapper>,
    delay: &mut TickDelay,
    inventory: &mut Inventory,
    assignments: &Assignments,
) {
    let mut wanted: heapless::Vec<(Bdf, u16), 8> = heapless::Vec::new();
    for assignment in assignments.accepted().iter().filter(|a| a.virtual_function) {
        for function in inventory.functions() {
            let Some(sriov) = function.capabilities.sriov else {
                continue;
            };
            // Zero-based VF number; enabling `n + 1` VFs makes VF `n` exist.
            let number = (0..sriov.total_vfs).find(|n| {
                virtual_function_bdf(function.bdf, sriov.first_vf_offset, sriov.vf_stride, *n)
                    == Some(assignment.bdf)
            });
            if let Some(number) = number.map(|n| n + 1) {
                match wanted.iter_mut().find(|(pf, _)| *pf == function.bdf) {
                    Some(entry) => entry.1 = entry.1.max(number),
                    None => {
                        let _ = wanted.push((function.bdf, number));
                    }
                }
            }
        }
    }
    for (pf, count) in wanted {
        match enable_virtual_functions(config, delay, inventory, pf, count) {
            Ok(added) => sluice_rt::log!("pci-server: {pf}: enabled {added} virtual functions"),
            Err(error) => {
                sluice_rt::log!("pci-server: {pf}: enabling {count} VFs failed: {error:?}")
            }
        }
    }
}

/// Puts every endpoint (with its DMA aliases) in the iommu-server's quarantine domain.
fn quarantine_all(iommu: &mut IommuClient, inventory: &Inventory) {
    use pci_core::ownership::IommuBinding;
    let mut placed = 0;
    for function in inventory.functions().iter().filter(|f| !f.is_bridge()) {
        let identity = pci_core::ownership::DmaIdentity {
            bdf: function.bdf,
            requester_ids: pci_core::alias::dma_aliases(inventory, function.bdf)
                .iter()
                .map(|alias| alias.requester_id)
                .collect(),
        };
        match iommu.attach_quarantine(&identity) {
            Ok(()) => placed += 1,
            Err(refusal) => sluice_rt::log!(
                "pci-server: {}: quarantine refused by the iommu-server (code {})",
                function.bdf,
                refusal.0
            ),
        }
    }
    sluice_rt::log!("pci-server: {placed} endpoints in the IOMMU quarantine domain");
}

fn reply_of(response: &crate::service::Response) -> Message {
    let bytes = response.bytes();
    let mut message = wire::reply(&bytes).unwrap_or(Message::new(wire::API_BIT));
    if let Some(selector) = response.capability {
        let _ = message.push_capability(selector, wire::INBOX, response.capability_rights);
    }
    message
}

fn serve(buffer: &mut MessageBuffer, server: &mut Pci) -> ! {
    let mut reply = protocol::success(&[]);
    let mut errors_logged = 0u32;
    loop {
        match buffer.reply_and_wait(&reply) {
            Ok((portal_id, request)) => {
                reply = match wire::decode(&request) {
                    Ok((operation, bytes)) => {
                        let caller = OwnerId(u32::try_from(portal_id).unwrap_or(u32::MAX));
                        reply_of(&server.handle(caller, operation, bytes.as_slice()))
                    }
                    Err(wire::WireError::NotApi) => {
                        protocol::answer("pci-server", portal_id, &request)
                    }
                    Err(error) => {
                        sluice_rt::log!(
                            "pci-server: portal {portal_id}: malformed request: {error}"
                        );
                        let status = PciError::MalformedRequest.code().to_le_bytes();
                        wire::reply(&status).unwrap_or(Message::new(wire::API_BIT))
                    }
                };
            }
            Err(status) => {
                if errors_logged < 8 {
                    sluice_rt::log!("pci-server: reply_and_wait failed: {status:?}");
                    errors_logged += 1;
                }
                reply = protocol::Refusal::Malformed.reply();
            }
        }
    }
}
