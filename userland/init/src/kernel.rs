//! The kernel as init sees it: the system calls init makes, plus access to memory init mapped
//! into its own address space. On bare metal [`crate::system::SystemKernel`] implements it with
//! `sluice-rt`; tests implement it with a behavioural fake, so every loading step runs on the
//! host.

use sluice_abi::boot::selector::SELF_DOMAIN;
use sluice_abi::syscall::{MemoryRights, Selector, Status};
use sluice_rt::message::Message;
use sluice_rt::types::{DomainName, Quota, ThreadStart};

/// An access to init's own address space outside every mapping init made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotMapped {
    /// First byte of the refused range.
    pub address: u64,
    /// Length of the refused range.
    pub length: u64,
}

/// The system calls init makes and its own-memory accesses.
pub trait Kernel {
    /// `create_protection_domain`.
    fn create_protection_domain(
        &mut self,
        destination: Selector,
        quota: Quota,
        cpu_mask: u64,
        name: DomainName,
    ) -> Result<(), Status>;
    /// `create_thread`.
    fn create_thread(
        &mut self,
        domain: Selector,
        destination: Selector,
        start: ThreadStart,
    ) -> Result<(), Status>;
    /// `create_portal`.
    fn create_portal(
        &mut self,
        handler: Selector,
        destination: Selector,
        portal_id: u64,
    ) -> Result<(), Status>;
    /// `create_notification`.
    fn create_notification(&mut self, destination: Selector) -> Result<(), Status>;
    /// `create_interrupt`: bind `line` of `source` to `bit` of `notification`.
    fn create_interrupt(
        &mut self,
        source: Selector,
        destination: Selector,
        line: u32,
        notification: Selector,
        bit: u8,
    ) -> Result<(), Status>;
    /// `create_io_range`: ports `first .. first + count` of `source`.
    fn create_io_range(
        &mut self,
        source: Selector,
        destination: Selector,
        first: u16,
        count: u32,
    ) -> Result<(), Status>;
    /// `create_memory`.
    fn create_memory(
        &mut self,
        source: Selector,
        destination: Selector,
        offset: u64,
        size: u64,
    ) -> Result<(), Status>;
    /// `map`.
    fn map(
        &mut self,
        memory: Selector,
        domain: Selector,
        address: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
    ) -> Result<(), Status>;
    /// `unmap`.
    fn unmap(&mut self, domain: Selector, address: u64, size: u64) -> Result<(), Status>;
    /// `delegate`.
    fn delegate(
        &mut self,
        source: Selector,
        domain: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), Status>;
    /// `thread_control(Start)`.
    fn start_thread(&mut self, thread: Selector) -> Result<(), Status>;
    /// `reply_and_wait` with `reply` in init's UTCB: the called portal's id and the request.
    fn reply_and_wait(&mut self, reply: &Message) -> Result<(u64, Message), Status>;
    /// `shutdown(self, PowerOff, code)`; returns only when refused (or on a fake).
    fn shutdown(&mut self, code: u32) -> Result<(), Status>;
    /// The bytes at `address .. address + length` of init's own space, if one mapping init
    /// made covers them.
    fn read_own(&self, address: u64, length: u64) -> Result<&[u8], NotMapped>;
    /// Copies `length` bytes inside init's own space, from a mapped range to a writable one.
    fn copy_own(&mut self, destination: u64, source: u64, length: u64) -> Result<(), NotMapped>;
    /// Writes `bytes` at `destination` of init's own space (a writable mapping).
    fn write_own(&mut self, destination: u64, bytes: &[u8]) -> Result<(), NotMapped>;
    /// Zeroes `length` bytes at `destination` of init's own space (a writable mapping).
    fn zero_own(&mut self, destination: u64, length: u64) -> Result<(), NotMapped>;
}

/// Most mappings init keeps in its own space at once.
pub const MAX_OWN_MAPPINGS: usize = 16;

/// One mapping init made into its own space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnMapping {
    pub address: u64,
    pub size: u64,
    pub writable: bool,
}

/// The mappings init made into its own space: the only memory [`Kernel::read_own`] and the
/// writers may touch.
#[derive(Clone, Debug, Default)]
pub struct OwnMappings {
    mappings: heapless::Vec<OwnMapping, MAX_OWN_MAPPINGS>,
}

impl OwnMappings {
    /// Records a successful `map` if it went into init's own domain (`false` if the table is
    /// full: the range then stays inaccessible, which is safe).
    pub fn record_map(&mut self, domain: Selector, address: u64, size: u64, rights: MemoryRights) {
        if domain.0 == SELF_DOMAIN {
            let _ = self.mappings.push(OwnMapping {
                address,
                size,
                writable: rights.contains(MemoryRights::WRITE),
            });
        }
    }

    /// Forgets a successful `unmap` of init's own domain.
    pub fn record_unmap(&mut self, domain: Selector, address: u64, size: u64) {
        if domain.0 == SELF_DOMAIN {
            self.mappings
                .retain(|m| !(m.address == address && m.size == size));
        }
    }

    /// The mapping that covers `address .. address + length` (with write access if asked).
    pub fn covering(
        &self,
        address: u64,
        length: u64,
        write: bool,
    ) -> Result<OwnMapping, NotMapped> {
        let refused = NotMapped { address, length };
        let end = address.checked_add(length).ok_or(refused)?;
        self.mappings
            .iter()
            .find(|m| {
                m.address <= address
                    && m.address.checked_add(m.size).is_some_and(|top| end <= top)
                    && (m.writable || !write)
            })
            .copied()
            .ok_or(refused)
    }
}
