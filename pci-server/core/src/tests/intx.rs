//! INTx routing: the Interrupt Pin, the bridge swizzle up to the root bus, and the q35/ICH9
//! platform table, on the q35 fake (edu behind a root port, a conventional e1000 behind a
//! PCIe-to-PCI bridge) and on hand-built root-bus functions.

use super::*;
use crate::fake::{q35, FakeFunction};
use crate::intx::{
    platform_router, route_intx, swizzle_to_root, IntxError, IntxPin, IntxRouter, Q35Ich9,
};
use proptest::prelude::*;

fn pin_function(pin: u8) -> FakeFunction {
    FakeFunction::endpoint(0x1af4, 0x1000, 0x020000, 0).raw(0x3d, &[pin])
}

#[test]
fn pins_decode_and_swizzle_by_the_bridge_table() {
    assert_eq!(IntxPin::from_register(0), Err(IntxError::NoInterruptPin));
    assert_eq!(IntxPin::from_register(1), Ok(IntxPin::A));
    assert_eq!(IntxPin::from_register(4), Ok(IntxPin::D));
    assert_eq!(
        IntxPin::from_register(5),
        Err(IntxError::InvalidInterruptPin(5))
    );
    // PCI-to-PCI bridge spec table 9-1: device 0 keeps the pin, device 1 rotates by one, ...
    assert_eq!(IntxPin::A.swizzle(0), IntxPin::A);
    assert_eq!(IntxPin::A.swizzle(1), IntxPin::B);
    assert_eq!(IntxPin::D.swizzle(1), IntxPin::A);
    assert_eq!(IntxPin::B.swizzle(2), IntxPin::D);
    assert_eq!(IntxPin::C.swizzle(7), IntxPin::B);
    assert_eq!(IntxPin::D.register_value(), 4);
    assert_eq!(format!("{}", IntxPin::C), "INTC");
}

#[test]
fn the_q35_table_follows_qemus_ich9_defaults() {
    let table = Q35Ich9;
    // Slots 0..=24: PIRQ E..H = 4 + (slot + pin) mod 4.
    assert_eq!(table.route(0, IntxPin::A), Ok((20, "PIRQE")));
    assert_eq!(table.route(1, IntxPin::A), Ok((21, "PIRQF")));
    assert_eq!(table.route(5, IntxPin::A), Ok((21, "PIRQF")));
    assert_eq!(table.route(3, IntxPin::D), Ok((22, "PIRQG")));
    assert_eq!(table.route(24, IntxPin::D), Ok((23, "PIRQH")));
    // Slots 25..=29 and 31: DnnIR reset value 0x3210, INTA..D -> PIRQ A..D.
    assert_eq!(table.route(25, IntxPin::A), Ok((16, "PIRQA")));
    assert_eq!(table.route(29, IntxPin::B), Ok((17, "PIRQB")));
    assert_eq!(table.route(31, IntxPin::D), Ok((19, "PIRQD")));
    // Slot 30 (the DMI-to-PCI bridge): INTA..D -> PIRQ E..H.
    assert_eq!(table.route(30, IntxPin::A), Ok((20, "PIRQE")));
    assert_eq!(table.route(30, IntxPin::C), Ok((22, "PIRQG")));
    assert_eq!(table.route(32, IntxPin::A), Err(IntxError::NotRouted));
}

#[test]
fn edu_behind_its_root_port_reaches_gsi_21() {
    let (config, inventory) = q35();
    let router = platform_router(&inventory).unwrap();
    let route = route_intx(&config, &inventory, &router, q35::EDU).unwrap();
    assert_eq!(route.pin, IntxPin::A);
    assert_eq!((route.root_device, route.root_pin), (5, IntxPin::A));
    assert_eq!(route.bridges, 1);
    assert_eq!((route.gsi, route.line_name), (21, "PIRQF"));
}

#[test]
fn a_conventional_device_is_swizzled_at_every_bridge() {
    let (config, inventory) = q35();
    // 07:01.0 INTA -> (1 + 0) = INTB at the PCIe-to-PCI bridge 06:00.0 -> (0 + 1) = INTB at
    // root port 00:03.0 -> PIRQ 4 + (3 + 1) mod 4 = E -> GSI 20.
    assert_eq!(
        swizzle_to_root(&inventory, q35::CONVENTIONAL_E1000, IntxPin::A),
        Ok((3, IntxPin::B, 2))
    );
    let route = route_intx(&config, &inventory, &Q35Ich9, q35::CONVENTIONAL_E1000).unwrap();
    assert_eq!((route.gsi, route.line_name), (20, "PIRQE"));
}

