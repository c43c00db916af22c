//! Filtered config access for a function's owner. A table says, per register of the type 0
//! header and of each capability, which bits the owner may change (`writable`), which are
//! write-1-to-clear status bits it may clear (`clear`), and which read-only bits a write may
//! carry any value for (`ignored`); any other bit is the server's. A write that would change a
//! server-owned bit, or touches bytes no table entry covers (device-specific space, unknown
//! capabilities, MSI/MSI-X/SR-IOV/ACS control), is denied whole, reported through a logging
//! callback, and writes nothing. Reads are allowed everywhere in the 4 KiB.

use crate::capability::Capabilities;
use crate::function::FunctionInfo;
use crate::registers::{header, pcie, power_management, type0, Command, Status};
use crate::{AccessWidth, ConfigSpace};
use core::fmt;
use pci_api::{Bdf, PciError};

/// One register's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterRule {
    /// Register name, as logged.
    pub name: &'static str,
    /// Absolute offset.
    pub offset: u16,
    /// Size in bytes (1, 2 or 4).
    pub size: u8,
    /// Bits the owner may set or clear.
    pub writable: u32,
    /// RW1C bits the owner may clear.
    pub clear: u32,
    /// Read-only bits whose written value does not matter.
    pub ignored: u32,
}

const fn rule(
    name: &'static str,
    offset: u16,
    size: u8,
    writable: u32,
    clear: u32,
    ignored: u32,
) -> RegisterRule {
    RegisterRule {
        name,
        offset,
        size,
        writable,
        clear,
        ignored,
    }
}

/// Command bits the owner controls: I/O, memory, bus master, INTx disable.
const OWNER_COMMAND: u16 = Command::IO_SPACE
    .union(Command::MEMORY_SPACE)
    .union(Command::BUS_MASTER)
    .union(Command::INTX_DISABLE)
    .bits();

/// The type 0 header rules (PCIe Base spec 6.0 section 7.5.1.1/7.5.1.2).
const HEADER_RULES: [RegisterRule; 21] = [
    rule("vendor ID", header::VENDOR_ID, 2, 0, 0, 0),
    rule("device ID", header::DEVICE_ID, 2, 0, 0, 0),
    rule("command", header::COMMAND, 2, OWNER_COMMAND as u32, 0, 0),
    rule(
        "status",
        header::STATUS,
        2,
        0,
        Status::RW1C.bits() as u32,
        !(Status::RW1C.bits() as u32) & 0xffff,
    ),
    rule("revision/class", header::REVISION, 4, 0, 0, 0),
    rule("cache line size", header::CACHE_LINE_SIZE, 1, 0xff, 0, 0),
    rule("latency timer", header::LATENCY_TIMER, 1, 0xff, 0, 0),
    rule("header type", header::HEADER_TYPE, 1, 0, 0, 0),
    rule("BIST", header::BIST, 1, 0, 0, 0),
    rule("BAR0", 0x10, 4, 0xffff_ffff, 0, 0),
    rule("BAR1", 0x14, 4, 0xffff_ffff, 0, 0),
    rule("BAR2", 0x18, 4, 0xffff_ffff, 0, 0),
    rule("BAR3", 0x1c, 4, 0xffff_ffff, 0, 0),
    rule("BAR4", 0x20, 4, 0xffff_ffff, 0, 0),
    rule("BAR5", 0x24, 4, 0xffff_ffff, 0, 0),
    rule("CardBus CIS", 0x28, 4, 0, 0, 0),
    rule("subsystem IDs", type0::SUBSYSTEM_VENDOR_ID, 4, 0, 0, 0),
    rule("expansion ROM", type0::EXPANSION_ROM, 4, 0xffff_ffff, 0, 0),
    rule(
        "capabilities pointer",
        header::CAPABILITIES_POINTER,
        4,
        0,
        0,
        0xffff_ff00,
    ),
    rule("reserved 0x38", 0x38, 4, 0, 0, 0xffff_ffff),
    rule(
        "interrupt line/pin/grant/latency",
        header::INTERRUPT_LINE,
        4,
        0xff,
        0,
        0,
    ),
];

