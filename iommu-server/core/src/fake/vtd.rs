//! A behavioural fake of one VT-d remapping unit, modelled on QEMU's intel-iommu (7.2 defaults:
//! VER 1.0, CAP 0x00d2008c22260206, ECAP 0x0f00f4a).
//!
//! - GSTS follows GCMD: TE, QIE, IRE, CFI persist; SRTP/SIRTP latch RTADDR/IRTA and set
//!   RTPS/IRTPS; WBF completes at once. TE without a latched root table, QIE without IQA, and
//!   IRE without a latched IRTA are ignored (the status never follows, so the driver's bounded
//!   wait fails), which catches ordering bugs.
//! - Moving IQT makes the unit consume descriptors from fake memory; a wait descriptor with SW
//!   writes its status data; an unknown descriptor sets FSTS.IQE and stops the queue.
//! - CCMD.ICC and IOTLB.IVT clear when written (register-based invalidation).
//! - DMA requests and interrupts can be simulated; faults go into the fault recording
//!   registers (FRO/NFR from CAP) with FSTS.PPF/FRI, overflowing into PFO.
//! - [`FakeVtd::stall_commands`] / [`FakeVtd::stall_invalidations`] make it never complete.

use super::memory::FakeMemory;
use super::walker::{self, AccessKind, RemappedInterrupt};
use crate::invalidation::descriptor::Descriptor;
use crate::memory::PhysMemory;
use crate::registers::{Capability, ExtendedCapability, Register32, Register64, VtdRegisters};
use alloc::vec;
use alloc::vec::Vec;
use iommu_api::{Bdf, HostPhys, IoVirt};

/// What the fake unit advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeVtdConfig {
    /// VER_REG.
    pub version: u32,
    /// CAP_REG.
    pub capability: u64,
    /// ECAP_REG.
    pub extended_capability: u64,
}

impl FakeVtdConfig {
    /// QEMU 7.2 `-device intel-iommu,intremap=on` defaults.
    pub const fn qemu() -> Self {
        Self {
            version: 0x10,
            capability: 0x00d2_008c_2226_0206,
            extended_capability: 0x0f0_0f4a,
        }
    }
    /// As with `aw-bits=48`: SAGAW 39 and 48 bits, MGAW 48.
    pub const fn with_48_bit(mut self) -> Self {
        self.capability =
            (self.capability & !(0x1f << 8) & !(0x3f << 16)) | (0b110 << 8) | (47 << 16);
        self
    }
    /// As with `caching-mode=on`: CAP.CM = 1.
    pub const fn with_caching_mode(mut self) -> Self {
        self.capability |= 1 << 7;
        self
    }
    /// CAP.RWBF = 1 (write buffer must be flushed after table changes).
    pub const fn with_write_buffer_flushing(mut self) -> Self {
        self.capability |= 1 << 4;
        self
    }
    /// ECAP.QI = 0 and ECAP.IR = 0 (IR needs QI).
    pub const fn without_queued_invalidation(mut self) -> Self {
        self.extended_capability &= !((1 << 1) | (1 << 3));
        self
    }
    /// ECAP.IR = 0.
    pub const fn without_interrupt_remapping(mut self) -> Self {
        self.extended_capability &= !(1 << 3);
        self
    }
    /// CAP.SLLPS = 0 (4 KiB pages only).
    pub const fn without_large_pages(mut self) -> Self {
        self.capability &= !(0xf << 34);
        self
    }
}

/// Something the unit did, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeEvent {
    /// A GCMD write (value written).
    Command(u32),
    /// A descriptor consumed from the invalidation queue.
    Descriptor(Descriptor),
    /// A register-based context-cache invalidation (CCMD value).
    ContextCommand(u64),
    /// A register-based IOTLB invalidation (IVA value, IOTLB value).
    IotlbCommand(u64, u64),
}

