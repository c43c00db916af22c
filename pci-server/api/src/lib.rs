//! The pci-server's IPC interface: operations, messages, errors.
//!
//! Clients (the VMMs, `ctl`, test drivers) depend on this crate, never on the server. A request
//! is an [`Operation`] code plus the bytes of that operation's `#[repr(C)]` request struct; the
//! reply is either the operation's reply struct or a [`PciError`] code. [`decode_request`]
//! turns untrusted bytes into a typed [`Request`] without panicking.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod bdf;
mod error;
mod messages;
mod operation;

pub use bdf::{Bdf, BdfError, OwnerId};
pub use error::PciError;
pub use messages::{
    decode_request, AccessWidthCode, AssignRequest, BarReply, BarRequest, ClaimRequest,
    ConfigReadReply, ConfigReadRequest, ConfigWriteRequest, EnableVfsRequest, FunctionReply,
    FunctionRequest, IntxRouteReply, IntxRouteRequest, MsiProgramRequest, MsixReadRequest,
    MsixStructure, OwnerStateCode, ReleaseRequest, Request, ResetMethodCode,
};
pub use operation::Operation;
