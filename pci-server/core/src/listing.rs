//! The boot listing (also served to `ctl`): like `lspci -v` plus what passthrough needs, one
//! block per function: BDF, vendor:device, class, BARs with sizes, capabilities, IOMMU group,
//! DMA aliases, reset method, owner.

use crate::alias::dma_aliases;
use crate::bar::{Bar, BarKind};
use crate::capability::AcsFlags;
use crate::function::{FunctionInfo, HeaderKind};
use crate::inventory::Inventory;
use crate::ownership::Ownership;
use crate::registers::extended_capability_id;
use crate::reset::reset_method;
use core::fmt;

/// A size with a binary unit: `256M`, `16K`, `128`.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (unit, suffix) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{}", self.0 / unit, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

struct BarLine<'a>(&'a Bar);

impl fmt::Display for BarLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bar = self.0;
        let kind = match bar.kind {
            BarKind::Memory32 => "mem32",
            BarKind::Memory64 => "mem64",
            BarKind::MemoryBelow1M => "mem1M",
            BarKind::Io => "io",
            BarKind::ExpansionRom => "rom",
        };
        if bar.kind == BarKind::ExpansionRom {
            write!(f, "ROM: {:#x} size {}", bar.address, Size(bar.size))
        } else {
            write!(
                f,
                "BAR{}: {}{} {:#x} size {}",
                bar.index,
                kind,
                if bar.prefetchable { " pref" } else { "" },
                bar.address,
                Size(bar.size)
            )
        }
    }
}

fn extended_name(id: u16) -> &'static str {
    match id {
        extended_capability_id::AER => "AER",
        extended_capability_id::VIRTUAL_CHANNEL => "VC",
        extended_capability_id::DEVICE_SERIAL_NUMBER => "DSN",
        extended_capability_id::POWER_BUDGETING => "PowerBudget",
        extended_capability_id::VENDOR_SPECIFIC => "VSEC",
        extended_capability_id::ACS => "ACS",
        extended_capability_id::ARI => "ARI",
        extended_capability_id::SRIOV => "SR-IOV",
        extended_capability_id::LTR => "LTR",
        extended_capability_id::L1_SUBSTATES => "L1SS",
        _ => "ext",
    }
}

struct CapabilityLine<'a>(&'a FunctionInfo);

impl fmt::Display for CapabilityLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0.capabilities;
        f.write_str("caps:")?;
        if let Some(pm) = c.power_management {
            write!(
                f,
                " PM(NoSoftRst{})",
                if pm.no_soft_reset { "+" } else { "-" }
            )?;
        }
        if let Some(msi) = c.msi {
            write!(
                f,
                " MSI({}{} vec{})",
                if msi.address_64 { "64-bit, " } else { "" },
                msi.max_vectors(),
                if msi.per_vector_mask {
                    ", maskable"
                } else {
                    ""
                }
            )?;
        }
        if let Some(msix) = c.msix {
            write!(
                f,
                " MSI-X({} vec, table BAR{}+{:#x}, PBA BAR{}+{:#x})",
                msix.table_size, msix.table_bir, msix.table_offset, msix.pba_bir, msix.pba_offset
            )?;
        }
        if let Some(pcie) = c.pcie {
            write!(
                f,
                " PCIe({}, FLR{})",
                pcie.port_type.name(),
                if pcie.flr { "+" } else { "-" }
            )?;
        }
        if let Some(af) = c.advanced_features {
            write!(f, " AF(FLR{})", if af.flr { "+" } else { "-" })?;
        }
        for _ in 0..c.vendor_specific {
            f.write_str(" VendorSpecific")?;
        }
        for entry in &c.extended {
            match entry.id {
                extended_capability_id::ACS => {
                    if let Some(acs) = c.acs {
                        let on =
                            |flag: AcsFlags| if acs.control.contains(flag) { "+" } else { "-" };
                        write!(
                            f,
                            " ACS(SV{} RR{} CR{} UF{})",
                            on(AcsFlags::SOURCE_VALIDATION),
                            on(AcsFlags::REQUEST_REDIRECT),
                            on(AcsFlags::COMPLETION_REDIRECT),
                            on(AcsFlags::UPSTREAM_FORWARDING)
                        )?;
                    }
                }
                extended_capability_id::SRIOV => {
                    if let Some(sriov) = c.sriov {
                        write!(
                            f,
                            " SR-IOV(TotalVFs {}, NumVFs {}, offset {}, stride {}, VF {:04x}{})",
                            sriov.total_vfs,
                            sriov.num_vfs,
                            sriov.first_vf_offset,
                            sriov.vf_stride,
                            sriov.vf_device_id,
                            if sriov.vfs_enabled { ", enabled" } else { "" }
                        )?;
                    }
                }
                extended_capability_id::DEVICE_SERIAL_NUMBER => {
                    if let Some(serial) = c.serial_number {
                        write!(f, " DSN({serial:016x})")?;
                    }
                }
                id => write!(f, " {}", extended_name(id))?,
            }
        }
        for issue in &c.issues {
            write!(f, " [malformed: {issue:?}]")?;
        }
        Ok(())
    }
}