/// The fake unit.
#[derive(Debug)]
pub struct FakeVtd {
    config: FakeVtdConfig,
    memory: FakeMemory,
    status: u32,
    root_table_register: u64,
    root_table: Option<u64>,
    remapping_table_register: u64,
    remapping_table: Option<u64>,
    queue_address: u64,
    queue_head: u64,
    queue_tail: u64,
    completion_status: u32,
    fault_errors: u32,
    fault_event_control: u32,
    fault_event_registers: [u32; 3],
    context_command: u64,
    invalidate_address: u64,
    iotlb_command: u64,
    fault_records: Vec<[u64; 2]>,
    next_fault_record: usize,
    /// GSTS stops following GCMD (for timeout tests).
    pub stall_commands: bool,
    /// Wait descriptors and register invalidations never complete (for timeout tests).
    pub stall_invalidations: bool,
    /// Everything the unit did.
    pub events: Vec<FakeEvent>,
}

const GSTS_TES: u32 = 1 << 31;
const GSTS_RTPS: u32 = 1 << 30;
const GSTS_WBFS: u32 = 1 << 27;
const GSTS_QIES: u32 = 1 << 26;
const GSTS_IRES: u32 = 1 << 25;
const GSTS_IRTPS: u32 = 1 << 24;
const GSTS_CFIS: u32 = 1 << 23;
const FSTS_PFO: u32 = 1 << 0;
const FSTS_PPF: u32 = 1 << 1;
const FSTS_IQE: u32 = 1 << 4;

impl FakeVtd {
    /// A unit in its reset state, sharing `memory` with the test.
    pub fn new(config: FakeVtdConfig, memory: FakeMemory) -> Self {
        let records = Capability(config.capability).fault_recording_count();
        Self {
            config,
            memory,
            status: 0,
            root_table_register: 0,
            root_table: None,
            remapping_table_register: 0,
            remapping_table: None,
            queue_address: 0,
            queue_head: 0,
            queue_tail: 0,
            completion_status: 0,
            fault_errors: 0,
            fault_event_control: 1 << 31,
            fault_event_registers: [0; 3],
            context_command: 0,
            invalidate_address: 0,
            iotlb_command: 0,
            fault_records: vec![[0, 0]; usize::from(records)],
            next_fault_record: 0,
            stall_commands: false,
            stall_invalidations: false,
            events: Vec::new(),
        }
    }

    /// GSTS as the unit reports it.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The latched root table (after SRTP).
    pub fn latched_root_table(&self) -> Option<HostPhys> {
        self.root_table.map(HostPhys)
    }

    /// Descriptors consumed so far.
    pub fn descriptors(&self) -> Vec<Descriptor> {
        self.events
            .iter()
            .filter_map(|event| match event {
                FakeEvent::Descriptor(descriptor) => Some(*descriptor),
                _ => None,
            })
            .collect()
    }

    fn fault_recording_offset(&self) -> usize {
        usize::from(Capability(self.config.capability).fault_recording_offset())
    }

    fn iotlb_offset(&self) -> usize {
        usize::from(ExtendedCapability(self.config.extended_capability).iotlb_register_offset())
    }

    fn fault_status(&self) -> u32 {
        let pending = self
            .fault_records
            .iter()
            .position(|record| record[1] >> 63 == 1);
        self.fault_errors | pending.map_or(0, |index| FSTS_PPF | ((index as u32 & 0xff) << 8))
    }

    fn global_command(&mut self, value: u32) {
        self.events.push(FakeEvent::Command(value));
        if self.stall_commands {
            return;
        }
        if value & (1 << 30) != 0 {
            self.root_table = Some(self.root_table_register & !0xfff);
            self.status |= GSTS_RTPS;
        }
        if value & (1 << 24) != 0 {
            self.remapping_table = Some(self.remapping_table_register);
            self.status |= GSTS_IRTPS;
        }
        // WBF (bit 27) completes immediately: WBFS stays clear.
        self.status &= !GSTS_WBFS;
        let follow = |status: &mut u32, bit: u32, allowed: bool| {
            if value & bit == 0 {
                *status &= !bit;
            } else if allowed {
                *status |= bit;
            }
        };
        let root_ready = self.status & GSTS_RTPS != 0;
        let queue_ready = self.queue_address != 0;
        let remapping_ready = self.status & GSTS_IRTPS != 0;
        follow(&mut self.status, GSTS_TES, root_ready);
        let queue_was_enabled = self.status & GSTS_QIES != 0;
        follow(&mut self.status, GSTS_QIES, queue_ready);
        if !queue_was_enabled && self.status & GSTS_QIES != 0 {
            self.queue_head = 0;
        }
        follow(&mut self.status, GSTS_IRES, remapping_ready);
        follow(&mut self.status, GSTS_CFIS, true);
    }

