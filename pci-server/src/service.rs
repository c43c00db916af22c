//! The pci-server's portal: `pci-api` requests (wire format: `sluice_rt::wire`), each checked
//! against the caller's identity (the id of the portal it called, which init sets to the
//! caller's child number = its owner id) before anything changes.
//!
//! | operation | who may call | what happens |
//! |---|---|---|
//! | `FunctionCount`, `FunctionAt`, `Function` | anyone | inventory facts |
//! | `Claim` | the owner the system description names | quarantine, reset, attach to its domain |
//! | `Release` | the function's owner | bus mastering off, quarantine, reset |
//! | `ConfigRead`, `ConfigWrite` | the function's owner | through `pci_core::filter` |
//! | `ProgramMsi` (MSI, or MSI-X when asked) | the function's owner | remappable-format MSI, or one MSI-X entry through the table this server maps, with the owner's IRTE handle |
//! | `BarMemory` | the function's owner | a memory capability for one part of a BAR (never the MSI-X table or PBA pages) |
//! | `MsixRead` | the function's owner | one DWORD of the MSI-X table or PBA, read-only |
//! | `RouteIntx` | the function's owner | its INTx bound to the owner's notification through an IRTE ([`crate::intx`]) |
//! | `Quarantine`, `Assign`, `EnableVfs` | the management client (`ctl`, not there yet) | refused with `NotOwner` |

use pci_api::{
    decode_request, AccessWidthCode, BarReply, Bdf, ConfigReadReply, FunctionReply, OwnerId,
    PciError, Request,
};
use pci_core::filter::{filtered_read, filtered_write};
use pci_core::msix::msix_pages;
use pci_core::ownership::{OwnerState, Ownership, Platform};
use pci_core::reset::reset_method;
use pci_core::{AccessWidth, ConfigSpace, Delay, Inventory};
use sluice_rt::abi::syscall::{MemoryRights, Selector};
use zerocopy::IntoBytes;

use crate::assignments::Assignments;
use crate::bars::{memory_bar, DeviceWindows};
use crate::intx::{InterruptLines, IntxRoutes};
use crate::iommu::DomainBinding;
use crate::msix::TableAccess;

/// The iommu-server's error code for "interrupt remapping unavailable" (`iommu-api`).
const IOMMU_NO_INTERRUPT_REMAPPING: u32 =
    iommu_api::IommuError::InterruptRemappingUnavailable as u32;

/// What a request produced: reply bytes (status word first) and a capability to send.
pub struct Response {
    /// `0` or a [`PciError`] code, then the operation's reply struct.
    pub status: u32,
    /// The reply struct's bytes.
    pub body: heapless::Vec<u8, 64>,
    /// A capability for the caller (a BAR, a bound interrupt line).
    pub capability: Option<Selector>,
    /// The rights the caller gets on `capability`.
    pub capability_rights: u64,
}

impl Response {
    pub(crate) fn error(error: PciError) -> Self {
        Response {
            status: error.code(),
            body: heapless::Vec::new(),
            capability: None,
            capability_rights: 0,
        }
    }

    pub(crate) fn ok(body: &[u8]) -> Self {
        Response {
            status: 0,
            body: heapless::Vec::from_slice(body).unwrap_or_default(),
            capability: None,
            capability_rights: 0,
        }
    }

