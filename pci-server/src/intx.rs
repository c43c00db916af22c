//! `RouteIntx`: a function's legacy interrupt delivered to its owner through interrupt
//! remapping (docs/passthrough.md, "INTx").
//!
//! Capability flow: init gives this server the interrupt lines (every interrupt right); the
//! owner sends the notification to signal (`BIND_INTERRUPT`) with the request. The server
//! computes the GSI (`pci_core::intx`), binds that line to the owner's notification
//! (`create_interrupt`: a line is bound once, so a GSI is never shared), has the iommu-server
//! program an IRTE for the IOAPIC pin (`AllocateIoapicIrte`: the IOAPIC's source id, the line's
//! vector, level-triggered) and points the pin at it (`interrupt_remap`, which needs `REMAP`
//! on the bound line: only this server holds it). The owner gets the bound line with
//! `ACKNOWLEDGE` only, so it can unmask the pin after each interrupt but never aim it at
//! another entry. On release the server takes the line back (revoking the owner's copy) and
//! frees the entry.
//!
//! While the line is being set up the function's Command.Interrupt Disable is set (and MSI,
//! MSI-X off), so nothing is asserted on a pin still in compatibility format (blocked, and on
//! a level-triggered pin a blocked message would leave Remote IRR set). A refused route puts
//! Command and the MSI/MSI-X controls back as they were.

use pci_api::{Bdf, IntxRouteReply, OwnerId, PciError};
use pci_core::intx::{hold_intx, platform_router, release_intx, route_intx, silence_intx};
use pci_core::intx::{IntxError, IntxRouter};
use pci_core::ConfigSpace;
use pci_core::Delay;
use sluice_rt::abi::syscall::{Selector, Status};
use zerocopy::IntoBytes;

use crate::iommu::DomainBinding;
use crate::msix::TableAccess;
use crate::service::{Carver, Response, Server};

/// Most functions with a routed INTx at once.
pub const MAX_ROUTES: usize = 8;

/// The kernel services a route needs (a recording fake in tests).
pub trait InterruptLines {
    /// Moves the capability that came with the request into a slot of the server's own with
    /// `BIND_INTERRUPT`; `None` if there was none (or it lacks the right).
    fn take_notification(&mut self) -> Option<Selector>;
    /// Binds line `gsi` to bit `bit` of `notification` (`create_interrupt` from the server's
    /// interrupt lines); the bound line's selector.
    fn bind(&mut self, gsi: u32, notification: Selector, bit: u8) -> Result<Selector, Status>;
    /// Points the bound line's IOAPIC pin at IRTE `handle` (`interrupt_remap`).
    fn remap(&mut self, line: Selector, handle: u16) -> Result<(), Status>;
    /// Takes a bound line away: revokes it including every copy handed out.
    fn unbind(&mut self, line: Selector);
    /// Drops a capability the server does not keep.
    fn drop_capability(&mut self, selector: Selector);
}

/// One routed function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxRouteRecord {
    /// The function.
    pub bdf: Bdf,
    /// Its owner.
    pub owner: OwnerId,
    /// The line.
    pub gsi: u32,
    /// The bound line in the server's table.
    pub line: Selector,
    /// The IOAPIC pin's IRTE.
    pub handle: u16,
}

/// The routed functions.
#[derive(Clone, Debug, Default)]
pub struct IntxRoutes {
    records: heapless::Vec<IntxRouteRecord, MAX_ROUTES>,
}

impl IntxRoutes {
    /// The route of `bdf`.
    pub fn of(&self, bdf: Bdf) -> Option<IntxRouteRecord> {
        self.records
            .iter()
            .copied()
            .find(|record| record.bdf == bdf)
    }

    /// Whether some function's INTx uses `gsi`.
    pub fn uses_gsi(&self, gsi: u32) -> bool {
        self.records.iter().any(|record| record.gsi == gsi)
    }

    fn take(&mut self, bdf: Bdf) -> Option<IntxRouteRecord> {
        let position = self.records.iter().position(|record| record.bdf == bdf)?;
        Some(self.records.swap_remove(position))
    }
}

