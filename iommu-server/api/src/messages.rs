//! The `#[repr(C)]` request and reply messages (zerocopy, no implicit padding).
//!
//! Reserved fields must be zero; [`crate::Request::decode`] checks them.

use crate::{Bdf, HostPhys, IoVirt};
use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// How many DMA aliases one attach/detach message carries besides the device itself.
pub const MAX_ALIASES: usize = 8;

/// The interrupt address range that is never mapped into a DMA domain (VT-d spec 3.14: DMA
/// writes to 0xFEEx_xxxx are interrupt requests).
pub const MSI_WINDOW_BASE: u64 = 0xfee0_0000;
/// Last byte of the interrupt address range.
pub const MSI_WINDOW_LAST: u64 = 0xfeef_ffff;

bitflags! {
    /// Access rights of delegated memory and of a mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u32 {
        /// The device may read (DMA from memory).
        const READ = 1 << 0;
        /// The device may write (DMA into memory).
        const WRITE = 1 << 1;
    }
}

/// Memory the kernel validated and delegated to the server: a host-physical range and the
/// rights the client holds on it. The server learns it from the kernel, never from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelegatedMemory {
    /// First byte (4 KiB aligned).
    pub base: HostPhys,
    /// Length in bytes (multiple of 4 KiB).
    pub size: u64,
    /// What the client may let a device do with it.
    pub rights: Rights,
}

/// Every reply starts with this.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ReplyHeader {
    /// `0` on success, else an [`crate::IommuError`] code.
    pub status: u32,
    /// Zero.
    pub reserved: u32,
}

/// [`crate::Operation::CreateDomain`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CreateDomainRequest {
    /// Zero (no flags defined yet).
    pub flags: u32,
}

/// Reply to [`crate::Operation::CreateDomain`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CreateDomainReply {
    /// The new domain's handle.
    pub domain: u32,
    /// How many bits of I/O virtual address the domain translates (39, 48 or 57).
    pub address_width: u32,
}

/// [`crate::Operation::DestroyDomain`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DestroyDomainRequest {
    /// The domain handle.
    pub domain: u32,
}

/// [`crate::Operation::Map`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct MapRequest {
    /// The domain handle.
    pub domain: u32,
    /// Handle of the delegated memory (the capability the client transferred).
    pub memory: u32,
    /// Offset into the delegated memory (4 KiB aligned).
    pub offset: u64,
    /// Where the device sees it (4 KiB aligned).
    pub iova: IoVirt,
    /// Length in bytes (multiple of 4 KiB).
    pub size: u64,
    /// [`Rights`] bits; must not exceed the delegated rights.
    pub rights: u32,
    /// Zero.
    pub reserved: u32,
}

/// [`crate::Operation::Unmap`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct UnmapRequest {
    /// The domain handle.
    pub domain: u32,
    /// Zero.
    pub reserved: u32,
    /// Start of the mapping.
    pub iova: IoVirt,
    /// Length of the mapping.
    pub size: u64,
}

/// [`crate::Operation::AttachDevice`] and [`crate::Operation::DetachDevice`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DeviceRequest {
    /// The domain handle.
    pub domain: u32,
    /// The device's requester ID.
    pub device: Bdf,
    /// How many entries of `aliases` are used (at most [`MAX_ALIASES`]).
    pub alias_count: u16,
    /// Requester IDs the device's DMA may carry besides its own (e.g. a PCIe-to-PCI bridge).
    /// Unused entries must be zero.
    pub aliases: [Bdf; MAX_ALIASES],
}

/// [`crate::Operation::AllocateIrte`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct AllocateIrteRequest {
    /// Zero.
    pub reserved: u32,
}

/// Reply to [`crate::Operation::AllocateIrte`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IrteReply {
    /// The IRTE index (the interrupt "handle" of VT-d spec 5.1.2.2).
    pub handle: u16,
    /// Zero.
    pub reserved: u16,
}

/// [`crate::Operation::FreeIrte`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IrteRequest {
    /// The IRTE index.
    pub handle: u16,
    /// Zero.
    pub reserved: u16,
}

/// [`crate::Operation::AllocateIoapicIrte`]: an IRTE for IOAPIC pin `gsi`, on behalf of the
/// owner the pci-server routes the pin to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IoapicIrteRequest {
    /// The global system interrupt (IOAPIC pin; a single IOAPIC with GSI base 0).
    pub gsi: u32,
    /// Portal id of the owner whose device's INTx the pin carries (logged and kept with the
    /// entry; the pci-server checked the ownership).
    pub owner: u32,
}

