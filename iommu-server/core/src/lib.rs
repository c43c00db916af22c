//! VT-d logic (DMAR, tables, invalidation, faults, interrupt remapping) behind register traits.
//!
//! Split by VT-d spec chapter (after Asterinas's module layout): [`registers`] (10.4),
//! [`dma_remapping`] (9.1, 9.3, 9.8), [`interrupt_remapping`] (5.1, 9.10), [`invalidation`]
//! (6.5), [`fault`] (7.3, 10.4.14), [`dmar`] (ACPI DMAR, chapter 8). [`unit`] drives one
//! remapping unit through [`registers::VtdRegisters`], [`units`] all of the DMAR's units; [`domain`] is the server's policy: DMA
//! domains, delegated memory, devices, quarantine. Table builders are generic over
//! [`memory::PhysMemory`] and [`memory::FrameAllocator`]; [`fake`] holds the behavioural fakes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "fake"))]
extern crate alloc;

pub mod clock;
pub mod dma_remapping;
pub mod dmar;
pub mod domain;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod fault;
pub mod interrupt_remapping;
pub mod invalidation;
pub mod memory;
pub mod registers;
pub mod unit;
pub mod units;

pub use iommu_api::{Bdf, HostPhys, IoVirt, IommuError};

/// A hardware domain identifier (DID): tags context entries and cache entries (VT-d spec 3.7,
/// 9.3). Valid values are below CAP.ND's domain count; with CM = 1, DID 0 is reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

#[cfg(test)]
mod tests;