/// The iommu-server's codes the route maps to its own errors.
const IOMMU_GSI_IN_USE: u32 = iommu_api::IommuError::GsiInUse as u32;
const IOMMU_NO_REMAPPING: u32 = iommu_api::IommuError::InterruptRemappingUnavailable as u32;

impl<C, D, I, K, T, L> Server<C, D, I, K, T, L>
where
    C: ConfigSpace,
    D: Delay,
    I: DomainBinding,
    K: Carver,
    T: TableAccess,
    L: InterruptLines,
{
    /// `RouteIntx` (see `pci_api::Operation::RouteIntx`). The notification that came with the
    /// request is taken first, so that it never stays in the inbox, and dropped at the end
    /// whatever happened (a bound line keeps its notification itself).
    pub(crate) fn route_intx(
        &mut self,
        caller: OwnerId,
        bdf: Bdf,
        bit: u8,
    ) -> Result<Response, PciError> {
        let notification = self.lines.take_notification();
        let result = notification
            .ok_or(PciError::MissingCapability)
            .and_then(|notification| self.route_with(caller, bdf, bit, notification));
        if let Some(notification) = notification {
            self.lines.drop_capability(notification);
        }
        result
    }

    fn route_with(
        &mut self,
        caller: OwnerId,
        bdf: Bdf,
        bit: u8,
        notification: Selector,
    ) -> Result<Response, PciError> {
        self.owned(caller, bdf)?;
        if self.intx.of(bdf).is_some() {
            return Err(PciError::IntxAlreadyRouted);
        }
        if self.intx.records.is_full() {
            return Err(PciError::InterruptRoutingFailed);
        }
        let refused = |error: IntxError| {
            sluice_rt::log!("pci-server: INTx of {bdf} for {caller} refused: {error}");
            match error {
                IntxError::NoInterruptPin | IntxError::InvalidInterruptPin(_) => {
                    PciError::NoInterruptPin
                }
                IntxError::NoSuchFunction => PciError::NoSuchFunction,
                _ => PciError::IntxRoutingUnknown,
            }
        };
        let router = platform_router(&self.inventory).map_err(refused)?;
        let route = route_intx(&self.config, &self.inventory, &router, bdf).map_err(refused)?;
        let gsi = route.gsi;
        if self.intx.uses_gsi(gsi) {
            sluice_rt::log!(
                "pci-server: INTx of {bdf} for {caller} refused: GSI {gsi} already carries \
                 another function's INTx (never shared)"
            );
            return Err(PciError::IntxLineBusy);
        }
        let function = self
            .inventory
            .get(bdf)
            .ok_or(PciError::NoSuchFunction)?
            .clone();
        let held = hold_intx(&mut self.config, &function);
        let line = match self.lines.bind(gsi, notification, bit) {
            Ok(line) => line,
            Err(status) => {
                held.restore(&mut self.config);
                sluice_rt::log!("pci-server: binding GSI {gsi} for {bdf} refused: {status:?}");
                return Err(if status == Status::Busy {
                    PciError::IntxLineBusy
                } else {
                    PciError::InterruptRoutingFailed
                });
            }
        };
        let entry = match self.iommu.allocate_ioapic_irte(gsi, caller) {
            Ok(entry) => entry,
            Err(refusal) => {
                self.lines.unbind(line);
                held.restore(&mut self.config);
                sluice_rt::log!(
                    "pci-server: INTx of {bdf}: the iommu-server refused an IRTE for GSI {gsi} \
                     (code {})",
                    refusal.0
                );
                return Err(match refusal.0 {
                    IOMMU_GSI_IN_USE => PciError::IntxLineBusy,
                    IOMMU_NO_REMAPPING => PciError::InterruptRemappingUnavailable,
                    _ => PciError::IommuRefused,
                });
            }
        };
        if let Err(status) = self.lines.remap(line, entry.handle) {
            sluice_rt::log!("pci-server: remapping GSI {gsi} for {bdf} refused: {status:?}");
            let _ = self.iommu.free_irte(entry.handle);
            self.lines.unbind(line);
            held.restore(&mut self.config);
            return Err(PciError::InterruptRoutingFailed);
        }
        release_intx(&mut self.config, bdf);
        let record = IntxRouteRecord {
            bdf,
            owner: caller,
            gsi,
            line,
            handle: entry.handle,
        };
        let _ = self.intx.records.push(record);
        let source = Bdf::from_requester_id(entry.source_id.0);
        let plural = if route.bridges == 1 { "" } else { "s" };
        sluice_rt::log!(
            "pci-server: {bdf} {} -> 00:{:02x} {} ({} bridge{plural}) -> {} -> GSI {gsi} ({}); \
             IOAPIC pin in remappable format through IRTE {} (source id {source}, \
             level-triggered), bound to {caller}'s notification bit {bit}; MSI off, INTx on",
            route.pin,
            route.root_device,
            route.root_pin,
            route.bridges,
            route.line_name,
            router.name(),
            entry.handle,
        );
        let reply = IntxRouteReply {
            gsi,
            irte_handle: entry.handle,
            pin: route.pin.register_value(),
            root_device: route.root_device,
            source_id: source,
            root_pin: route.root_pin.register_value(),
            bridges: route.bridges,
        };
        let mut response = Response::ok(reply.as_bytes());
        response.capability = Some(line);
        response.capability_rights = sluice_rt::abi::syscall::InterruptRights::ACKNOWLEDGE.bits();
        Ok(response)
    }

    /// Takes back the INTx route of `bdf` (its owner releases it): the function stops
    /// asserting INTx, the line and the owner's copy are revoked, the IRTE freed.
    pub(crate) fn unroute_intx(&mut self, bdf: Bdf) {
        let Some(record) = self.intx.take(bdf) else {
            return;
        };
        silence_intx(&mut self.config, bdf);
        self.lines.unbind(record.line);
        if let Err(refusal) = self.iommu.free_irte(record.handle) {
            sluice_rt::log!(
                "pci-server: freeing IRTE {} of GSI {} failed (code {})",
                record.handle,
                record.gsi,
                refusal.0
            );
        }
        sluice_rt::log!(
            "pci-server: {bdf}: INTx route to {} taken back: GSI {} unbound, IRTE {} freed",
            record.owner,
            record.gsi,
            record.handle
        );
    }
}

