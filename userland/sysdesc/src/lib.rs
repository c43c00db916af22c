//! The compiled system description: fixed-layout tables xtask writes and init reads at boot.
//!
//! `cargo xtask` validates a system manifest (crate `sluice-manifest`) and compiles it into
//! the bytes described here; `init` finds them as a boot module and reads them with [`parse`]
//! without parsing any text at run time. The layout is little-endian, alignment-free
//! (every field is a `zerocopy` byte-order type) and canonical:
//!
//! ```text
//! offset 0                      Header            (HEADER_LEN bytes)
//! header.guest_offset           [GuestRecord; guest_count]
//! header.device_offset          [DeviceRecord; device_count]
//! header.strings_offset         string table (UTF-8, referenced by offset/len)
//! header.total_len              end of the description
//! ```
//!
//! The parser never trusts the bytes: it checks bounds, counts, record sizes, UTF-8,
//! CPU masks (disjoint, inside the machine), indices and flags before it hands out a
//! [`Description`]. The writer ([`write`]) re-parses what it wrote, so a description that
//! [`write`] accepts always parses.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod layout;
mod parse;
mod write;

pub use error::SysdescError;
pub use layout::{
    BuiltinGuest, DeviceRecord, GuestRecord, Header, Kernel, DEVICE_FLAG_INTX_ONLY,
    DEVICE_FLAG_KNOWN, DEVICE_FLAG_VIRTUAL_FUNCTION, DEVICE_RECORD_LEN, FLAG_INSECURE_NO_IRQ_REMAP,
    FLAG_IOMMU, FLAG_KNOWN, GUEST_NAME_LEN, GUEST_RECORD_LEN, HEADER_LEN, KERNEL_KIND_BUILTIN,
    KERNEL_KIND_MODULE, MAGIC, MAX_CPUS, MAX_DEVICES, MAX_GUESTS, VERSION,
};
pub use parse::{parse, Description, GuestView};
pub use write::{encoded_len, write, DeviceSpec, GuestSpec, SystemSpec};