/// Reply to [`crate::Operation::AllocateIoapicIrte`]: the programmed entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IoapicIrteReply {
    /// The IRTE index to give the kernel's `interrupt_remap`.
    pub handle: u16,
    /// The IOAPIC's source id the entry verifies (SVT 1, SQ 0; from the DMAR device scope).
    pub source_id: Bdf,
    /// The entry's vector: the line's (0x30 + GSI).
    pub vector: u8,
    /// The DMAR unit whose table holds the entry.
    pub unit: u8,
    /// Zero.
    pub reserved: u16,
}

/// Reply to [`crate::Operation::QueryIrte`]: what a (present) remapped-format IRTE says
/// (VT-d spec 9.10), and whose interrupt line it delivers to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct IrteStatusReply {
    /// Portal id of the client whose interrupt line the entry delivers to (only the client
    /// that allocated an entry may program it, and only for its own line); `0` when the entry
    /// is not present or delivers to no client's line.
    pub owner: u32,
    /// 1 if the entry is present (P), else 0 (free, or allocated and not programmed yet).
    pub present: u8,
    /// SVT: 0 none, 1 requester id (with `source_qualifier`), 2 bus range.
    pub source_validation: u8,
    /// SQ (with SVT 1).
    pub source_qualifier: u8,
    /// The vector.
    pub vector: u8,
    /// SID: the requester id, or with SVT 2 the start bus in bits 15:8 and end bus in 7:0.
    pub source_id: Bdf,
    /// Zero.
    pub reserved: u16,
}

/// [`crate::Operation::ProgramIrte`]: the fields of a remapped-format IRTE (VT-d spec 9.10).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ProgramIrteRequest {
    /// The IRTE index.
    pub handle: u16,
    /// Requester ID allowed to use the entry (SID; for bus-range validation: start bus in
    /// bits 15:8, end bus in bits 7:0).
    pub source_id: Bdf,
    /// SVT: 1 = verify requester ID with SID/SQ, 2 = verify bus range. 0 (no check) is refused.
    pub source_validation: u8,
    /// SQ: 0 compare all 16 bits, 1/2/3 ignore function bit 2, bits 2:1, bits 2:0.
    pub source_qualifier: u8,
    /// 0 fixed, 1 lowest priority (Intel SDM vol 3 11.11.2).
    pub delivery_mode: u8,
    /// 0 edge, 1 level.
    pub trigger_mode: u8,
    /// 0 physical, 1 logical.
    pub destination_mode: u8,
    /// Redirection hint (0 or 1).
    pub redirection_hint: u8,
    /// Interrupt vector, 0x10..=0xff.
    pub vector: u8,
    /// Zero.
    pub reserved: u8,
    /// Destination APIC id (xAPIC: 8 bits).
    pub destination: u32,
}

/// Reply to [`crate::Operation::ProgramIrte`]: what to write into the device's MSI/MSI-X
/// registers (remappable format, VT-d spec 5.1.5.2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct MsiMessageReply {
    /// Message address, low 32 bits.
    pub address_low: u32,
    /// Message address, high 32 bits (zero).
    pub address_high: u32,
    /// Message data.
    pub data: u32,
    /// Zero.
    pub reserved: u32,
}

/// [`crate::Operation::SubscribeFaults`] (the notification capability travels with the IPC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SubscribeFaultsRequest {
    /// The device whose faults the caller wants.
    pub device: Bdf,
    /// Zero.
    pub reserved: u16,
}

/// [`crate::Operation::DelegateMemory`] (the memory capability travels with the IPC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DelegateMemoryRequest {
    /// [`Rights`] the caller wants devices to have on it (checked against the capability).
    pub rights: u32,
    /// Zero.
    pub reserved: u32,
}

/// Reply to [`crate::Operation::DelegateMemory`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct DelegateMemoryReply {
    /// The handle map requests name the memory by.
    pub memory: u32,
    /// Zero.
    pub reserved: u32,
    /// Bytes delegated.
    pub size: u64,
}

/// [`crate::Operation::TakeFault`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct TakeFaultRequest {
    /// Zero.
    pub reserved: u32,
}

/// A DMA or interrupt remapping fault, sent to the owner of the faulting device.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct FaultReport {
    /// Requester ID of the faulting request.
    pub device: Bdf,
    /// Fault reason code (VT-d spec 7.1.3 / 7.1.4).
    pub reason: u8,
    /// 0 write, 1 read.
    pub kind: u8,
    /// Zero.
    pub reserved: u32,
    /// Page address of the faulting request (or interrupt index in bits 63:48 for interrupt
    /// remapping faults).
    pub address: u64,
}
