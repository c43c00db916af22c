//! What the kernel hands the root task (init) at boot: fixed capability selectors, fixed
//! addresses in init's address space, and a read-only boot-information page listing every boot
//! capability with what it covers. Init reads this page instead of parsing anything itself.
//!
//! Init's address space at entry:
//! - its ELF segments at their link addresses (user programs link at [`USER_IMAGE_BASE`]);
//! - a stack of [`INIT_STACK_SIZE`] bytes ending at [`INIT_STACK_TOP`] (RSP = top);
//! - its UTCB (message buffer) at [`INIT_UTCB`];
//! - the boot-information page ([`BootInfo`]) at [`BOOT_INFO_ADDRESS`], read-only.
//!
//! Registers at entry: RDI = [`BOOT_INFO_ADDRESS`], everything else zero but RSP and RIP.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Where user programs are linked (`.cargo/config.toml`: `--image-base`).
pub const USER_IMAGE_BASE: u64 = 0x4000_0000;
/// Init's boot-information page.
pub const BOOT_INFO_ADDRESS: u64 = 0x7f00_0000_0000;
/// Init's UTCB page.
pub const INIT_UTCB: u64 = 0x7f00_0000_1000;
/// Top of init's stack (the stack grows down from here).
pub const INIT_STACK_TOP: u64 = 0x7f00_0010_0000;
/// Size of init's stack.
pub const INIT_STACK_SIZE: u64 = 64 * 1024;

/// Capability selectors in init's table at entry.
pub mod selector {
    /// Init's own protection domain (every right, including `SYSTEM`).
    pub const SELF_DOMAIN: u32 = 0;
    /// Init's own thread.
    pub const SELF_THREAD: u32 = 1;
    /// A notification the kernel signals when a thread of a domain init created faults (bit 0).
    pub const FAULT_NOTIFICATION: u32 = 2;
    /// Every I/O port (0..65536).
    pub const IO_PORTS: u32 = 3;
    /// Every interrupt line (GSIs of all IOAPICs, then MSI lines).
    pub const INTERRUPTS: u32 = 4;
    /// First selector of the listed boot capabilities ([`super::BootInfo::capabilities`]).
    pub const FIRST_LISTED: u32 = 16;
    /// First selector init may use freely.
    pub const FIRST_FREE: u32 = 128;
}

/// By convention every domain init starts finds its own thread at this selector, its own
/// domain at [`selector::SELF_DOMAIN`], and its parent's portal at [`PARENT_PORTAL`].
pub const PARENT_PORTAL: u32 = 2;

/// What a listed boot capability is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BootCapabilityKind {
    /// A boot module (read-only memory object): a program or the system description.
    Module = 1,
    /// Free RAM init may carve memory objects from (read, write, execute, DMA-map, retype).
    Ram = 2,
    /// Device MMIO (memory object of kind DeviceMmio): non-RAM physical ranges below 4 GiB.
    DeviceMmio = 3,
    /// A firmware table, read-only (named after it, e.g. `acpi-dmar`): the pages holding it;
    /// the table starts at `base + (table address & 0xfff)` and is `length` bytes long.
    Firmware = 4,
}

impl BootCapabilityKind {
    /// Decodes a raw kind.
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Module),
            2 => Some(Self::Ram),
            3 => Some(Self::DeviceMmio),
            4 => Some(Self::Firmware),
            _ => None,
        }
    }
}

/// One listed boot capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootCapability {
    /// Where it is in init's table.
    pub selector: u32,
    /// A [`BootCapabilityKind`].
    pub kind: u32,
    /// Physical base (page-aligned).
    pub base: u64,
    /// Size in bytes (a multiple of the page size).
    pub size: u64,
    /// Exact content length for modules (the file size); equal to `size` otherwise.
    pub length: u64,
    /// The module's command line (first word = name), NUL-padded; empty for other kinds.
    pub name: [u8; 48],
}

impl BootCapability {
    /// The name as text (up to the first NUL), or "" if it is not UTF-8.
    pub fn name(&self) -> &str {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..end]).unwrap_or("")
    }
}

/// Most listed boot capabilities.
pub const MAX_BOOT_CAPABILITIES: usize = 40;
/// `BootInfo::magic`.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"SLBOOT01");

/// The boot-information page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    pub magic: u64,
    /// CPUs brought up (their indices are 0..cpus; init's domain owns all of them).
    pub cpus: u32,
    /// Number of valid entries in `capabilities`.
    pub capability_count: u32,
    /// Physical ECAM base of PCI segment 0 (0 if there is none), and its bus range.
    pub ecam_base: u64,
    pub ecam_start_bus: u32,
    pub ecam_end_bus: u32,
    /// Physical base of the first VT-d unit (0 if there is none).
    pub dmar_unit: u64,
    /// Physical address and length of the ACPI DMAR table (0 if there is none); the pages
    /// holding it are the listed `Firmware` capability named `acpi-dmar`.
    pub dmar_table: u64,
    pub dmar_length: u64,
    /// Number of GSIs (interrupt lines below the MSI lines).
    pub gsi_count: u32,
    /// First interrupt line usable for MSIs.
    pub first_msi_line: u32,
    /// The kernel command line (NUL-padded): flags meant for init start with `init.`.
    pub kernel_cmdline: [u8; 256],
    pub capabilities: [BootCapability; MAX_BOOT_CAPABILITIES],
}

const _: () = assert!(core::mem::size_of::<BootInfo>() <= 4096);

impl BootInfo {
    /// The valid entries, or none if the page is malformed.
    pub fn listed(&self) -> &[BootCapability] {
        if self.magic != BOOT_INFO_MAGIC {
            return &[];
        }
        let count = (self.capability_count as usize).min(MAX_BOOT_CAPABILITIES);
        &self.capabilities[..count]
    }

    /// The kernel command line as text (up to the first NUL), or "" if it is not UTF-8.
    pub fn cmdline(&self) -> &str {
        let end = self
            .kernel_cmdline
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.kernel_cmdline.len());
        core::str::from_utf8(&self.kernel_cmdline[..end]).unwrap_or("")
    }

    /// Whether the kernel command line carries the word `flag` (e.g. `init.misbehave`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.cmdline().split_whitespace().any(|word| word == flag)
    }

    /// The first listed module whose name (first word of its command line) is `name`.
    pub fn module(&self, name: &str) -> Option<&BootCapability> {
        self.listed().iter().find(|c| {
            c.kind == BootCapabilityKind::Module as u32
                && c.name().split_whitespace().next() == Some(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn lists_only_valid_entries_and_finds_modules_by_name() {
        let mut info = BootInfo::new_zeroed();
        assert!(info.listed().is_empty(), "no magic, nothing listed");
        info.magic = BOOT_INFO_MAGIC;
        info.capability_count = 1000;
        assert_eq!(
            info.listed().len(),
            MAX_BOOT_CAPABILITIES,
            "count is clamped"
        );
        info.capability_count = 2;
        info.capabilities[0].kind = BootCapabilityKind::Module as u32;
        info.capabilities[0].name[..19].copy_from_slice(b"pci-server --quiet\0");
        info.capabilities[1].kind = BootCapabilityKind::Ram as u32;
        assert_eq!(info.module("pci-server").map(|c| c.kind), Some(1));
        assert!(info.module("pci").is_none());
        info.kernel_cmdline[..26].copy_from_slice(b"exit=qemu init.misbehave x");
        assert!(info.has_flag("init.misbehave"));
        assert!(!info.has_flag("init"));
    }
}