/// One function's block.
pub struct FunctionListing<'a> {
    /// The inventory.
    pub inventory: &'a Inventory,
    /// Ownership, when known.
    pub ownership: Option<&'a Ownership>,
    /// The function.
    pub function: &'a FunctionInfo,
}

impl fmt::Display for FunctionListing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let function = self.function;
        writeln!(
            f,
            "{:04x}:{} {:04x}:{:04x} {} rev {:02x}",
            self.inventory.segment(),
            function.bdf,
            function.vendor_id,
            function.device_id,
            function.class,
            function.revision
        )?;
        let header = match function.header {
            HeaderKind::Endpoint => "endpoint",
            HeaderKind::Bridge => "bridge",
            HeaderKind::CardBus => "cardbus",
            HeaderKind::Unknown(_) => "unknown",
        };
        write!(f, "    header: {header}")?;
        if function.multi_function {
            f.write_str(", multi-function")?;
        }
        if let Some(pf) = function.physical_function {
            write!(f, ", virtual function of {pf}")?;
        }
        if let Some(numbers) = function.bus_numbers {
            write!(
                f,
                ", buses {:02x}-{:02x}",
                numbers.secondary, numbers.subordinate
            )?;
        }
        writeln!(f)?;
        for bar in function.bars.bars.iter().chain(function.bars.rom.iter()) {
            writeln!(f, "    {}", BarLine(bar))?;
        }
        for issue in &function.bars.issues {
            writeln!(f, "    BAR problem: {issue}")?;
        }
        writeln!(f, "    {}", CapabilityLine(function))?;
        match self.inventory.group_of(function.bdf) {
            Some(group) => write!(f, "    iommu group: {group}")?,
            None => f.write_str("    iommu group: ?")?,
        }
        let aliases = dma_aliases(self.inventory, function.bdf);
        if aliases.len() > 1 {
            f.write_str(", dma aliases:")?;
            for alias in aliases.iter().skip(1) {
                write!(f, " {}", alias.requester_id)?;
            }
        }
        writeln!(f)?;
        write!(
            f,
            "    reset: {}",
            reset_method(self.inventory, function.bdf)
        )?;
        match self.ownership.and_then(|o| o.state(function.bdf)) {
            Some(state) => writeln!(f, ", owner: {state}"),
            None if function.is_bridge() => writeln!(f, ", owner: pci-server (bridge)"),
            None => writeln!(f, ", owner: unknown"),
        }
    }
}

/// The whole listing.
pub struct Listing<'a> {
    /// The inventory.
    pub inventory: &'a Inventory,
    /// Ownership, when known.
    pub ownership: Option<&'a Ownership>,
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for function in self.inventory.functions() {
            write!(
                f,
                "{}",
                FunctionListing {
                    inventory: self.inventory,
                    ownership: self.ownership,
                    function,
                }
            )?;
        }
        for error in self.inventory.errors() {
            writeln!(f, "topology error: {error}")?;
        }
        Ok(())
    }
}
