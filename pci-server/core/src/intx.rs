//! Where a function's legacy interrupt (INTx) arrives: its Interrupt Pin (config 0x3D, PCIe
//! Base spec 6.0 section 7.5.1.1.14), swizzled through every bridge above it up to the
//! root-bus slot, then the chipset's routing of that slot and pin to a global system interrupt
//! (an IOAPIC pin).
//!
//! **Swizzle.** A PCI-to-PCI bridge maps INTx pin `p` (0 = INTA) of device `d` on its
//! secondary bus to its own pin `(d + p) mod 4` (PCI-to-PCI Bridge Architecture spec 1.2,
//! section 9.1, table 9-1; PCIe Base spec 6.0 section 2.2.8.1, table 2-20 applies the same
//! mapping to the INTx messages of switch ports and root ports).
//!
//! **Chipset routing.** A serious platform reads the ACPI `_PRT` of the root bus, which needs
//! an AML interpreter; until then the routing is a named platform table chosen by the host
//! bridge's vendor and device ID ([`IntxRouter`] is the seam a `_PRT`-derived table will
//! implement). Known: [`Q35Ich9`]. Any other host bridge is refused with
//! [`IntxError::UnknownChipset`] rather than guessed.

use crate::config_space::{AccessWidth, ConfigSpace};
use crate::function::FunctionInfo;
use crate::inventory::{Inventory, MAX_DEPTH};
use crate::registers::{header, msi, msix, Command};
use crate::Bdf;
use core::fmt;

/// One of the four INTx pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntxPin {
    /// INTA (Interrupt Pin register value 1).
    A,
    /// INTB (2).
    B,
    /// INTC (3).
    C,
    /// INTD (4).
    D,
}

impl IntxPin {
    /// From the Interrupt Pin register: 1..=4; 0 means "no INTx", anything else is invalid.
    pub fn from_register(value: u8) -> Result<IntxPin, IntxError> {
        match value {
            0 => Err(IntxError::NoInterruptPin),
            1..=4 => Ok(Self::from_index(value - 1)),
            other => Err(IntxError::InvalidInterruptPin(other)),
        }
    }

    /// 0 for INTA .. 3 for INTD.
    pub const fn index(self) -> u8 {
        self as u8
    }

    fn from_index(index: u8) -> IntxPin {
        match index % 4 {
            0 => IntxPin::A,
            1 => IntxPin::B,
            2 => IntxPin::C,
            _ => IntxPin::D,
        }
    }

    /// The pin a bridge presents on its primary side for this pin of device `device` on its
    /// secondary bus (table 9-1 of the bridge spec).
    pub fn swizzle(self, device: u8) -> IntxPin {
        Self::from_index((device % 4 + self.index()) % 4)
    }

    /// The register value (1..=4).
    pub const fn register_value(self) -> u8 {
        self.index() + 1
    }
}

impl fmt::Display for IntxPin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self {
            IntxPin::A => 'A',
            IntxPin::B => 'B',
            IntxPin::C => 'C',
            IntxPin::D => 'D',
        };
        write!(formatter, "INT{letter}")
    }
}

/// Why a function's INTx has no known GSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntxError {
    /// The function is not in the inventory.
    NoSuchFunction,
    /// Interrupt Pin reads 0: the function uses no INTx (virtual functions never do, SR-IOV
    /// spec 1.1 section 3.4.1.14).
    NoInterruptPin,
    /// Interrupt Pin holds a value above 4.
    InvalidInterruptPin(u8),
    /// A bridge above the function is missing from the inventory, or the path is deeper than
    /// the enumeration goes.
    BrokenPath,
    /// No host bridge answers at 00:00.0 of the root bus.
    NoHostBridge,
    /// The host bridge is not one whose routing is known (no `_PRT` interpreter yet).
    UnknownChipset {
        /// Host bridge vendor ID.
        vendor: u16,
        /// Host bridge device ID.
        device: u16,
    },
    /// The platform table has no entry for this root-bus slot and pin.
    NotRouted,
}

impl fmt::Display for IntxError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchFunction => write!(formatter, "no such function"),
            Self::NoInterruptPin => {
                write!(formatter, "Interrupt Pin is 0: the function has no INTx")
            }
            Self::InvalidInterruptPin(value) => {
                write!(formatter, "Interrupt Pin holds {value}, not 1..4")
            }
            Self::BrokenPath => write!(
                formatter,
                "the bridges above the function are not all known"
            ),
            Self::NoHostBridge => write!(formatter, "no host bridge at 00:00.0"),
            Self::UnknownChipset { vendor, device } => write!(
                formatter,
                "host bridge {vendor:04x}:{device:04x} has no known INTx routing (only q35/ICH9 \
                 8086:29c0; an ACPI _PRT reader would cover the rest)"
            ),
            Self::NotRouted => write!(
                formatter,
                "the platform routes no GSI for that slot and pin"
            ),
        }
    }
}