/// Most rules for one function.
const MAX_RULES: usize = 64;

/// The rule table of one function: header plus its capabilities.
#[derive(Clone, Debug)]
pub struct RuleTable {
    rules: heapless::Vec<RegisterRule, MAX_RULES>,
}

impl RuleTable {
    /// Builds the table for `function`.
    pub fn for_function(function: &FunctionInfo) -> RuleTable {
        let mut table = RuleTable {
            rules: heapless::Vec::new(),
        };
        for header_rule in HEADER_RULES {
            table.add(header_rule);
        }
        table.add_capabilities(&function.capabilities);
        table
    }

    fn add(&mut self, new: RegisterRule) {
        let _ = self.rules.push(new);
    }

    fn add_capabilities(&mut self, capabilities: &Capabilities) {
        // Standard capability headers (ID, next pointer) are the server's.
        for entry in &capabilities.standard {
            self.add(rule("capability header", entry.offset, 2, 0, 0, 0));
        }
        for entry in &capabilities.extended {
            self.add(rule("extended capability header", entry.offset, 4, 0, 0, 0));
        }
        if let Some(cap) = capabilities.power_management {
            let o = cap.offset;
            self.add(rule(
                "PM capabilities",
                o + power_management::CAPABILITIES,
                2,
                0,
                0,
                0,
            ));
            self.add(rule(
                "PM control/status",
                o + power_management::CONTROL_STATUS,
                2,
                u32::from(power_management::POWER_STATE_MASK | power_management::PME_ENABLE),
                u32::from(power_management::PME_STATUS),
                0x7efc,
            ));
            self.add(rule("PM bridge extensions/data", o + 6, 2, 0, 0, 0));
        }
        if let Some(cap) = capabilities.pcie {
            let o = cap.offset;
            self.add(rule(
                "PCIe capabilities",
                o + pcie::CAPABILITIES,
                2,
                0,
                0,
                0,
            ));
            self.add(rule(
                "PCIe device capabilities",
                o + pcie::DEVICE_CAPABILITIES,
                4,
                0,
                0,
                0,
            ));
            // Error reporting enables, relaxed ordering, extended tag, no snoop, max read
            // request size; max payload size and Initiate FLR stay the server's.
            self.add(rule(
                "PCIe device control",
                o + pcie::DEVICE_CONTROL,
                2,
                0x791f,
                0,
                0,
            ));
            self.add(rule(
                "PCIe device status",
                o + pcie::DEVICE_STATUS,
                2,
                0,
                0x000f,
                0xfff0,
            ));
            self.add(rule(
                "PCIe link capabilities",
                o + pcie::LINK_CAPABILITIES,
                4,
                0,
                0,
                0,
            ));
            self.add(rule(
                "PCIe link control",
                o + pcie::LINK_CONTROL,
                2,
                0,
                0,
                0,
            ));
            self.add(rule(
                "PCIe link status",
                o + pcie::LINK_STATUS,
                2,
                0,
                0xc000,
                0x3fff,
            ));
        }
        if let Some(cap) = capabilities.pcie.filter(|cap| cap.version >= 2) {
            let o = cap.offset;
            self.add(rule("PCIe slot capabilities", o + 0x14, 4, 0, 0, 0));
            self.add(rule(
                "PCIe slot control/status",
                o + pcie::SLOT_CONTROL,
                4,
                0,
                0,
                0,
            ));
            self.add(rule(
                "PCIe root control",
                o + pcie::ROOT_CONTROL,
                4,
                0,
                0,
                0,
            ));
            self.add(rule("PCIe root status", o + 0x20, 4, 0, 0, 0));
            {
                self.add(rule(
                    "PCIe device capabilities 2",
                    o + pcie::DEVICE_CAPABILITIES_2,
                    4,
                    0,
                    0,
                    0,
                ));
                // Completion timeout value and disable, IDO, LTR; ARI forwarding, atomics
                // and OBFF stay the server's.
                self.add(rule(
                    "PCIe device control 2",
                    o + pcie::DEVICE_CONTROL_2,
                    2,
                    0x071f,
                    0,
                    0,
                ));
                self.add(rule("PCIe device status 2", o + 0x2a, 2, 0, 0, 0xffff));
                self.add(rule("PCIe link capabilities 2", o + 0x2c, 4, 0, 0, 0));
                self.add(rule(
                    "PCIe link control/status 2",
                    o + pcie::LINK_CONTROL_2,
                    4,
                    0,
                    0,
                    0,
                ));
                self.add(rule("PCIe slot registers 2", o + 0x34, 4, 0, 0, 0));
                self.add(rule("PCIe slot control/status 2", o + 0x38, 4, 0, 0, 0));
            }
        }
        if let Some(offset) = capabilities.aer {
            self.add(rule(
                "AER uncorrectable status",
                offset + 0x04,
                4,
                0,
                0xffff_ffff,
                0,
            ));
            self.add(rule(
                "AER uncorrectable mask",
                offset + 0x08,
                4,
                0xffff_ffff,
                0,
                0,
            ));
            self.add(rule(
                "AER uncorrectable severity",
                offset + 0x0c,
                4,
                0xffff_ffff,
                0,
                0,
            ));
            self.add(rule(
                "AER correctable status",
                offset + 0x10,
                4,
                0,
                0xffff_ffff,
                0,
            ));
            self.add(rule(
                "AER correctable mask",
                offset + 0x14,
                4,
                0xffff_ffff,
                0,
                0,
            ));
            self.add(rule("AER capabilities/control", offset + 0x18, 4, 0, 0, 0));
            for log in [0x1cu16, 0x20, 0x24, 0x28] {
                self.add(rule("AER header log", offset + log, 4, 0, 0, 0xffff_ffff));
            }
        }
        if let Some(serial) = capabilities
            .extended
            .iter()
            .find(|e| e.id == crate::registers::extended_capability_id::DEVICE_SERIAL_NUMBER)
        {
            self.add(rule("device serial number", serial.offset + 4, 4, 0, 0, 0));
            self.add(rule(
                "device serial number (high)",
                serial.offset + 8,
                4,
                0,
                0,
                0,
            ));
        }
        // MSI, MSI-X (control, table, PBA), ACS, ARI, SR-IOV, AF and vendor-specific
        // capabilities have no rules: only the server writes them.
    }

