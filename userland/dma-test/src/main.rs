//! The DMA isolation test driver: a ring-3 driver for QEMU's `edu` device (1234:11e8), started
//! by init for a guest whose kernel is `builtin:dma-test`. It sets up what any passthrough
//! owner needs, through the servers only:
//!
//! 1. a DMA domain at the iommu-server, its buffer delegated and mapped at [`IOVA_BUFFER`];
//! 2. the device claimed from the pci-server (quarantine, reset, attached to its domain), its
//!    BAR 0 as a memory capability, memory decoding and bus mastering on through the filtered
//!    config interface, fault reports subscribed;
//!
//! then runs four checks and prints `dma-test: check N passed: ...` for each:
//!
//! 1. the device copies a pattern from its buffer into the device and back to another part of
//!    the buffer, and the driver reads it back;
//! 2. an IRTE for its MSI line is allocated and programmed at the iommu-server, the pci-server
//!    programs the device's MSI in remappable format, the device raises its interrupt and the
//!    driver receives it on its notification;
//! 3. the device writes to an IOVA the domain never mapped and to the host-physical address of
//!    a canary page outside the domain: both are blocked (the iommu-server logs the fault line),
//!    both fault reports reach the driver with the right requester id and page, and the canary
//!    (read through the driver's read-only mapping) is unchanged;
//! 4. the pci-server routes the device's INTx to the driver (`RouteIntx`, MSI off): the
//!    device's legacy interrupt arrives through the IOAPIC pin in remappable format (an IRTE
//!    that verifies the IOAPIC's source id); the pin stays masked until the driver
//!    acknowledges the line, and the level raised meanwhile arrives on unmask ([`intx`]).
//!
//! When its device is an Intel 82574L (QEMU's `e1000e`, 8086:10d3) instead, four checks are
//! about MSI-X (`userland/systems/msix.toml`, [`msix_checks`]); the table and pending bits are
//! read through the pci-server (`MsixRead`), whose pages the owner never gets:
//!
//! 1. the table's BAR comes only in parts without the table and PBA pages; an IRTE for its MSI
//!    line is allocated and programmed, the pci-server programs MSI-X table entry 2 with it
//!    (`ProgramMsi` kind 1); the entry reads back as the iommu-server's message, unmasked;
//!    config space says MSI-X Enable on, Function Mask off, MSI off and Interrupt Disable on;
//!    every other entry is still masked; the pending bits are readable;
//! 2. the NIC raises interrupt cause RXQ0 (ICS register), IVAR routes it to entry 2, and the
//!    MSI-X message arrives through the IRTE on the driver's notification;
//! 3. an entry beyond the table is refused with `VectorOutOfRange`, an IRTE handle nobody
//!    allocated and one allocated but never programmed with `IrteNotOwned`; entry 2 is
//!    unchanged;
//! 4. the device is released and claimed again: entry 2 reads back masked and cleared, entry 4
//!    is programmed with a new IRTE and the interrupt arrives through it.
//!
//! It ends with `dma-test: all N checks passed` (or names the failures) and reports to init as
//! its guest's end: status 0 when every check passed, else the mask of failed checks.
//!
//! Capabilities (its table at start): 0-2 as every child; 3 = the iommu-server's portal, 4 =
//! the pci-server's portal, 5 = its DMA buffer (read, write, DMA-map), 6 = the canary page
//! (read, DMA-map), 7 = a notification its MSI line is bound to (wait), 8 = that line
//! (acknowledge). Arguments: its guest index, its MSI line, the device's host BDF.
#![cfg_attr(target_os = "none", no_std, no_main)]
// On the host only the host-tested modules are built; their users are not.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

mod clients;
mod e1000e;
mod edu;
mod intx;
mod msix;
mod verdict;

#[cfg(target_os = "none")]
mod driver;
#[cfg(target_os = "none")]
mod intx_check;
#[cfg(target_os = "none")]
mod msix_checks;

/// Where the device sees the driver's buffer.
pub const IOVA_BUFFER: u64 = 0x10_0000;
/// An I/O virtual address the driver never maps.
pub const IOVA_UNMAPPED: u64 = 0x20_0000;

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
