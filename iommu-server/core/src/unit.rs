//! One VT-d remapping unit: reads CAP/ECAP, adapts (paging depth from SAGAW, queued or
//! register-based invalidation, write-buffer flushing when RWBF, caching mode), owns the root
//! table and performs the invalidations each table change needs.

use crate::clock::Clock;
use crate::dma_remapping::{ContextEntry, LargePages, RootTable};
use crate::invalidation::descriptor::{
    ContextGranularity, InterruptEntryGranularity, IotlbGranularity,
};
use crate::invalidation::{Drain, InvalidationQueue, Invalidator, IotlbFlushed};
use crate::memory::{FrameAllocator, PhysMemory};
use crate::registers::capability::PagingLevels;
use crate::registers::command::{issue_global_command, GlobalCommand};
use crate::registers::{Capability, ExtendedCapability, Register64, VtdRegisters};
use crate::DomainId;
use iommu_api::{Bdf, IoVirt, IommuError};

/// What the driver decided from CAP and ECAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitConfig {
    /// Raw CAP_REG.
    pub capability: Capability,
    /// Raw ECAP_REG.
    pub extended_capability: ExtendedCapability,
    /// Second-level paging depth for every domain of this unit.
    pub levels: PagingLevels,
    /// Superpages usable in second-level tables.
    pub large_pages: LargePages,
    /// CAP.CM: not-present -> present changes need invalidation too.
    pub caching_mode: bool,
    /// CAP.RWBF: flush the write buffer after table changes.
    pub write_buffer_flush: bool,
    /// ECAP.QI: queued invalidation is used.
    pub queued_invalidation: bool,
    /// ECAP.IR (and QI): interrupt remapping is possible.
    pub interrupt_remapping: bool,
    /// Number of domain ids (CAP.ND).
    pub domain_count: u32,
    /// Drain reads/writes on IOTLB invalidation (CAP.DRD/DWD).
    pub drain: Drain,
}

impl UnitConfig {
    /// Decides from raw CAP/ECAP.
    pub fn decide(
        capability: Capability,
        extended: ExtendedCapability,
        preferred: PagingLevels,
    ) -> Result<Self, IommuError> {
        Ok(Self {
            capability,
            extended_capability: extended,
            levels: capability.choose_levels(preferred)?,
            large_pages: LargePages {
                two_mib: capability.supports_2m_pages(),
                one_gib: capability.supports_1g_pages(),
            },
            caching_mode: capability.caching_mode(),
            write_buffer_flush: capability.required_write_buffer_flushing(),
            queued_invalidation: extended.queued_invalidation(),
            interrupt_remapping: extended.interrupt_remapping() && extended.queued_invalidation(),
            domain_count: capability.domain_count(),
            drain: Drain {
                reads: capability.read_draining(),
                writes: capability.write_draining(),
            },
        })
    }
}

/// A remapping unit under the driver's control.
#[derive(Debug)]
pub struct VtdUnit<R, C> {
    registers: R,
    clock: C,
    config: UnitConfig,
    root: RootTable,
    invalidator: Invalidator,
}

impl<R: VtdRegisters, C: Clock> VtdUnit<R, C> {
    /// Takes over a unit (translation still off): decides its configuration, installs an empty
    /// root table (SRTP), enables queued invalidation when present, and invalidates the context
    /// cache and IOTLB globally.
    pub fn initialize<M: PhysMemory, A: FrameAllocator>(
        mut registers: R,
        mut clock: C,
        memory: &mut M,
        frames: &mut A,
        preferred: PagingLevels,
    ) -> Result<Self, IommuError> {
        let capability = Capability(registers.read64(Register64::Capability));
        let extended = ExtendedCapability(registers.read64(Register64::ExtendedCapability));
        let config = UnitConfig::decide(capability, extended, preferred)?;
        let root = RootTable::new(memory, frames)?;
        registers.write64(Register64::RootTableAddress, root.address().0);
        issue_global_command(
            &mut registers,
            &mut clock,
            GlobalCommand::SET_ROOT_TABLE_POINTER,
            true,
        )?;
        let invalidator = if config.queued_invalidation {
            Invalidator::Queued(InvalidationQueue::enable(
                &mut registers,
                memory,
                frames,
                &mut clock,
            )?)
        } else {
            Invalidator::Register {
                iotlb_offset: extended.iotlb_register_offset(),
            }
        };
        let mut unit = Self {
            registers,
            clock,
            config,
            root,
            invalidator,
        };
        unit.invalidator.context(
            &mut unit.registers,
            memory,
            &mut unit.clock,
            ContextGranularity::Global,
        )?;
        unit.flush_all(memory)?;
        Ok(unit)
    }

    /// The decided configuration.
    pub fn config(&self) -> &UnitConfig {
        &self.config
    }

    /// The root table.
    pub fn root_table(&self) -> &RootTable {
        &self.root
    }

    /// The register interface (for fault handling and tests).
    pub fn registers_mut(&mut self) -> &mut R {
        &mut self.registers
    }

    /// The clock used for bounded waits.
    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    /// Sets or clears one global command and waits for GSTS.
    pub fn command(&mut self, command: GlobalCommand, enable: bool) -> Result<(), IommuError> {
        issue_global_command(&mut self.registers, &mut self.clock, command, enable)
    }

