//! The pci-server's MSI and MSI-X requests (`ProgramMsi`, `MsixRead`) and the MSI-X table
//! hygiene of ownership changes, as a second `impl` of [`Server`]: IRTE handles checked at the
//! iommu-server before anything is written ([`crate::irte_check`]), one entry programmed
//! through the server's own mapping of the table, table and PBA read for the owner, and the
//! table masked and cleared on every claim and release (`docs/passthrough.md`, "MSI-X").

use pci_api::{Bdf, ConfigReadReply, MsixStructure, OwnerId, PciError};
use pci_core::alias::dma_aliases;
use pci_core::msi::{
    clear_msix_table, program_msi, program_msix_entry, IrteHandle, MsixEntryRegister,
};
use pci_core::msix::{pba_location, table_location};
use pci_core::registers::{header, Command};
use pci_core::{ConfigSpace, Delay};
use zerocopy::IntoBytes;

use crate::intx::InterruptLines;
use crate::iommu::DomainBinding;
use crate::irte_check::{self, IrteRefusal};
use crate::msix::TableAccess;
use crate::service::{Carver, Response, Server};

impl<C: ConfigSpace, D: Delay, I: DomainBinding, K: Carver, T: TableAccess, L: InterruptLines>
    Server<C, D, I, K, T, L>
{
    /// Masks and clears every entry of `bdf`'s MSI-X table (mapping it if needed) with MSI-X
    /// off (`pci_core::msi::clear_msix_table`); a function without MSI-X is left alone. A table
    /// the server cannot reach is logged: the owner cannot reach it either (its pages are
    /// never handed out) and MSI-X stays off.
    pub(crate) fn clear_msix(&mut self, bdf: Bdf) {
        let Some(function) = self.inventory.get(bdf) else {
            return;
        };
        if function.capabilities.msix.is_none() {
            return;
        }
        let mapped = table_location(function)
            .map_err(PciError::from)
            .and_then(|location| {
                let pba = pba_location(function).ok();
                self.tables
                    .map_table(&location, pba.as_ref(), &self.windows)
                    .map(|()| location)
            });
        let location = match mapped {
            Ok(location) => location,
            Err(error) => {
                sluice_rt::log!("pci-server: {bdf}: MSI-X table not cleared: {error}");
                return;
            }
        };
        match clear_msix_table(&mut self.config, &mut self.tables, function) {
            Ok(entries) => sluice_rt::log!(
                "pci-server: {bdf} MSI-X table cleared: {entries} entries masked, addresses and \
                 data zeroed, MSI-X off (table at {} in BAR{})",
                location.address,
                location.bar_index
            ),
            Err(error) => sluice_rt::log!("pci-server: {bdf}: MSI-X table not cleared: {error}"),
        }
    }

    pub(crate) fn program_msi(
        &mut self,
        caller: OwnerId,
        request: pci_api::MsiProgramRequest,
    ) -> Result<Response, PciError> {
        self.owned(caller, request.bdf)?;
        let function = self
            .inventory
            .get(request.bdf)
            .ok_or(PciError::NoSuchFunction)?;
        if request.kind == 1 {
            return self.program_msix(caller, request);
        }
        // The capability and vector count first (as `program_msi` would refuse them), then the
        // IRTEs, then the writes.
        let capability = function.capabilities.msi.ok_or(PciError::NoMsiCapability)?;
        if !request.vector_count.is_power_of_two()
            || request.vector_count > u16::from(capability.max_vectors())
        {
            return Err(PciError::VectorOutOfRange);
        }
        self.check_irtes(caller, &request)?;
        let function = self
            .inventory
            .get(request.bdf)
            .ok_or(PciError::NoSuchFunction)?;
        let message = program_msi(
            &mut self.config,
            function,
            IrteHandle(request.irte_handle),
            request.vector_count,
        )?;
        sluice_rt::log!(
            "pci-server: {} MSI programmed in remappable format: address {:#x} data {:#x} (IRTE {})",
            request.bdf,
            message.address,
            message.data,
            request.irte_handle
        );
        Ok(Response::ok(&[]))
    }

    /// One MSI-X entry: the caller owns the function (checked by `program_msi`); the entry is
    /// in the table; the table is in a memory BAR inside a device window; memory decoding is on.
    /// Only then is anything written (see `pci_core::msi::program_msix_entry`).
    fn program_msix(
        &mut self,
        caller: OwnerId,
        request: pci_api::MsiProgramRequest,
    ) -> Result<Response, PciError> {
        let bdf = request.bdf;
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        let capability = function
            .capabilities
            .msix
            .ok_or(PciError::NoMsixCapability)?;
        if request.vector >= capability.table_size {
            return Err(PciError::VectorOutOfRange);
        }
        self.check_irtes(caller, &request)?;
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        let location = table_location(function).map_err(|error| {
            sluice_rt::log!("pci-server: MSI-X refused: {error}");
            PciError::from(error)
        })?;
        let pba = pba_location(function).ok();
        self.tables
            .map_table(&location, pba.as_ref(), &self.windows)?;
        let subhandle = (request.flags & 1 != 0).then_some(request.subhandle);
        let message = program_msix_entry(
            &mut self.config,
            &mut self.tables,
            function,
            request.vector,
            IrteHandle(request.irte_handle),
            subhandle,
        )
        .map_err(|error| {
            sluice_rt::log!("pci-server: MSI-X refused: {error}");
            PciError::from(error)
        })?;
        let read_back = self
            .tables
            .read_entry(bdf, request.vector, MsixEntryRegister::AddressLow);
        if read_back != message.address as u32 {
            sluice_rt::log!(
                "pci-server: {bdf} MSI-X entry {} reads back {read_back:#x}, not {:#x}: the \
                 table in BAR{} did not take the write",
                request.vector,
                message.address as u32,
                location.bar_index
            );
            return Err(PciError::MsixTableUnavailable);
        }
        sluice_rt::log!(
            "pci-server: {bdf} MSI-X entry {} of {} programmed in remappable format: address \
             {:#x} data {:#x} (IRTE {}), table at {} in BAR{}, MSI-X on, INTx off",
            request.vector,
            location.entries,
            message.address,
            message.data,
            request.irte_handle,
            location.address,
            location.bar_index
        );
        Ok(Response::ok(&[]))
    }

    /// Every IRTE the request's message can select must be the caller's, present, and verify
    /// one of the function's requester ids (`crate::irte_check`); a refusal is logged as a
    /// denied write and nothing is written.
    fn check_irtes(
        &mut self,
        caller: OwnerId,
        request: &pci_api::MsiProgramRequest,
    ) -> Result<(), PciError> {
        let bdf = request.bdf;
        let kind = if request.kind == 1 { "MSI-X" } else { "MSI" };
        let denied = |refusal: IrteRefusal| {
            sluice_rt::log!(
                "pci: denied {kind} write bdf={bdf} entry={} irte={} by {caller}: {refusal}",
                request.vector,
                request.irte_handle
            );
            PciError::IrteNotOwned
        };
        let requester_ids: heapless::Vec<Bdf, { pci_core::alias::MAX_ALIASES }> =
            dma_aliases(&self.inventory, bdf)
                .iter()
                .map(|alias| alias.requester_id)
                .collect();
        for index in irte_check::indices(request).map_err(denied)? {
            let status = self.iommu.irte_status(index).map_err(|refusal| {
                denied(IrteRefusal::Unverifiable {
                    index,
                    code: refusal.0,
                })
            })?;
            irte_check::check(index, &status, caller, &requester_ids).map_err(denied)?;
        }
        Ok(())
    }

    /// One DWORD of the MSI-X table or PBA of a function the caller owns, read through the
    /// server's mapping (read-only: the table changes only through `ProgramMsi`).
    pub(crate) fn msix_read(
        &mut self,
        caller: OwnerId,
        bdf: Bdf,
        structure: MsixStructure,
        offset: u32,
    ) -> Result<Response, PciError> {
        self.owned(caller, bdf)?;
        let function = self.inventory.get(bdf).ok_or(PciError::NoSuchFunction)?;
        function
            .capabilities
            .msix
            .ok_or(PciError::NoMsixCapability)?;
        let location = table_location(function).map_err(PciError::from)?;
        let pba = pba_location(function).ok();
        let inside = match structure {
            MsixStructure::Table => u64::from(offset) < location.bytes,
            MsixStructure::PendingBits => pba.is_some_and(|pba| u64::from(offset) < pba.bytes),
        };
        if !inside {
            return Err(match (structure, pba) {
                (MsixStructure::PendingBits, None) => PciError::MsixTableUnavailable,
                _ => PciError::OffsetOutOfRange,
            });
        }
        let command = Command::from_bits_retain(self.config.read16(bdf, header::COMMAND));
        if !command.contains(Command::MEMORY_SPACE) {
            return Err(PciError::MemoryDecodingDisabled);
        }
        self.tables
            .map_table(&location, pba.as_ref(), &self.windows)?;
        let value = match structure {
            MsixStructure::Table => {
                let entry = u16::try_from(offset / 16).map_err(|_| PciError::OffsetOutOfRange)?;
                let register = match offset % 16 {
                    0 => MsixEntryRegister::AddressLow,
                    4 => MsixEntryRegister::AddressHigh,
                    8 => MsixEntryRegister::Data,
                    _ => MsixEntryRegister::VectorControl,
                };
                self.tables.read_entry(bdf, entry, register)
            }
            MsixStructure::PendingBits => self
                .tables
                .read_pba(bdf, offset / 4)
                .ok_or(PciError::MsixTableUnavailable)?,
        };
        Ok(Response::ok(ConfigReadReply { value }.as_bytes()))
    }
}