    fn process_queue(&mut self) {
        if self.status & GSTS_QIES == 0
            || self.stall_invalidations
            || self.fault_errors & FSTS_IQE != 0
        {
            return;
        }
        let base = self.queue_address & !0xfff;
        let entries = 256u64 << (self.queue_address & 0x7);
        while self.queue_head != self.queue_tail {
            let address = base + self.queue_head * 16;
            let qwords = [
                self.memory.read_u64(HostPhys(address)),
                self.memory.read_u64(HostPhys(address + 8)),
            ];
            let Some(descriptor) = Descriptor::decode(qwords) else {
                self.fault_errors |= FSTS_IQE;
                return;
            };
            self.events.push(FakeEvent::Descriptor(descriptor));
            if let Descriptor::Wait {
                status_write,
                interrupt,
                ..
            } = descriptor
            {
                if let Some((status_address, data)) = status_write {
                    self.memory.write_u32(status_address, data);
                }
                if interrupt {
                    self.completion_status |= 1;
                }
            }
            self.queue_head = (self.queue_head + 1) % entries;
        }
    }

    /// Records a fault like the hardware: into the next fault recording register, or PFO when
    /// it is still occupied. `info` is the page address (DMA) or interrupt index << 48.
    pub fn record_fault(&mut self, source: Bdf, info: u64, kind: AccessKind, reason: u8) {
        let count = self.fault_records.len();
        let index = self.next_fault_record % count.max(1);
        let Some(record) = self.fault_records.get_mut(index) else {
            return;
        };
        if record[1] >> 63 == 1 {
            self.fault_errors |= FSTS_PFO;
            return;
        }
        let read_bit = u64::from(kind == AccessKind::Read) << 62;
        *record = [
            info & !0xfff,
            (1 << 63) | read_bit | (u64::from(reason) << 32) | u64::from(source.0),
        ];
        self.next_fault_record = (index + 1) % count.max(1);
        self.fault_event_control |= 1 << 30;
    }

    /// A device DMA request: translated through the latched tables when TE is on, recorded as
    /// a fault when refused (unless the context entry has FPD).
    pub fn dma(&mut self, source: Bdf, iova: IoVirt, kind: AccessKind) -> Result<HostPhys, u8> {
        let Some(root) = self.root_table.filter(|_| self.status & GSTS_TES != 0) else {
            return Ok(HostPhys(iova.0));
        };
        walker::translate_dma(&self.memory, HostPhys(root), source, iova, kind).map_err(
            |(reason, disabled)| {
                if !disabled {
                    self.record_fault(source, iova.0, kind, reason);
                }
                reason
            },
        )
    }

    /// A device interrupt (MSI write of `data` to `address`), remapped when IRE is on.
    pub fn interrupt(
        &mut self,
        source: Bdf,
        address: u32,
        data: u32,
    ) -> Result<RemappedInterrupt, u8> {
        let Some(irta) = self
            .remapping_table
            .filter(|_| self.status & GSTS_IRES != 0)
        else {
            return Err(0);
        };
        let entries = 2u32 << (irta & 0xf);
        let compatibility = self.status & GSTS_CFIS != 0;
        walker::remap_interrupt(
            &self.memory,
            HostPhys(irta & !0xfff),
            entries,
            compatibility,
            source,
            address,
            data,
        )
        .map_err(|(reason, index)| {
            if reason != 0 {
                self.record_fault(source, u64::from(index) << 48, AccessKind::Write, reason);
            }
            reason
        })
    }
}

