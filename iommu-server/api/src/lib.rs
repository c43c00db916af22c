//! The iommu-server's IPC interface: operations, messages, errors.
//!
//! Clients (the pci-server, VMMs, test drivers) depend on this crate only. A request is an
//! [`Operation`] code plus a fixed-size `#[repr(C)]` message; [`Request::decode`] turns untrusted
//! bytes into a typed request or a named [`IommuError`], never a panic. Every reply starts with a
//! [`ReplyHeader`] whose status is `0` or an [`IommuError`] code.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod address;
pub mod bridge_report;
pub mod error;
pub mod messages;
pub mod operation;
pub mod request;

pub use address::{Bdf, HostPhys, IoVirt};
pub use bridge_report::{
    BridgeBuses, BridgeReport, ReportBridgesRequest, BRIDGES_PER_REPORT, REPORT_LAST_PART,
};
pub use error::IommuError;
pub use messages::*;
pub use operation::Operation;
pub use request::Request;
