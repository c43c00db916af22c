//! Every address, port and vector the probe and its VMM must agree on: the single constants
//! module of the crate (README.md lists the same values; `tests/readme.rs` checks it does).
//!
//! The guest must not depend on workspace crates, so the device facts below are copies; each
//! names the file it was copied from. When that file changes, change this one.

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPhys(pub u64);

/// An x86 I/O port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u16);

impl Port {
    /// The port `offset` above this one, or `None` past 0xffff.
    pub const fn offset(self, offset: u16) -> Option<Port> {
        match self.0.checked_add(offset) {
            Some(port) => Some(Port(port)),
            None => None,
        }
    }
}

// ---- Image layout (the VMM's loader must follow these; README.md "Loading") ----

/// The parameter block the VMM fills (see [`crate::parameters`]); one 4 KiB page in the image.
pub const PARAMETERS_ADDRESS: GuestPhys = GuestPhys(0x7000);
/// Real-mode entry point: the vCPU starts with CS.selector = 0, CS.base = 0, IP = this.
/// It is also the ELF `e_entry`.
pub const REAL_MODE_ENTRY: GuestPhys = GuestPhys(0x8000);
/// End (exclusive) of the real-mode trampoline page (16/32/64-bit boot code and the GDT).
pub const BOOT_END: GuestPhys = GuestPhys(0x9000);
/// Where the 64-bit Rust code, data, page tables and stack start.
pub const IMAGE_BASE: GuestPhys = GuestPhys(0x10_0000);
/// Every loadable byte of the image lies below this: guest RAM must cover `[0, 2 MiB)`.
pub const IMAGE_LIMIT: GuestPhys = GuestPhys(0x20_0000);
/// The probe's page tables identity-map this much (2 MiB pages): all of the 32-bit space.
pub const IDENTITY_MAP_BYTES: u64 = 4 << 30;
/// From here to [`IDENTITY_MAP_BYTES`] the identity map is uncached (PCD | PWT): device space.
pub const UNCACHED_FROM: GuestPhys = GuestPhys(0xc000_0000);

// ---- Devices (vmm-server/core/src/vmm.rs, `VmmConfig::standard`) ----

/// 16550 UART base port (COM1).
pub const UART_BASE: Port = Port(0x3f8);
/// Debug-exit port: a 32-bit OUT of the status ends the run (0 = pass).
pub const DEBUG_EXIT_PORT: Port = Port(0xf4);
/// Base of the MMIO test device's 4 KiB page.
pub const TEST_DEVICE_BASE: GuestPhys = GuestPhys(0xfe00_0000);
/// Vector of the VMM's virtual timer, injected as an external interrupt (no EOI is sent: the
/// VMM models no interrupt controller yet).
pub const TIMER_VECTOR: u8 = 0x20;

/// The MMIO test device (vmm-server/core/src/test_device.rs).
pub mod test_device {
    /// Value of the ID register: "SLTD" read as big-endian ASCII (32-bit register, the upper
    /// half of its qword reads 0).
    pub const ID: u32 = 0x534c_5444;
    /// ID register offset.
    pub const ID_OFFSET: u64 = 0x00;
    /// SCRATCH: reads back exactly the bytes written, any byte range.
    pub const SCRATCH_OFFSET: u64 = 0x08;
    /// COUNTER: a read returns the number of earlier COUNTER reads, then increments; a write
    /// sets it. Accessed only at its first byte.
    pub const COUNTER_OFFSET: u64 = 0x10;
    /// CHECKSUM: wrapping sum of every value written to DATA (read-only).
    pub const CHECKSUM_OFFSET: u64 = 0x18;
    /// DATA: a write adds the value (zero-extended from the access width) to CHECKSUM and
    /// increments WRITE_COUNT (write-only, first byte only).
    pub const DATA_OFFSET: u64 = 0x20;
    /// WRITE_COUNT: number of DATA writes (read-only).
    pub const WRITE_COUNT_OFFSET: u64 = 0x28;
    /// RESET: any write clears SCRATCH, COUNTER, CHECKSUM and WRITE_COUNT.
    pub const RESET_OFFSET: u64 = 0x30;
}