#[test]
fn root_bus_functions_use_their_own_slot() {
    let mut config = q35_topology()
        .with(b(0, 0x1d, 0), pin_function(2))
        .with(b(0, 0x1e, 0), pin_function(3))
        .with(b(0, 0x0a, 0), pin_function(1));
    let inventory = enumerate(&mut config);
    let gsi = |bdf| route_intx(&config, &inventory, &Q35Ich9, bdf).map(|route| route.gsi);
    assert_eq!(gsi(b(0, 0x1d, 0)), Ok(17), "slot 29 INTB -> PIRQB");
    assert_eq!(gsi(b(0, 0x1e, 0)), Ok(22), "slot 30 INTC -> PIRQG");
    assert_eq!(gsi(b(0, 0x0a, 0)), Ok(22), "slot 10 INTA -> PIRQ 4 + 2");
}

#[test]
fn functions_without_a_usable_pin_are_refused() {
    let mut config = q35_topology().with(b(0, 0x0b, 0), pin_function(7));
    let inventory = enumerate(&mut config);
    assert_eq!(
        route_intx(&config, &inventory, &Q35Ich9, q35::NVME),
        Err(IntxError::NoInterruptPin),
        "the nvme fake has Interrupt Pin 0"
    );
    assert_eq!(
        route_intx(&config, &inventory, &Q35Ich9, b(0, 0x0b, 0)),
        Err(IntxError::InvalidInterruptPin(7))
    );
    assert_eq!(
        route_intx(&config, &inventory, &Q35Ich9, b(0x30, 0, 0)),
        Err(IntxError::NoSuchFunction)
    );
}

#[test]
fn an_unknown_chipset_is_refused_not_guessed() {
    let i440fx = FakeFunction::endpoint(0x8086, 0x1237, 0x060000, 0x02);
    let mut config = q35_topology().with(q35::HOST_BRIDGE, i440fx);
    let inventory = enumerate(&mut config);
    assert_eq!(
        platform_router(&inventory),
        Err(IntxError::UnknownChipset {
            vendor: 0x8086,
            device: 0x1237
        })
    );
    let message = format!(
        "{}",
        IntxError::UnknownChipset {
            vendor: 0x8086,
            device: 0x1237
        }
    );
    assert!(message.contains("8086:1237"), "{message}");
}

#[test]
fn holding_intx_turns_msi_off_and_releasing_lets_intx_through() {
    use crate::intx::{hold_intx, release_intx, silence_intx};
    use crate::registers::{header, msi, Command};
    use crate::ConfigSpace;
    let (mut config, inventory) = q35();
    let edu = inventory.get(q35::EDU).unwrap().clone();
    let msi_control = edu.capabilities.msi.unwrap().offset + msi::CONTROL;
    let control = config.read16(q35::EDU, msi_control);
    config.write16(q35::EDU, msi_control, control | msi::ENABLE);
    let before = config.read16(q35::EDU, header::COMMAND);
    let held = hold_intx(&mut config, &edu);
    let command = Command::from_bits_retain(config.read16(q35::EDU, header::COMMAND));
    assert!(command.contains(Command::INTX_DISABLE | Command::MEMORY_SPACE));
    assert_eq!(config.read16(q35::EDU, msi_control) & msi::ENABLE, 0);
    held.restore(&mut config);
    assert_eq!(
        config.read16(q35::EDU, header::COMMAND),
        before,
        "a refusal puts it back"
    );
    assert_ne!(config.read16(q35::EDU, msi_control) & msi::ENABLE, 0);
    let _ = hold_intx(&mut config, &edu);
    release_intx(&mut config, q35::EDU);
    let command = Command::from_bits_retain(config.read16(q35::EDU, header::COMMAND));
    assert!(!command.contains(Command::INTX_DISABLE));
    assert!(command.contains(Command::MEMORY_SPACE), "other bits kept");
    silence_intx(&mut config, q35::EDU);
    let command = Command::from_bits_retain(config.read16(q35::EDU, header::COMMAND));
    assert!(command.contains(Command::INTX_DISABLE));
}

proptest! {
    #[test]
    fn every_q35_slot_and_pin_lands_on_a_pirq_pin(slot in 0u8..32, pin in 1u8..=4) {
        let pin = IntxPin::from_register(pin).unwrap();
        let (gsi, _) = Q35Ich9.route(slot, pin).unwrap();
        prop_assert!((16..=23).contains(&gsi));
    }

    #[test]
    fn swizzling_depends_on_the_device_modulo_four(device in 0u8..32, pin in 1u8..=4) {
        let pin = IntxPin::from_register(pin).unwrap();
        prop_assert_eq!(pin.swizzle(device), pin.swizzle(device % 4));
        // Four devices on one bus spread one pin over all four pins.
        let spread: Vec<IntxPin> = (0..4).map(|d| pin.swizzle(d)).collect();
        for other in [IntxPin::A, IntxPin::B, IntxPin::C, IntxPin::D] {
            prop_assert!(spread.contains(&other));
        }
    }

    #[test]
    fn any_interrupt_pin_byte_decodes_or_is_named(value in any::<u8>()) {
        match IntxPin::from_register(value) {
            Ok(pin) => prop_assert_eq!(pin.register_value(), value),
            Err(IntxError::NoInterruptPin) => prop_assert_eq!(value, 0),
            Err(IntxError::InvalidInterruptPin(seen)) => prop_assert!(seen == value && value > 4),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