    /// The rule covering byte `offset`.
    pub fn rule_at(&self, offset: u16) -> Option<&RegisterRule> {
        self.rules
            .iter()
            .find(|r| offset >= r.offset && offset < r.offset + u16::from(r.size))
    }

    /// Names the register at `offset` for error messages: a rule's name, or the capability
    /// that holds the offset.
    fn name_at(&self, offset: u16, function: &FunctionInfo) -> &'static str {
        if let Some(found) = self.rule_at(offset) {
            return found.name;
        }
        let capabilities = &function.capabilities;
        let within =
            |start: u16, length: u16| offset >= start && offset < start.saturating_add(length);
        if capabilities
            .msi
            .is_some_and(|c| within(c.offset, c.length()))
        {
            return "MSI capability (server-owned)";
        }
        if capabilities.msix.is_some_and(|c| within(c.offset, 12)) {
            return "MSI-X capability (server-owned)";
        }
        if capabilities.sriov.is_some_and(|c| within(c.offset, 0x40)) {
            return "SR-IOV capability (server-owned)";
        }
        if capabilities.acs.is_some_and(|c| within(c.offset, 8)) {
            return "ACS capability (server-owned)";
        }
        if capabilities.ari.is_some_and(|c| within(c.offset, 8)) {
            return "ARI capability (server-owned)";
        }
        if capabilities
            .advanced_features
            .is_some_and(|c| within(c.offset, 6))
        {
            return "Advanced Features capability (server-owned)";
        }
        "device-specific register"
    }
}