    /// The reply bytes: the status as a little-endian u32, then the body.
    pub fn bytes(&self) -> heapless::Vec<u8, 68> {
        let mut bytes: heapless::Vec<u8, 68> = heapless::Vec::new();
        let _ = bytes.extend_from_slice(&self.status.to_le_bytes());
        let _ = bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// How BAR capabilities are made (the kernel's `create_memory`; tests record).
pub trait Carver {
    /// Carves `size` bytes at `offset` of `window` into a new capability.
    fn carve(&mut self, window: Selector, offset: u64, size: u64) -> Result<Selector, PciError>;
    /// Revokes a capability handed out earlier (and the copies the owner holds).
    fn revoke(&mut self, selector: Selector);
}

/// Everything the server holds.
pub struct Server<
    C: ConfigSpace,
    D: Delay,
    I: DomainBinding,
    K: Carver,
    T: TableAccess,
    L: InterruptLines,
> {
    pub config: C,
    pub delay: D,
    pub iommu: I,
    pub carver: K,
    pub inventory: Inventory,
    pub ownership: Ownership,
    pub assignments: Assignments,
    pub windows: DeviceWindows,
    pub tables: T,
    /// The kernel's interrupt lines (INTx routing).
    pub lines: L,
    /// The functions whose INTx is routed to their owner.
    pub intx: IntxRoutes,
}

fn width_of(code: AccessWidthCode) -> AccessWidth {
    AccessWidth::from(code)
}

impl<C: ConfigSpace, D: Delay, I: DomainBinding, K: Carver, T: TableAccess, L: InterruptLines>
    Server<C, D, I, K, T, L>
{
    /// Answers operation `operation` with `bytes` from `caller`.
    pub fn handle(&mut self, caller: OwnerId, operation: u16, bytes: &[u8]) -> Response {
        match decode_request(u32::from(operation), bytes) {
            Ok(request) => self.serve(caller, request),
            Err(error) => Response::error(error),
        }
    }

    fn function_reply(&self, bdf: Bdf) -> Result<FunctionReply, PciError> {
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        let state = self.ownership.state(bdf);
        let owner = match state {
            Some(OwnerState::Assigned(owner)) => owner,
            _ => OwnerId(0),
        };
        Ok(FunctionReply {
            bdf,
            vendor_id: function.vendor_id,
            device_id: function.device_id,
            iommu_group: self.inventory.group_of(bdf).unwrap_or(u16::MAX),
            class_code: u32::from(function.class.base) << 16
                | u32::from(function.class.sub) << 8
                | u32::from(function.class.prog_if),
            owner,
            reset_method: reset_method(&self.inventory, bdf).code() as u8,
            owner_state: state.map_or(0, |state| state.code() as u8),
            reserved: 0,
        })
    }

    pub(crate) fn owned(&self, caller: OwnerId, bdf: Bdf) -> Result<(), PciError> {
        self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        self.ownership
            .check_owner(bdf, caller)
            .map_err(PciError::from)
    }

    fn serve(&mut self, caller: OwnerId, request: Request) -> Response {
        let result = match request {
            Request::FunctionCount => {
                let count = self.inventory.functions().len() as u32;
                Ok(Response::ok(count.as_bytes()))
            }
            Request::FunctionAt { index } => usize::try_from(index)
                .ok()
                .and_then(|index| self.inventory.functions().get(index))
                .map(|function| function.bdf)
                .ok_or(PciError::NoSuchFunction)
                .and_then(|bdf| self.function_reply(bdf))
                .map(|reply| Response::ok(reply.as_bytes())),
            Request::Function(bdf) => self
                .function_reply(bdf)
                .map(|reply| Response::ok(reply.as_bytes())),
            Request::Claim(claim) => self
                .claim(caller, claim.bdf, claim.domain)
                .map(|()| Response::ok(&[])),
            Request::Release(release) => self.release(caller, release.bdf, release.owner),
            Request::ConfigRead { bdf, offset, width } => self.owned(caller, bdf).and_then(|()| {
                filtered_read(&self.config, bdf, offset, width_of(width))
                    .map(|value| Response::ok(ConfigReadReply { value }.as_bytes()))
                    .map_err(PciError::from)
            }),
            Request::ConfigWrite {
                bdf,
                offset,
                width,
                value,
            } => self.config_write(caller, bdf, offset, width_of(width), value),
            Request::ProgramMsi(msi) => self.program_msi(caller, msi),
            Request::BarMemory { bdf, index, part } => self.bar_memory(caller, bdf, index, part),
            Request::MsixRead {
                bdf,
                structure,
                offset,
            } => self.msix_read(caller, bdf, structure, offset),
            Request::RouteIntx { bdf, bit } => self.route_intx(caller, bdf, bit),
            Request::Quarantine(_) | Request::Assign(_) | Request::EnableVfs(_) => {
                sluice_rt::log!(
                    "pci-server: {caller}: management operation refused (only the management \
                     client may move devices it does not own)"
                );
                Err(PciError::NotOwner)
            }
        };
        result.unwrap_or_else(Response::error)
    }

    /// Quarantine (if unassigned), reset, attach to `domain`: see `Operation::Claim`.
    pub fn claim(&mut self, caller: OwnerId, bdf: Bdf, domain: u32) -> Result<(), PciError> {
        self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        if self.assignments.owner_of(bdf) != Some(caller) {
            sluice_rt::log!(
                "pci-server: {caller} may not claim {bdf}: the system description does not \
                 assign it to that owner"
            );
            return Err(PciError::NotOwner);
        }
        self.iommu_bind(caller, domain);
        let mut platform = Platform {
            config: &mut self.config,
            delay: &mut self.delay,
            iommu: &mut self.iommu,
        };
        let refused = |error: pci_core::ownership::OwnershipError| {
            if let pci_core::ownership::OwnershipError::Iommu(refusal) = error {
                if refusal.0 == IOMMU_NO_INTERRUPT_REMAPPING {
                    sluice_rt::log!(
                        "pci-server: REFUSED passthrough of {bdf} to {caller}: the IOMMU cannot \
                         remap interrupts (DMAR/ECAP.IR), so the device could inject any \
                         interrupt; set insecure_no_interrupt_remapping = true under [system] \
                         to accept that risk"
                    );
                    return PciError::InterruptRemappingUnavailable;
                }
            }
            sluice_rt::log!("pci-server: claim of {bdf} by {caller} failed: {error}");
            PciError::from(error)
        };
        let result = (|| {
            if self.ownership.state(bdf) == Some(OwnerState::Unassigned) {
                self.ownership
                    .quarantine(&mut platform, &self.inventory, bdf)
                    .map_err(refused)?;
            }
            self.ownership
                .assign(&mut platform, &self.inventory, bdf, caller)
                .map_err(refused)
        })();
        let report = match result {
            Ok(report) => report,
            Err(error) => {
                // Nothing of the function stays mapped here for an owner it never got.
                self.tables.unmap_table(bdf);
                return Err(error);
            }
        };
        sluice_rt::log!(
            "pci-server: {bdf} assigned to {caller}: reset by {}, attached to its DMA domain {domain}",
            report.method
        );
        // Whatever the reset method left in the table, the new owner starts from a clean one.
        self.clear_msix(bdf);
        Ok(())
    }

    fn iommu_bind(&mut self, caller: OwnerId, domain: u32) {
        // The binding learns which domain `attach_owner(caller)` means for this claim.
        self.iommu.set_owner_domain(caller, domain);
    }

    fn release(&mut self, caller: OwnerId, bdf: Bdf, owner: OwnerId) -> Result<Response, PciError> {
        if owner != caller {
            return Err(PciError::NotOwner);
        }
        self.owned(caller, bdf)?;
        // An INTx line routed to the owner is taken back with its IRTE.
        self.unroute_intx(bdf);
        let mut platform = Platform {
            config: &mut self.config,
            delay: &mut self.delay,
            iommu: &mut self.iommu,
        };
        let result = self
            .ownership
            .release(&mut platform, &self.inventory, bdf, caller);
        // Then no MSI-X entry keeps the owner's IRTE handles, whatever the reset did to the
        // table. After the reset, not before: bus mastering is off and the device quiet by
        // then, while turning MSI-X off under a device that still has a throttled interrupt
        // pending is what real drivers avoid too (QEMU 7.2's e1000e aborts on it:
        // `e1000e_intrmgr_on_msix_throttling_timer: Assertion msix_enabled(...)`).
        self.clear_msix(bdf);
        // Whatever the reset did, the owner loses the BARs it was given, and the server its
        // mapping of the table (the next owner's claim maps it again).
        for selector in self.windows.take(bdf) {
            self.carver.revoke(selector);
        }
        self.tables.unmap_table(bdf);
        result.map_err(PciError::from)?;
        sluice_rt::log!("pci-server: {bdf} released by {caller}, back in quarantine");
        Ok(Response::ok(&[]))
    }

    fn config_write(
        &mut self,
        caller: OwnerId,
        bdf: Bdf,
        offset: u16,
        width: AccessWidth,
        value: u32,
    ) -> Result<Response, PciError> {
        self.owned(caller, bdf)?;
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        let mut log = |denied: &pci_core::filter::DeniedWrite| sluice_rt::log!("{denied}");
        filtered_write(&mut self.config, function, offset, width, value, &mut log)?;
        Ok(Response::ok(&[]))
    }

    fn bar_memory(
        &mut self,
        caller: OwnerId,
        bdf: Bdf,
        index: u8,
        part: u8,
    ) -> Result<Response, PciError> {
        self.owned(caller, bdf)?;
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        let bar = memory_bar(&function.bars.bars, index)?;
        let carve = self
            .windows
            .plan(&bar, &msix_pages(function, index), part)?;
        let selector = self.carver.carve(carve.window, carve.offset, carve.size)?;
        if !self.windows.record(bdf, selector) {
            self.carver.revoke(selector);
            return Err(PciError::BarUnavailable);
        }
        let reply: BarReply = carve.reply;
        let mut response = Response::ok(reply.as_bytes());
        response.capability = Some(selector);
        response.capability_rights = BAR_RIGHTS.bits();
        Ok(response)
    }
}

/// Carves with the kernel's `create_memory` into selectors from `next` on.
pub struct KernelCarver {
    /// The next free selector of the server's table.
    pub next: u32,
    /// The last selector it may use.
    pub last: u32,
}

impl Carver for KernelCarver {
    fn carve(&mut self, window: Selector, offset: u64, size: u64) -> Result<Selector, PciError> {
        if self.next > self.last {
            return Err(PciError::BarUnavailable);
        }
        let selector = Selector(self.next);
        sluice_rt::sys::create_memory(window, selector, offset, size).map_err(|status| {
            sluice_rt::log!("pci-server: carving a BAR capability refused: {status:?}");
            PciError::BarUnavailable
        })?;
        self.next += 1;
        Ok(selector)
    }

    fn revoke(&mut self, selector: Selector) {
        let _ = sluice_rt::sys::revoke(selector, true);
    }
}

/// Rights an owner gets on a BAR.
pub const BAR_RIGHTS: MemoryRights = MemoryRights::READ.union(MemoryRights::WRITE);