/// The kernel's interrupt calls, on the lines init gave the server at `lines` (RETYPE,
/// ACKNOWLEDGE, REMAP), with bound lines at selectors `first..=last`.
pub struct KernelLines {
    /// The interrupt lines capability (`None`: init gave none; every route is refused).
    pub lines: Option<Selector>,
    /// Where a received notification is kept while it is bound.
    pub notification_slot: Selector,
    /// Free selectors for bound lines.
    pub free: heapless::Vec<Selector, MAX_ROUTES>,
}

impl InterruptLines for KernelLines {
    fn take_notification(&mut self) -> Option<Selector> {
        let inbox = sluice_rt::wire::INBOX;
        let rights = sluice_rt::abi::syscall::NotificationRights::BIND_INTERRUPT.bits();
        let taken = sluice_rt::sys::derive(inbox, self.notification_slot, rights);
        let _ = sluice_rt::sys::delete(inbox);
        taken.ok().map(|()| self.notification_slot)
    }

    fn bind(&mut self, gsi: u32, notification: Selector, bit: u8) -> Result<Selector, Status> {
        let lines = self.lines.ok_or(Status::EmptySlot)?;
        let slot = self.free.pop().ok_or(Status::OutOfKernelMemory)?;
        match sluice_rt::sys::create_interrupt(lines, slot, gsi, notification, bit) {
            Ok(()) => Ok(slot),
            Err(status) => {
                let _ = self.free.push(slot);
                Err(status)
            }
        }
    }

    fn remap(&mut self, line: Selector, handle: u16) -> Result<(), Status> {
        sluice_rt::sys::interrupt_remap(line, handle)
    }

    fn unbind(&mut self, line: Selector) {
        let _ = sluice_rt::sys::revoke(line, true);
        let _ = self.free.push(line);
    }

    fn drop_capability(&mut self, selector: Selector) {
        let _ = sluice_rt::sys::delete(selector);
    }
}
