//! [`Capabilities`] over the real kernel: capabilities a request carried are moved out of the
//! inbox with `derive` + `delete`, memory is measured with `memory_physical`, rights are
//! checked by mapping one page into the server itself, notifications are signalled.

use iommu_api::Rights;
use sluice_rt::abi::boot::selector::SELF_DOMAIN;
use sluice_rt::abi::syscall::{MemoryRights, Selector};
use sluice_rt::sys;
use sluice_rt::wire::INBOX;

use crate::service::Capabilities;

/// Where delegated memory is mapped for a moment to check its rights.
pub const VERIFY_VIRTUAL: u64 = 0x14_0000_0000;
/// First and last selector for capabilities clients delegate.
pub const FIRST_KEPT: u32 = 32;
pub const LAST_KEPT: u32 = 190;
const PAGE: u64 = 4096;
/// Largest delegation measured (1 GiB).
const MAX_DELEGATION_PAGES: u64 = (1 << 30) / PAGE;

/// The kernel, with a bitmap of the slots 32..=190 holding kept capabilities.
#[derive(Default)]
pub struct KernelCapabilities {
    used: [u64; 4],
}

impl KernelCapabilities {
    fn allocate(&mut self) -> Option<u32> {
        let slot = (FIRST_KEPT..=LAST_KEPT).find(|slot| {
            let index = slot - FIRST_KEPT;
            self.used
                .get((index / 64) as usize)
                .is_some_and(|word| word & (1 << (index % 64)) == 0)
        })?;
        let index = slot - FIRST_KEPT;
        let word = self.used.get_mut((index / 64) as usize)?;
        *word |= 1 << (index % 64);
        Some(slot)
    }

    fn release(&mut self, slot: u32) {
        if let Some(index) = slot.checked_sub(FIRST_KEPT) {
            if let Some(word) = self.used.get_mut((index / 64) as usize) {
                *word &= !(1 << (index % 64));
            }
        }
    }

    /// Empties the inbox after a request (a capability nobody asked for is dropped).
    pub fn clear_inbox(&mut self) {
        let _ = sys::delete(INBOX);
    }
}

impl Capabilities for KernelCapabilities {
    fn take_received(&mut self, rights: u64) -> Option<u32> {
        let slot = self.allocate()?;
        if sys::derive(INBOX, Selector(slot), rights).is_err() {
            self.release(slot);
            return None;
        }
        let _ = sys::delete(INBOX);
        Some(slot)
    }

    fn physical_range(&mut self, memory: u32) -> Option<(u64, u64)> {
        let selector = Selector(memory);
        let base = sys::memory_physical(selector, 0).ok()?;
        // The largest page offset the object has: grow, then halve the step.
        let valid = |page: u64| sys::memory_physical(selector, page * PAGE).is_ok();
        let mut last = 0u64;
        let mut step = 1u64;
        while last + step < MAX_DELEGATION_PAGES && valid(last + step) {
            last += step;
            step *= 2;
        }
        while step > 1 {
            step /= 2;
            if last + step < MAX_DELEGATION_PAGES && valid(last + step) {
                last += step;
            }
        }
        // A memory object is one contiguous range; check its last page says so.
        let end = sys::memory_physical(selector, last * PAGE).ok()?;
        (end == base + last * PAGE).then_some((base, (last + 1) * PAGE))
    }

    fn allows(&mut self, memory: u32, rights: Rights) -> bool {
        let mut wanted = MemoryRights::READ;
        if rights.contains(Rights::WRITE) {
            wanted |= MemoryRights::WRITE;
        }
        let own = Selector(SELF_DOMAIN);
        if sys::map(Selector(memory), own, VERIFY_VIRTUAL, 0, PAGE, wanted).is_err() {
            return false;
        }
        let _ = sys::unmap(own, VERIFY_VIRTUAL, PAGE);
        true
    }

    fn signal(&mut self, notification: u32) {
        let _ = sys::signal(Selector(notification), 1);
    }

    fn drop(&mut self, selector: u32) {
        let _ = sys::delete(Selector(selector));
        self.release(selector);
    }
}
