//! The invalidation queue (VT-d spec 6.5.2, registers 10.4.22-10.4.24).
//!
//! A ring of 128-bit descriptors in memory the server owns. Software writes descriptors at the
//! tail and moves IQT; hardware consumes them from IQH. Every submission ends with an
//! invalidation wait descriptor whose status write the server polls (bounded), so a submission
//! returns only once the hardware has finished every descriptor before it.

use super::descriptor::Descriptor;
use crate::clock::{wait_until, Clock};
use crate::memory::{allocate_zeroed, FrameAllocator, PhysMemory, PAGE_SIZE};
use crate::registers::command::{issue_global_command, GlobalCommand};
use crate::registers::{FaultStatus, Register32, Register64, VtdRegisters};
use iommu_api::{HostPhys, IommuError};

/// Bounded wait for a submission to complete, in nanoseconds: 100 ms.
pub const COMPLETION_TIMEOUT: u64 = 100_000_000;
/// Descriptor size in bytes (128-bit descriptors, IQA_REG.DW = 0).
const DESCRIPTOR_SIZE: u64 = 16;
/// IQH/IQT hold the descriptor index in bits 18:4 (10.4.22/23).
const INDEX_SHIFT: u32 = 4;
/// Queue size: QS = 0, one 4 KiB page of 256 descriptors.
const QUEUE_SIZE_ORDER: u64 = 0;
const ENTRIES: u64 = PAGE_SIZE / DESCRIPTOR_SIZE;

/// Software state of one unit's invalidation queue.
#[derive(Debug)]
pub struct InvalidationQueue {
    base: HostPhys,
    status: HostPhys,
    tail: u64,
    sequence: u32,
}

impl InvalidationQueue {
    /// Allocates the queue page and a status page, programs IQT/IQA and sets GCMD.QIE.
    pub fn enable<R: VtdRegisters, M: PhysMemory, A: FrameAllocator, C: Clock>(
        registers: &mut R,
        memory: &mut M,
        frames: &mut A,
        clock: &mut C,
    ) -> Result<Self, IommuError> {
        let base = allocate_zeroed(memory, frames).ok_or(IommuError::OutOfTableMemory)?;
        let Some(status) = allocate_zeroed(memory, frames) else {
            frames.free_frame(base);
            return Err(IommuError::OutOfTableMemory);
        };
        registers.write64(Register64::InvalidationQueueTail, 0);
        registers.write64(
            Register64::InvalidationQueueAddress,
            base.0 | QUEUE_SIZE_ORDER,
        );
        issue_global_command(
            registers,
            clock,
            GlobalCommand::QUEUED_INVALIDATION_ENABLE,
            true,
        )?;
        Ok(Self {
            base,
            status,
            tail: 0,
            sequence: 0,
        })
    }

    /// The queue's base address (IQA_REG).
    pub fn base(&self) -> HostPhys {
        self.base
    }

    /// Free descriptor slots given the hardware head.
    fn free_slots(&self, head: u64) -> u64 {
        ENTRIES - 1 - (self.tail + ENTRIES - head) % ENTRIES
    }

    fn head<R: VtdRegisters>(registers: &mut R) -> u64 {
        (registers.read64(Register64::InvalidationQueueHead) >> INDEX_SHIFT) % ENTRIES
    }

    /// Queues `descriptors` plus a wait descriptor, moves the tail and waits for the wait's
    /// status write. Errors: `HardwareTimeout` (queue never drained or wait never completed),
    /// `InvalidationError` (FSTS.IQE: the hardware rejected a descriptor).
    pub fn submit<R: VtdRegisters, M: PhysMemory, C: Clock>(
        &mut self,
        registers: &mut R,
        memory: &mut M,
        clock: &mut C,
        descriptors: &[Descriptor],
    ) -> Result<(), IommuError> {
        let needed = descriptors.len() as u64 + 1;
        if needed >= ENTRIES {
            return Err(IommuError::InvalidationError);
        }
        wait_until(clock, COMPLETION_TIMEOUT, || {
            self.free_slots(Self::head(registers)) >= needed
        })?;
        self.sequence = self.sequence.wrapping_add(1);
        let token = self.sequence;
        memory.write_u64(self.status, 0);
        let wait = Descriptor::Wait {
            status_write: Some((self.status, token)),
            interrupt: false,
            fence: true,
        };
        for descriptor in descriptors.iter().chain(core::iter::once(&wait)) {
            let [low, high] = descriptor.encode();
            let slot = HostPhys(self.base.0 + self.tail * DESCRIPTOR_SIZE);
            memory.write_u64(slot, low);
            memory.write_u64(HostPhys(slot.0 + 8), high);
            self.tail = (self.tail + 1) % ENTRIES;
        }
        registers.write64(Register64::InvalidationQueueTail, self.tail << INDEX_SHIFT);
        let mut queue_error = false;
        let status = self.status;
        let result = wait_until(clock, COMPLETION_TIMEOUT, || {
            let fault_status =
                FaultStatus::from_bits_retain(registers.read32(Register32::FaultStatus));
            if fault_status.contains(FaultStatus::INVALIDATION_QUEUE_ERROR) {
                queue_error = true;
                return true;
            }
            memory.read_u64(status) & 0xffff_ffff == u64::from(token)
        });
        if queue_error {
            registers.write32(
                Register32::FaultStatus,
                FaultStatus::INVALIDATION_QUEUE_ERROR.bits(),
            );
            return Err(IommuError::InvalidationError);
        }
        result
    }
}
