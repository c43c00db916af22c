//! Check 4 on the kernel: the edu device's INTx, routed by the pci-server through an IOAPIC
//! pin in remappable format (its IRTE verifies the IOAPIC's source id), delivered to the
//! driver's notification, masked until acknowledged, level-triggered. The observations and
//! the rule that judges them are in [`crate::intx`].

use pci_api::{IntxRouteReply, IntxRouteRequest, PciError};
use sluice_rt::abi::syscall::{InterruptRights, NotificationRights, Selector};
use sluice_rt::sys;
use zerocopy::IntoBytes;

use crate::clients::{reply, Failure};
use crate::driver::{config_read, Driver, COMMAND_OFFSET, DEVICE_TICKS};
use crate::intx::{judge, IntxObservations, INTX_BIT};

/// The notification the INTx line signals.
const INTX_NOTIFICATION: Selector = Selector(25);
/// The bound line (acknowledge only).
const INTX_LINE: Selector = Selector(26);
/// Command.Interrupt Disable (PCIe Base spec 6.0 section 7.5.1.1.3).
const INTERRUPT_DISABLE: u32 = 1 << 10;

/// Waits for the INTx bit: `Some(bits)` if the notification was signalled within `ticks`.
fn take(ticks: u64) -> Option<u64> {
    sys::wait(INTX_NOTIFICATION, ticks).ok()
}

/// Asks the pci-server for the route, sending the notification to bind.
fn route(driver: &mut Driver) -> Result<IntxRouteReply, &'static str> {
    sys::create_notification(INTX_NOTIFICATION).map_err(|_| "no notification")?;
    let request = IntxRouteRequest {
        bdf: driver.device,
        bit: INTX_BIT,
        reserved: 0,
    };
    let bind = NotificationRights::BIND_INTERRUPT.bits();
    let (body, received) = driver
        .servers
        .pci_with(
            pci_api::Operation::RouteIntx,
            request.as_bytes(),
            Some((INTX_NOTIFICATION, bind)),
        )
        .map_err(|failure| {
            sluice_rt::log!("dma-test: routing INTx: {failure}");
            "the INTx route was refused"
        })?;
    let route: IntxRouteReply = reply(body.as_slice()).map_err(|_| "bad INTx route reply")?;
    let inbox = received.ok_or("the route carried no interrupt line")?;
    let acknowledge = InterruptRights::ACKNOWLEDGE.bits();
    let kept = sys::derive(inbox, INTX_LINE, acknowledge);
    let _ = sys::delete(inbox);
    kept.map_err(|_| "the interrupt line could not be kept")?;
    Ok(route)
}

/// Asks for the route again, without and with a notification: refused with
/// `MissingCapability` and `IntxAlreadyRouted` (the server drops what came with the request),
/// and the line still delivers afterwards.
fn refusals_change_nothing(driver: &mut Driver) -> Result<(), &'static str> {
    let request = IntxRouteRequest {
        bdf: driver.device,
        bit: INTX_BIT,
        reserved: 0,
    };
    let bind = NotificationRights::BIND_INTERRUPT.bits();
    for (capability, expected) in [
        (None, PciError::MissingCapability),
        (Some((INTX_NOTIFICATION, bind)), PciError::IntxAlreadyRouted),
    ] {
        let result = driver.servers.pci_with(
            pci_api::Operation::RouteIntx,
            request.as_bytes(),
            capability,
        );
        match result {
            Err(Failure::Pci(code)) if code == expected.code() => {}
            Err(failure) => {
                sluice_rt::log!("dma-test: a second INTx route: {failure}, expected {expected}");
                return Err("a second INTx route was refused for another reason");
            }
            Ok(_) => return Err("a second INTx route was accepted"),
        }
    }
    let _ = take(0);
    driver.edu.raise_interrupt(4);
    let again = take(DEVICE_TICKS);
    driver.edu.acknowledge_interrupts();
    let _ = sys::interrupt_acknowledge(INTX_LINE);
    match again {
        Some(bits) if bits & (1 << INTX_BIT) != 0 => Ok(()),
        _ => Err("after the refused routes the INTx no longer arrived"),
    }
}

pub(crate) fn check_intx(driver: &mut Driver) -> Result<(), &'static str> {
    let route = route(driver)?;
    let command = config_read(&mut driver.servers, driver.device, COMMAND_OFFSET, 2)
        .map_err(|_| "the command register is unreadable")?;
    if command & INTERRUPT_DISABLE != 0 {
        return Err("the pci-server left Interrupt Disable set");
    }
    let _ = take(0);
    driver.edu.raise_interrupt(1);
    let first = take(DEVICE_TICKS);
    // The pin is masked now: the device's level, withdrawn and raised again, must wait.
    driver.edu.acknowledge_interrupts();
    driver.edu.raise_interrupt(2);
    let while_masked = take(0);
    let _ = sys::interrupt_acknowledge(INTX_LINE);
    let after_unmask = take(DEVICE_TICKS);
    driver.edu.acknowledge_interrupts();
    let _ = sys::interrupt_acknowledge(INTX_LINE);
    let after_release = take(0);
    let seen = IntxObservations {
        first,
        while_masked,
        after_unmask,
        after_release,
    };
    if let Err(reason) = judge(driver.device, &route, &seen) {
        sluice_rt::log!(
            "dma-test: INTx observations: {seen:?}, route GSI {}",
            route.gsi
        );
        return Err(reason);
    }
    refusals_change_nothing(driver)?;
    sluice_rt::log!(
        "dma-test: check 4 passed: INTx of {} (pin {}, via 00:{:02x} pin {}) arrived on GSI {} \
         through IRTE {} (IOAPIC source id {}, remappable format), stayed masked until \
         acknowledged, and the level held meanwhile arrived on unmask; a second route was \
         refused (no notification; already routed) and the line kept working; MSI off",
        driver.device,
        route.pin,
        route.root_device,
        route.root_pin,
        route.gsi,
        route.irte_handle,
        route.source_id
    );
    Ok(())
}
