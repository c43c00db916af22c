//! What check 4 (INTx through interrupt remapping) observes and when it passes. The driver
//! (`intx_check`, on the kernel) takes five observations of its INTx notification; this
//! module judges them, so the rule is host-tested:
//!
//! 1. `first`: after the device raises its interrupt, the line's bit arrives;
//! 2. `while_masked`: after the driver acknowledged the device and raised again without
//!    acknowledging the line, nothing arrives: the kernel masked the IOAPIC pin when it fired;
//! 3. `after_unmask`: `interrupt_acknowledge` unmasks the pin, and the level the device still
//!    holds is delivered: the bit arrives again (so the EOI of the first interrupt cleared the
//!    pin's Remote IRR: the redirection entry's vector matches the IRTE's);
//! 4. `after_release`: with the device and the line acknowledged, nothing more arrives (the
//!    level was withdrawn);
//! 5. the route the pci-server reports puts the line on an IOAPIC pin (below the first MSI
//!    line) through a remapping entry that verifies a source id other than the device's own.

use pci_api::{Bdf, IntxRouteReply};

/// The kernel's first MSI line: IOAPIC pins are below it (`docs/kernel.md`, "Interrupts").
pub const FIRST_MSI_LINE: u32 = 24;

/// The notification bit the driver asks the line to signal.
pub const INTX_BIT: u8 = 0;

/// The five observations: the bits a wait took (`None`: the wait found nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxObservations {
    pub first: Option<u64>,
    pub while_masked: Option<u64>,
    pub after_unmask: Option<u64>,
    pub after_release: Option<u64>,
}

/// Judges the route reply and the observations.
pub fn judge(
    device: Bdf,
    route: &IntxRouteReply,
    seen: &IntxObservations,
) -> Result<(), &'static str> {
    if route.gsi >= FIRST_MSI_LINE {
        return Err("the route names a line that is not an IOAPIC pin");
    }
    if route.pin == 0 || route.pin > 4 || route.root_pin == 0 || route.root_pin > 4 {
        return Err("the route names no INTx pin");
    }
    if route.source_id == device {
        return Err("the IOAPIC's IRTE verifies the device, not the IOAPIC");
    }
    let bit = 1u64 << INTX_BIT;
    match seen.first {
        Some(bits) if bits & bit != 0 => {}
        Some(_) => return Err("the first INTx signalled another bit"),
        None => return Err("the first INTx did not arrive"),
    }
    if seen.while_masked.is_some() {
        return Err("an INTx arrived while the line was masked (not acknowledged)");
    }
    match seen.after_unmask {
        Some(bits) if bits & bit != 0 => {}
        _ => {
            return Err("the level held while masked did not arrive on unmask (Remote IRR stuck?)")
        }
    }
    if seen.after_release.is_some() {
        return Err("an INTx arrived after the device and the line were acknowledged");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDU: Bdf = Bdf::from_bus_devfn(9, 0);

    fn route() -> IntxRouteReply {
        IntxRouteReply {
            gsi: 21,
            irte_handle: 1,
            pin: 1,
            root_device: 5,
            source_id: Bdf::from_requester_id(0xff00),
            root_pin: 1,
            bridges: 1,
        }
    }

    const GOOD: IntxObservations = IntxObservations {
        first: Some(1),
        while_masked: None,
        after_unmask: Some(1),
        after_release: None,
    };

    #[test]
    fn the_level_triggered_sequence_passes() {
        assert_eq!(judge(EDU, &route(), &GOOD), Ok(()));
    }

    #[test]
    fn each_deviation_fails_with_its_reason() {
        let mut seen = GOOD;
        seen.first = None;
        assert!(judge(EDU, &route(), &seen).is_err());
        seen = GOOD;
        seen.first = Some(2);
        assert!(judge(EDU, &route(), &seen).is_err());
        seen = GOOD;
        seen.while_masked = Some(1);
        assert_eq!(
            judge(EDU, &route(), &seen),
            Err("an INTx arrived while the line was masked (not acknowledged)")
        );
        seen = GOOD;
        seen.after_unmask = None;
        assert!(judge(EDU, &route(), &seen)
            .unwrap_err()
            .contains("Remote IRR"));
        seen = GOOD;
        seen.after_release = Some(1);
        assert!(judge(EDU, &route(), &seen).is_err());
    }

    #[test]
    fn the_route_must_be_an_ioapic_pin_verified_as_the_ioapic() {
        let mut bad = route();
        bad.gsi = FIRST_MSI_LINE;
        assert!(judge(EDU, &bad, &GOOD).is_err());
        bad = route();
        bad.source_id = EDU;
        assert!(judge(EDU, &bad, &GOOD).is_err());
        bad = route();
        bad.pin = 0;
        assert!(judge(EDU, &bad, &GOOD).is_err());
    }
}