impl VtdRegisters for FakeVtd {
    fn read32(&mut self, register: Register32) -> u32 {
        match register {
            Register32::Version => self.config.version,
            Register32::GlobalCommand => 0,
            Register32::GlobalStatus => self.status,
            Register32::FaultStatus => self.fault_status(),
            Register32::FaultEventControl => self.fault_event_control,
            Register32::FaultEventData => self.fault_event_registers[0],
            Register32::FaultEventAddress => self.fault_event_registers[1],
            Register32::FaultEventUpperAddress => self.fault_event_registers[2],
            Register32::InvalidationCompletionStatus => self.completion_status,
        }
    }

    fn write32(&mut self, register: Register32, value: u32) {
        match register {
            Register32::GlobalCommand => self.global_command(value),
            Register32::FaultStatus => {
                self.fault_errors &= !(value & 0x7d);
                self.process_queue();
            }
            Register32::FaultEventControl => {
                self.fault_event_control =
                    (self.fault_event_control & (1 << 30)) | (value & (1 << 31))
            }
            Register32::FaultEventData => self.fault_event_registers[0] = value,
            Register32::FaultEventAddress => self.fault_event_registers[1] = value,
            Register32::FaultEventUpperAddress => self.fault_event_registers[2] = value,
            Register32::InvalidationCompletionStatus => self.completion_status &= !(value & 1),
            Register32::Version | Register32::GlobalStatus => {}
        }
    }

    fn read64(&mut self, register: Register64) -> u64 {
        let offset = register.offset();
        let fault_base = self.fault_recording_offset();
        if (fault_base..fault_base + 16 * self.fault_records.len()).contains(&offset) {
            let record = self
                .fault_records
                .get((offset - fault_base) / 16)
                .copied()
                .unwrap_or([0, 0]);
            return record[(offset - fault_base) % 16 / 8];
        }
        if offset == self.iotlb_offset() {
            return self.invalidate_address;
        }
        if offset == self.iotlb_offset() + 8 {
            return self.iotlb_command;
        }
        match register {
            Register64::Capability => self.config.capability,
            Register64::ExtendedCapability => self.config.extended_capability,
            Register64::RootTableAddress => self.root_table_register,
            Register64::ContextCommand => self.context_command,
            Register64::InvalidationQueueHead => self.queue_head << 4,
            Register64::InvalidationQueueTail => self.queue_tail << 4,
            Register64::InvalidationQueueAddress => self.queue_address,
            Register64::InterruptRemappingTableAddress => self.remapping_table_register,
            _ => 0,
        }
    }

    fn write64(&mut self, register: Register64, value: u64) {
        let offset = register.offset();
        let fault_base = self.fault_recording_offset();
        if (fault_base..fault_base + 16 * self.fault_records.len()).contains(&offset) {
            // Only F (bit 127) is writable: write 1 to clear.
            if (offset - fault_base) % 16 == 8 && value >> 63 == 1 {
                if let Some(record) = self.fault_records.get_mut((offset - fault_base) / 16) {
                    *record = [0, 0];
                }
            }
            return;
        }
        if offset == self.iotlb_offset() {
            self.invalidate_address = value;
            return;
        }
        if offset == self.iotlb_offset() + 8 {
            self.events
                .push(FakeEvent::IotlbCommand(self.invalidate_address, value));
            // IAIG (58:57) reports the granularity performed.
            let granularity = (value >> 60) & 3;
            self.iotlb_command = if self.stall_invalidations {
                value
            } else {
                (value & !(1 << 63)) | (granularity << 57)
            };
            return;
        }
        match register {
            Register64::RootTableAddress => self.root_table_register = value,
            Register64::ContextCommand => {
                self.events.push(FakeEvent::ContextCommand(value));
                let granularity = (value >> 61) & 3;
                self.context_command = if self.stall_invalidations {
                    value
                } else {
                    (value & !(1 << 63)) | (granularity << 59)
                };
            }
            Register64::InvalidationQueueTail => {
                self.queue_tail = (value >> 4) & 0x7fff;
                self.process_queue();
            }
            Register64::InvalidationQueueAddress if self.status & GSTS_QIES == 0 => {
                self.queue_address = value
            }
            Register64::InterruptRemappingTableAddress => self.remapping_table_register = value,
            _ => {}
        }
    }
}