/// The VMM's CPUID policy (vmm-server/core/src/cpuid.rs, `CpuidPolicy::standard`).
pub mod cpuid {
    /// The hypervisor vendor leaf.
    pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
    /// "SluiceSluice" as EBX, ECX, EDX of the hypervisor leaf.
    pub const HYPERVISOR_SIGNATURE: [u32; 3] = [
        u32::from_le_bytes(*b"Slui"),
        u32::from_le_bytes(*b"ceSl"),
        u32::from_le_bytes(*b"uice"),
    ];
    /// CPUID.1:ECX bit 31: a hypervisor is present (set by the policy).
    pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
    /// CPUID.1:ECX.VMX (SDM Vol. 2A, CPUID, Table 3-10): hidden by the policy.
    pub const LEAF1_ECX_VMX: u32 = 1 << 5;
    /// CPUID.8000_0001:ECX.SVM (AMD APM Vol. 3, Appendix E.4.2): hidden by the policy.
    pub const EXTENDED_ECX_SVM: u32 = 1 << 2;
    /// Highest basic leaf the policy offers.
    pub const MAXIMUM_BASIC_LEAF: u32 = 0xd;
}

/// The VMM's MSR allow-list (vmm-server/core/src/msr.rs, `MsrPolicy::standard`).
pub mod msr {
    /// IA32_APIC_BASE (SDM Vol. 4, Table 2-2), read-only in the policy.
    pub const IA32_APIC_BASE: u32 = 0x1b;
    /// Its value: base 0xfee0_0000, enabled (bit 11), bootstrap processor (bit 8).
    pub const IA32_APIC_BASE_VALUE: u64 = 0xfee0_0900;
    /// IA32_PAT, writable in the policy.
    pub const IA32_PAT: u32 = 0x277;
    /// Its power-on value (SDM Vol. 3A, "PAT Initialization").
    pub const IA32_PAT_VALUE: u64 = 0x0007_0406_0007_0406;
    /// An MSR no policy emulates: reading or writing it must raise #GP(0). It lies in the
    /// hypervisor range 0x4000_0000.. outside the ranges of the VMX MSR bitmaps (SDM Vol. 3C,
    /// "MSR-Bitmap Address") and of the SVM MSR permission map (AMD APM Vol. 2 section 15.11), so the access always
    /// exits and reaches the policy.
    pub const UNKNOWN: u32 = 0x4000_00ff;
}

// The regions are ordered and disjoint, and the boot page is reachable from real mode.
const _: () = {
    assert!(PARAMETERS_ADDRESS.0 + crate::parameters::BLOCK_BYTES as u64 <= REAL_MODE_ENTRY.0);
    assert!(REAL_MODE_ENTRY.0 < BOOT_END.0);
    // Real mode with CS = 0 and DS = 0 reaches only the first 64 KiB.
    assert!(BOOT_END.0 <= 0x1_0000);
    assert!(BOOT_END.0 <= IMAGE_BASE.0);
    assert!(IMAGE_BASE.0 < IMAGE_LIMIT.0);
    assert!(TEST_DEVICE_BASE.0 >= UNCACHED_FROM.0);
    assert!(TEST_DEVICE_BASE.0 + 0x1000 <= IDENTITY_MAP_BYTES);
    assert!(UNCACHED_FROM.0.is_multiple_of(2 << 20));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_offset_without_wrapping() {
        assert_eq!(UART_BASE.offset(5), Some(Port(0x3fd)));
        assert_eq!(Port(0xffff).offset(1), None);
    }

    #[test]
    fn signature_spells_sluice_twice() {
        let mut bytes = [0u8; 12];
        for (chunk, word) in bytes.chunks_mut(4).zip(cpuid::HYPERVISOR_SIGNATURE) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        assert_eq!(&bytes, b"SluiceSluice");
    }
}