/// Where a root-bus slot's INTx pins go: a platform table, or (later) the ACPI `_PRT`.
pub trait IntxRouter {
    /// The GSI of `pin` of root-bus device `slot`, and the chipset's name for the line it
    /// travels on (e.g. `PIRQF`), for the log.
    fn route(&self, slot: u8, pin: IntxPin) -> Result<(u32, &'static str), IntxError>;
    /// The table's name, for the log.
    fn name(&self) -> &'static str;
}

/// QEMU's q35 machine (MCH 8086:29c0 with the ICH9 LPC at 00:1f.0) in APIC mode, from QEMU's
/// `hw/isa/lpc_ich9.c`: root-bus slot `s` pin `p` reaches PIRQ `ich9_lpc_map_irq` gives:
/// slots 0..=24 PIRQ E..H as `4 + (s + p) mod 4` (`ich9_cc_init`), slots 25..=29 and 31
/// PIRQ A..D as `p` (the DnnIR registers' reset value 0x3210, which SeaBIOS leaves), slot 30
/// PIRQ E..H as `4 + p`; in APIC mode PIRQ A..H are IOAPIC pins 16..23 whatever the PIRQ
/// routing registers say (`ich9_pirq_to_gsi`). Firmware that reprograms the DnnIR registers
/// (real ICH9 boards do) is not covered: that is what reading `_PRT` will fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Q35Ich9;

impl Q35Ich9 {
    /// The host bridge this table is chosen by.
    pub const HOST_BRIDGE: (u16, u16) = (0x8086, 0x29c0);
    const PIRQ_NAMES: [&'static str; 8] = [
        "PIRQA", "PIRQB", "PIRQC", "PIRQD", "PIRQE", "PIRQF", "PIRQG", "PIRQH",
    ];
    /// GSI of PIRQA in APIC mode.
    const FIRST_PIRQ_GSI: u32 = 16;

    fn pirq(slot: u8, pin: IntxPin) -> Option<u8> {
        let pin = pin.index();
        match slot {
            0..=24 => Some(4 + (slot + pin) % 4),
            25..=29 | 31 => Some(pin),
            30 => Some(4 + pin),
            _ => None,
        }
    }
}

impl IntxRouter for Q35Ich9 {
    fn route(&self, slot: u8, pin: IntxPin) -> Result<(u32, &'static str), IntxError> {
        let pirq = Self::pirq(slot, pin).ok_or(IntxError::NotRouted)?;
        let name = Self::PIRQ_NAMES
            .get(usize::from(pirq))
            .copied()
            .ok_or(IntxError::NotRouted)?;
        Ok((Self::FIRST_PIRQ_GSI + u32::from(pirq), name))
    }

    fn name(&self) -> &'static str {
        "q35/ICH9 platform table"
    }
}

/// The platform's INTx routing, chosen by the host bridge (the function at 00:00.0 of the
/// inventory's first bus).
pub fn platform_router(inventory: &Inventory) -> Result<Q35Ich9, IntxError> {
    let (first_bus, _) = inventory.bus_range();
    let host = Bdf::from_bus_devfn(first_bus, 0);
    let bridge = inventory.get(host).ok_or(IntxError::NoHostBridge)?;
    match (bridge.vendor_id, bridge.device_id) {
        Q35Ich9::HOST_BRIDGE => Ok(Q35Ich9),
        (vendor, device) => Err(IntxError::UnknownChipset { vendor, device }),
    }
}

/// Where a function's INTx goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxRoute {
    /// The function's own pin.
    pub pin: IntxPin,
    /// The root-bus device the interrupt leaves the hierarchy at (the function itself on the
    /// root bus, else its top-most bridge).
    pub root_device: u8,
    /// The pin at that device after swizzling.
    pub root_pin: IntxPin,
    /// Bridges crossed.
    pub bridges: u8,
    /// The global system interrupt.
    pub gsi: u32,
    /// The chipset's name for the line (e.g. `PIRQF`).
    pub line_name: &'static str,
}