    /// Flushes the write buffer when CAP.RWBF requires it (VT-d spec 6.8).
    pub fn flush_write_buffer(&mut self) -> Result<(), IommuError> {
        if self.config.write_buffer_flush {
            self.command(GlobalCommand::WRITE_BUFFER_FLUSH, true)?;
        }
        Ok(())
    }

    /// Turns DMA remapping on (GCMD.TE).
    pub fn enable_translation(&mut self) -> Result<(), IommuError> {
        self.flush_write_buffer()?;
        self.command(GlobalCommand::TRANSLATION_ENABLE, true)
    }

    /// Global IOTLB invalidation.
    pub fn flush_all<M: PhysMemory>(&mut self, memory: &mut M) -> Result<IotlbFlushed, IommuError> {
        self.flush_iotlb(memory, IotlbGranularity::Global)?
            .ok_or(IommuError::InvalidationError)
    }

    /// Domain-selective IOTLB invalidation; the proof releases the domain's freed tables.
    pub fn flush_domain<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        domain: DomainId,
    ) -> Result<IotlbFlushed, IommuError> {
        self.flush_write_buffer()?;
        self.flush_iotlb(memory, IotlbGranularity::Domain(domain))?
            .ok_or(IommuError::InvalidationError)
    }

    fn flush_iotlb<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        granularity: IotlbGranularity,
    ) -> Result<Option<IotlbFlushed>, IommuError> {
        self.invalidator.iotlb(
            &mut self.registers,
            memory,
            &mut self.clock,
            granularity,
            self.config.drain,
        )
    }

    /// After making entries present: with caching mode, invalidate the range (page-selective
    /// when it is one naturally aligned power-of-two block, else domain-selective); without,
    /// only the write buffer needs flushing.
    pub fn after_map<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        domain: DomainId,
        iova: IoVirt,
        size: u64,
    ) -> Result<(), IommuError> {
        if !self.config.caching_mode {
            return self.flush_write_buffer();
        }
        let pages = size / crate::memory::PAGE_SIZE;
        let mask = pages.trailing_zeros();
        let selective = self.config.capability.page_selective_invalidation()
            && pages.is_power_of_two()
            && mask <= u32::from(self.config.capability.maximum_address_mask())
            && iova.0.is_multiple_of(size);
        let granularity = if selective {
            IotlbGranularity::Pages {
                domain,
                address: iova,
                address_mask: mask as u8,
                invalidation_hint: false,
            }
        } else {
            IotlbGranularity::Domain(domain)
        };
        self.flush_iotlb(memory, granularity).map(|_| ())
    }

    /// Makes sure `bus` has a context table, so [`Self::set_context`] cannot fail for it.
    pub fn prepare_bus<M: PhysMemory, A: FrameAllocator>(
        &mut self,
        memory: &mut M,
        frames: &mut A,
        bus: u8,
    ) -> Result<(), IommuError> {
        self.root.prepare_bus(memory, frames, bus).map(|_| ())
    }

    /// Points `device` at a domain. Its context entry must be absent (use
    /// [`Self::clear_context`] first). With caching mode the not-present entry may be cached
    /// under DID 0, so that is invalidated together with the new domain's IOTLB (VT-d spec 6.1).
    pub fn set_context<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        device: Bdf,
        entry: &ContextEntry,
    ) -> Result<(), IommuError> {
        self.root.set_context(memory, device, entry)?;
        if self.config.caching_mode {
            let granularity = ContextGranularity::Device {
                domain: DomainId(0),
                source: device,
                function_mask: 0,
            };
            self.invalidator
                .context(&mut self.registers, memory, &mut self.clock, granularity)?;
            self.flush_iotlb(memory, IotlbGranularity::Domain(entry.domain))?;
            Ok(())
        } else {
            self.flush_write_buffer()
        }
    }

    /// Makes `device`'s context entry not present and invalidates the context cache for it and
    /// the IOTLB of the domain it used (VT-d spec 6.5.3.3 ordering). Returns the old entry.
    pub fn clear_context<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        device: Bdf,
    ) -> Result<Option<ContextEntry>, IommuError> {
        let Some(previous) = self.root.clear_context(memory, device) else {
            return Ok(None);
        };
        self.flush_write_buffer()?;
        let granularity = ContextGranularity::Device {
            domain: previous.domain,
            source: device,
            function_mask: 0,
        };
        self.invalidator
            .context(&mut self.registers, memory, &mut self.clock, granularity)?;
        self.flush_iotlb(memory, IotlbGranularity::Domain(previous.domain))?;
        Ok(Some(previous))
    }

    /// Invalidates interrupt entry cache entries (needs queued invalidation).
    pub fn invalidate_interrupt_entries<M: PhysMemory>(
        &mut self,
        memory: &mut M,
        granularity: InterruptEntryGranularity,
    ) -> Result<(), IommuError> {
        self.invalidator.interrupt_entries(
            &mut self.registers,
            memory,
            &mut self.clock,
            granularity,
        )
    }

    /// Whether queued invalidation is in use.
    pub fn uses_queued_invalidation(&self) -> bool {
        self.invalidator.is_queued()
    }
}