/// A denied write, as reported to the logging callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeniedWrite {
    /// The function.
    pub bdf: Bdf,
    /// The first register that refused.
    pub register: &'static str,
    /// Offset of the write.
    pub offset: u16,
    /// Width of the write.
    pub width: AccessWidth,
    /// Value written.
    pub value: u32,
}

impl fmt::Display for DeniedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pci: denied config write bdf={} offset={:#05x} width={} value={:#x} register={}",
            self.bdf,
            self.offset,
            self.width.bytes(),
            self.value,
            self.register
        )
    }
}

/// Why a filtered access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// Offset not aligned to the width.
    Misaligned {
        /// Offset.
        offset: u16,
    },
    /// Access ends beyond 4 KiB.
    OutOfRange {
        /// Offset.
        offset: u16,
    },
    /// The write would change bits the owner may not change.
    WriteDenied(DeniedWrite),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Misaligned { offset } => {
                write!(f, "config access at {offset:#x} misaligned")
            }
            FilterError::OutOfRange { offset } => {
                write!(f, "config access at {offset:#x} beyond 4 KiB")
            }
            FilterError::WriteDenied(denied) => write!(f, "write denied: {}", denied.register),
        }
    }
}

impl From<FilterError> for PciError {
    fn from(error: FilterError) -> PciError {
        match error {
            FilterError::Misaligned { .. } => PciError::MisalignedAccess,
            FilterError::OutOfRange { .. } => PciError::OffsetOutOfRange,
            FilterError::WriteDenied(_) => PciError::WriteDenied,
        }
    }
}

fn check_access(offset: u16, width: AccessWidth) -> Result<(), FilterError> {
    if !offset.is_multiple_of(width.bytes()) {
        return Err(FilterError::Misaligned { offset });
    }
    if !width.fits(offset) {
        return Err(FilterError::OutOfRange { offset });
    }
    Ok(())
}

/// A filtered read: any aligned, in-range register.
pub fn filtered_read<C: ConfigSpace + ?Sized>(
    config: &C,
    bdf: Bdf,
    offset: u16,
    width: AccessWidth,
) -> Result<u32, FilterError> {
    check_access(offset, width)?;
    Ok(config.read(bdf, offset, width))
}

/// A filtered write: checked byte by byte against `function`'s rule table; on denial,
/// `log` is called and nothing is written.
pub fn filtered_write<C: ConfigSpace + ?Sized>(
    config: &mut C,
    function: &FunctionInfo,
    offset: u16,
    width: AccessWidth,
    value: u32,
    log: &mut dyn FnMut(&DeniedWrite),
) -> Result<(), FilterError> {
    check_access(offset, width)?;
    let value = value & width.value_mask();
    let table = RuleTable::for_function(function);
    let current = config.read(function.bdf, offset, width);
    let mut outgoing = 0u32;
    for byte in 0..width.bytes() {
        let at = offset + byte;
        let shift = 8 * u32::from(byte);
        let new = (value >> shift) & 0xff;
        let old = (current >> shift) & 0xff;
        let deny = |register: &'static str| DeniedWrite {
            bdf: function.bdf,
            register,
            offset,
            width,
            value,
        };
        let Some(found) = table.rule_at(at) else {
            let denied = deny(table.name_at(at, function));
            log(&denied);
            return Err(FilterError::WriteDenied(denied));
        };
        let lane = 8 * u32::from(at - found.offset);
        let writable = (found.writable >> lane) & 0xff;
        let clear = (found.clear >> lane) & 0xff;
        let ignored = (found.ignored >> lane) & 0xff;
        let protected = !(writable | clear | ignored) & 0xff;
        // RW1C bits read back as set: writing the read value back would clear them, so for
        // clear bits only a written 1 is acted on; protected bits must keep their value.
        let old_protected = old & !clear;
        if (new ^ old_protected) & protected != 0 {
            let denied = deny(found.name);
            log(&denied);
            return Err(FilterError::WriteDenied(denied));
        }
        let byte_out = (old & protected & !clear) | (new & writable) | (new & clear);
        outgoing |= byte_out << shift;
    }
    config.write(function.bdf, offset, width, outgoing);
    Ok(())
}