/// Swizzles `pin` of function `bdf` up to the root bus: (root-bus device, pin there, bridges
/// crossed).
pub fn swizzle_to_root(
    inventory: &Inventory,
    bdf: Bdf,
    pin: IntxPin,
) -> Result<(u8, IntxPin, u8), IntxError> {
    let mut current = inventory.get(bdf).ok_or(IntxError::NoSuchFunction)?;
    let mut pin = pin;
    let mut bridges = 0u8;
    while let Some(parent) = current.parent {
        if usize::from(bridges) >= MAX_DEPTH {
            return Err(IntxError::BrokenPath);
        }
        pin = pin.swizzle(current.bdf.device());
        bridges += 1;
        current = inventory.get(parent).ok_or(IntxError::BrokenPath)?;
    }
    Ok((current.bdf.device(), pin, bridges))
}

/// The INTx route of function `bdf`: its Interrupt Pin read from config space, swizzled to
/// the root bus, then through `router`.
pub fn route_intx<C: ConfigSpace + ?Sized>(
    config: &C,
    inventory: &Inventory,
    router: &impl IntxRouter,
    bdf: Bdf,
) -> Result<IntxRoute, IntxError> {
    let function = inventory.get(bdf).ok_or(IntxError::NoSuchFunction)?;
    if function.physical_function.is_some() {
        return Err(IntxError::NoInterruptPin);
    }
    let register = config.read(bdf, header::INTERRUPT_PIN, AccessWidth::Byte) as u8;
    let pin = IntxPin::from_register(register)?;
    let (root_device, root_pin, bridges) = swizzle_to_root(inventory, bdf, pin)?;
    let (gsi, line_name) = router.route(root_device, root_pin)?;
    Ok(IntxRoute {
        pin,
        root_device,
        root_pin,
        bridges,
        gsi,
        line_name,
    })
}

/// What [`hold_intx`] changed, to put back if the route is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldInterrupts {
    bdf: Bdf,
    command: u16,
    /// (offset, value) of MSI Message Control before.
    msi_control: Option<(u16, u16)>,
    /// (offset, value) of MSI-X Message Control before.
    msix_control: Option<(u16, u16)>,
}

impl HeldInterrupts {
    /// Puts Command, MSI and MSI-X Message Control back as they were.
    pub fn restore<C: ConfigSpace + ?Sized>(&self, config: &mut C) {
        for (offset, value) in [self.msi_control, self.msix_control].into_iter().flatten() {
            config.write16(self.bdf, offset, value);
        }
        config.write16(self.bdf, header::COMMAND, self.command);
    }
}

/// Switches `function` to legacy interrupts, but held off: Command.Interrupt Disable set
/// (PCIe Base spec 6.0 section 7.5.1.1.3), MSI Enable and MSI-X Enable cleared (section
/// 6.1.4.3: a function with either enabled does not use INTx). [`release_intx`] then lets it
/// assert INTx once the line is bound and remapped; the returned state undoes it all.
pub fn hold_intx<C: ConfigSpace + ?Sized>(
    config: &mut C,
    function: &FunctionInfo,
) -> HeldInterrupts {
    let bdf = function.bdf;
    let command = config.read16(bdf, header::COMMAND);
    let held = HeldInterrupts {
        bdf,
        command,
        msi_control: function.capabilities.msi.map(|capability| {
            let offset = capability.offset + msi::CONTROL;
            (offset, config.read16(bdf, offset))
        }),
        msix_control: function.capabilities.msix.map(|capability| {
            let offset = capability.offset + msix::CONTROL;
            (offset, config.read16(bdf, offset))
        }),
    };
    let command = Command::from_bits_retain(command) | Command::INTX_DISABLE;
    config.write16(bdf, header::COMMAND, command.bits());
    if let Some((offset, control)) = held.msi_control {
        if control & msi::ENABLE != 0 {
            config.write16(bdf, offset, control & !msi::ENABLE);
        }
    }
    if let Some((offset, control)) = held.msix_control {
        if control & msix::ENABLE != 0 {
            config.write16(bdf, offset, control & !msix::ENABLE);
        }
    }
    held
}

/// Clears Command.Interrupt Disable: the function may assert INTx.
pub fn release_intx<C: ConfigSpace + ?Sized>(config: &mut C, bdf: Bdf) {
    let command = Command::from_bits_retain(config.read16(bdf, header::COMMAND));
    if command.contains(Command::INTX_DISABLE) {
        config.write16(
            bdf,
            header::COMMAND,
            (command - Command::INTX_DISABLE).bits(),
        );
    }
}

/// Sets Command.Interrupt Disable: the function stops asserting INTx (its line is being
/// taken away).
pub fn silence_intx<C: ConfigSpace + ?Sized>(config: &mut C, bdf: Bdf) {
    let command = Command::from_bits_retain(config.read16(bdf, header::COMMAND));
    config.write16(
        bdf,
        header::COMMAND,
        (command | Command::INTX_DISABLE).bits(),
    );
}
