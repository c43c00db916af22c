//! The real [`Kernel`]: `sluice-rt` system calls, plus own-memory access limited to the
//! mappings init made into its own space (tracked here), so no slice ever covers memory that
//! is not mapped.
#![allow(unsafe_code)]

use sluice_abi::boot::selector::SELF_DOMAIN;
use sluice_abi::syscall::{MemoryRights, Selector, ShutdownKind, Status};
use sluice_rt::message::Message;
use sluice_rt::sys;
use sluice_rt::types::{DomainName, Quota, ThreadStart};
use sluice_rt::utcb::MessageBuffer;

use crate::kernel::{Kernel, NotMapped, OwnMappings};

/// Init's kernel on bare metal.
pub struct SystemKernel {
    buffer: MessageBuffer,
    mappings: OwnMappings,
}

impl SystemKernel {
    /// Init's kernel, replying through `buffer` (init's own UTCB).
    pub fn new(buffer: MessageBuffer) -> SystemKernel {
        SystemKernel {
            buffer,
            mappings: OwnMappings::default(),
        }
    }
}

fn length_of(length: u64, address: u64) -> Result<usize, NotMapped> {
    usize::try_from(length).map_err(|_| NotMapped { address, length })
}

impl Kernel for SystemKernel {
    fn create_protection_domain(
        &mut self,
        destination: Selector,
        quota: Quota,
        cpu_mask: u64,
        name: DomainName,
    ) -> Result<(), Status> {
        sys::create_protection_domain(destination, quota, cpu_mask, name)
    }
    fn create_thread(
        &mut self,
        domain: Selector,
        destination: Selector,
        start: ThreadStart,
    ) -> Result<(), Status> {
        sys::create_thread(domain, destination, start)
    }
    fn create_portal(
        &mut self,
        handler: Selector,
        destination: Selector,
        portal_id: u64,
    ) -> Result<(), Status> {
        sys::create_portal(handler, destination, portal_id)
    }
    fn create_notification(&mut self, destination: Selector) -> Result<(), Status> {
        sys::create_notification(destination)
    }
    fn create_interrupt(
        &mut self,
        source: Selector,
        destination: Selector,
        line: u32,
        notification: Selector,
        bit: u8,
    ) -> Result<(), Status> {
        sys::create_interrupt(source, destination, line, notification, bit)
    }
    fn create_io_range(
        &mut self,
        source: Selector,
        destination: Selector,
        first: u16,
        count: u32,
    ) -> Result<(), Status> {
        sys::create_io_range(source, destination, first, count)
    }
    fn create_memory(
        &mut self,
        source: Selector,
        destination: Selector,
        offset: u64,
        size: u64,
    ) -> Result<(), Status> {
        sys::create_memory(source, destination, offset, size)
    }
    fn map(
        &mut self,
        memory: Selector,
        domain: Selector,
        address: u64,
        offset: u64,
        size: u64,
        rights: MemoryRights,
    ) -> Result<(), Status> {
        sys::map(memory, domain, address, offset, size, rights)?;
        self.mappings.record_map(domain, address, size, rights);
        Ok(())
    }
    fn unmap(&mut self, domain: Selector, address: u64, size: u64) -> Result<(), Status> {
        // Forget the range first: nothing may touch it once the kernel is asked to remove it.
        self.mappings.record_unmap(domain, address, size);
        sys::unmap(domain, address, size)
    }
    fn delegate(
        &mut self,
        source: Selector,
        domain: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), Status> {
        sys::delegate(source, domain, destination, rights)
    }
    fn start_thread(&mut self, thread: Selector) -> Result<(), Status> {
        sys::start_thread(thread)
    }
    fn reply_and_wait(&mut self, reply: &Message) -> Result<(u64, Message), Status> {
        self.buffer.reply_and_wait(reply)
    }
    fn shutdown(&mut self, code: u32) -> Result<(), Status> {
        sys::shutdown(Selector(SELF_DOMAIN), ShutdownKind::PowerOff, code)
    }
    fn read_own(&self, address: u64, length: u64) -> Result<&[u8], NotMapped> {
        self.mappings.covering(address, length, false)?;
        let length = length_of(length, address)?;
        // SAFETY: one mapping init made into its own space covers the whole range and stays
        // until `unmap`, which needs `&mut self`, so it outlives the returned borrow; memory
        // is plain bytes.
        Ok(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
    }
    fn copy_own(&mut self, destination: u64, source: u64, length: u64) -> Result<(), NotMapped> {
        self.mappings.covering(source, length, false)?;
        self.mappings.covering(destination, length, true)?;
        let count = length_of(length, destination)?;
        // SAFETY: both ranges lie in mappings init made (the destination writable); no
        // reference covers either; `copy` allows them to overlap.
        unsafe { core::ptr::copy(source as *const u8, destination as *mut u8, count) };
        Ok(())
    }
    fn write_own(&mut self, destination: u64, bytes: &[u8]) -> Result<(), NotMapped> {
        let length = bytes.len() as u64;
        self.mappings.covering(destination, length, true)?;
        // SAFETY: a writable mapping init made covers the range; `bytes` is elsewhere (a Rust
        // value), so the ranges do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), destination as *mut u8, bytes.len())
        };
        Ok(())
    }
    fn zero_own(&mut self, destination: u64, length: u64) -> Result<(), NotMapped> {
        self.mappings.covering(destination, length, true)?;
        let count = length_of(length, destination)?;
        // SAFETY: a writable mapping init made covers the range.
        unsafe { core::ptr::write_bytes(destination as *mut u8, 0, count) };
        Ok(())
    }
}
