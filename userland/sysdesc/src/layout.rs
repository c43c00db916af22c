//! The fixed layout: header, guest and device records, constants and the built-in guest ids.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First 8 bytes of every description.
pub const MAGIC: [u8; 8] = *b"SLUICESD";
/// Layout version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Bytes of a guest name field (NUL padded; names are at most 31 bytes).
pub const GUEST_NAME_LEN: usize = 32;
/// Most guests one description may hold.
pub const MAX_GUESTS: usize = 64;
/// Most device assignment records one description may hold.
pub const MAX_DEVICES: usize = 4096;
/// Most host CPUs a description can name (the CPU mask is 64 bits).
pub const MAX_CPUS: u32 = 64;

/// Header flag: the machine has an IOMMU with interrupt remapping.
pub const FLAG_IOMMU: u32 = 1 << 0;
/// Header flag: the manifest allowed passthrough without interrupt remapping.
pub const FLAG_INSECURE_NO_IRQ_REMAP: u32 = 1 << 1;
/// All header flags this version knows.
pub const FLAG_KNOWN: u32 = FLAG_IOMMU | FLAG_INSECURE_NO_IRQ_REMAP;

/// Device flag: the function is an SR-IOV virtual function (enabled by the pci-server).
pub const DEVICE_FLAG_VIRTUAL_FUNCTION: u16 = 1 << 0;
/// Device flag: the device has no MSI/MSI-X and can only interrupt through INTx.
pub const DEVICE_FLAG_INTX_ONLY: u16 = 1 << 1;
/// All device flags this version knows.
pub const DEVICE_FLAG_KNOWN: u16 = DEVICE_FLAG_VIRTUAL_FUNCTION | DEVICE_FLAG_INTX_ONLY;

/// `GuestRecord::kernel_kind`: `kernel_id` is a [`BuiltinGuest`] id.
pub const KERNEL_KIND_BUILTIN: u32 = 1;
/// `GuestRecord::kernel_kind`: `kernel_id` is the index of a boot module (in manifest order).
pub const KERNEL_KIND_MODULE: u32 = 2;

/// The description header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: U32,
    pub header_len: U32,
    pub total_len: U32,
    pub flags: U32,
    pub guest_count: U32,
    pub guest_offset: U32,
    pub guest_record_len: U32,
    pub device_count: U32,
    pub device_offset: U32,
    pub device_record_len: U32,
    pub strings_offset: U32,
    pub strings_len: U32,
    pub name_offset: U32,
    pub name_len: U32,
    pub machine_memory: U64,
    pub machine_cpus: U32,
    pub reserved: U32,
}

/// One guest.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GuestRecord {
    /// UTF-8, NUL padded, at least one byte.
    pub name: [u8; GUEST_NAME_LEN],
    pub memory_bytes: U64,
    /// Bit n set = host CPU n is owned by this guest.
    pub cpu_mask: U64,
    pub vcpus: U32,
    /// [`KERNEL_KIND_BUILTIN`] or [`KERNEL_KIND_MODULE`].
    pub kernel_kind: U32,
    pub kernel_id: U32,
    pub cmdline_offset: U32,
    pub cmdline_len: U32,
    pub reserved: U32,
}

/// One PCI function assigned to one guest.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DeviceRecord {
    /// Host requester id: bus << 8 | device << 3 | function (PCIe Base spec 5.0 section 2.2.6.2).
    pub host_bdf: U16,
    /// Where the guest sees the function, same encoding.
    pub guest_bdf: U16,
    pub guest_index: U16,
    pub flags: U16,
    /// IOMMU group number computed by xtask (u32::MAX: unknown, bare metal).
    pub iommu_group: U32,
    pub reserved: U32,
}

/// Size of [`Header`] in bytes.
pub const HEADER_LEN: usize = core::mem::size_of::<Header>();
/// Size of [`GuestRecord`] in bytes.
pub const GUEST_RECORD_LEN: usize = core::mem::size_of::<GuestRecord>();
/// Size of [`DeviceRecord`] in bytes.
pub const DEVICE_RECORD_LEN: usize = core::mem::size_of::<DeviceRecord>();

/// Test guests built into the boot image, named `builtin:<name>` in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinGuest {
    /// Reports what it sees (CPUID, memory map, PCI devices) and exits.
    Probe,
    /// Prints a greeting with its name, CPU and memory size, then halts.
    Hello,
    /// Drives an `edu` device's DMA engine to test DMA isolation.
    DmaTest,
}

impl BuiltinGuest {
    /// Every built-in guest, in id order.
    pub const ALL: [BuiltinGuest; 3] = [Self::Probe, Self::Hello, Self::DmaTest];

    /// Stable id stored in `GuestRecord::kernel_id`.
    pub const fn id(self) -> u32 {
        match self {
            Self::Probe => 1,
            Self::Hello => 2,
            Self::DmaTest => 3,
        }
    }

    /// Name after `builtin:` in a manifest.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Hello => "hello",
            Self::DmaTest => "dma-test",
        }
    }

    /// The built-in with this id.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id() == id)
    }

    /// The built-in with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// What a guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// A test guest built into the image.
    Builtin(BuiltinGuest),
    /// The n-th kernel boot module (Linux bzImage/vmlinux), in manifest order.
    Module(u32),
}
