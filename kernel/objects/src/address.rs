//! Address newtypes and checked user memory ranges. A user address is an *allegation* until it
//! has been checked to be canonical and in the user half (Hubris's `USlice` idea): only
//! [`UserVirt::new`] and [`UserSlice::new`] make them, and both check.

use sluice_abi::syscall::{Status, PAGE_SIZE};

/// End (exclusive) of the user half. x86-64 with 4-level paging has 48-bit canonical
/// addresses whose lower half ends at `1 << 47` (Intel SDM Vol. 1, 3.3.7.1 "Canonical
/// Addressing"). The last page below it is kept unmapped, as Linux does, so that a `sysret`
/// can never return to a non-canonical RIP (SDM Vol. 2B "SYSRET": #GP in ring 0 when RCX is not
/// canonical).
pub const USER_END: u64 = (1 << 47) - PAGE_SIZE;

/// A virtual address checked to lie in the user half, below [`USER_END`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserVirt(u64);

impl UserVirt {
    /// Check a raw address from user space.
    pub const fn new(raw: u64) -> Result<UserVirt, Status> {
        if raw < USER_END {
            Ok(UserVirt(raw))
        } else {
            Err(Status::BadAddress)
        }
    }

    /// Check an address that must also be page-aligned.
    pub const fn new_page_aligned(raw: u64) -> Result<UserVirt, Status> {
        match UserVirt::new(raw) {
            Ok(address) if raw.is_multiple_of(PAGE_SIZE) => Ok(address),
            Ok(_) => Err(Status::Misaligned),
            Err(status) => Err(status),
        }
    }

    /// The address value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A range of user memory `base .. base + length`, checked to lie wholly in the user half
/// without wrapping. Holding one does not mean the memory is mapped: the kernel's copy routine
/// must still handle a page fault, but it can never be made to touch kernel memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserSlice {
    base: UserVirt,
    length: u64,
}

impl UserSlice {
    /// Check a raw base and length from user space.
    pub const fn new(base: u64, length: u64) -> Result<UserSlice, Status> {
        let Ok(base_address) = UserVirt::new(base) else {
            return Err(Status::BadAddress);
        };
        match base.checked_add(length) {
            Some(end) if end <= USER_END => Ok(UserSlice {
                base: base_address,
                length,
            }),
            _ => Err(Status::BadAddress),
        }
    }

    /// Check a range that must also be page-aligned in base and length, and not empty.
    pub const fn new_pages(base: u64, length: u64) -> Result<UserSlice, Status> {
        if !base.is_multiple_of(PAGE_SIZE) || !length.is_multiple_of(PAGE_SIZE) || length == 0 {
            // A bad address is reported before misalignment so the kernel half is never "almost ok".
            return match UserSlice::new(base, length) {
                Err(status) => Err(status),
                Ok(_) => Err(Status::Misaligned),
            };
        }
        UserSlice::new(base, length)
    }

    /// First address.
    pub const fn base(self) -> UserVirt {
        self.base
    }

    /// Length in bytes.
    pub const fn length(self) -> u64 {
        self.length
    }

    /// End address (exclusive); never above [`USER_END`].
    pub const fn end(self) -> u64 {
        self.base.0 + self.length
    }

    /// True when the two ranges share at least one byte.
    pub const fn overlaps(self, other: UserSlice) -> bool {
        self.base.0 < other.end() && other.base.0 < self.end()
    }
}

/// A host-physical address (RAM frame or device MMIO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPhys(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_half_and_non_canonical_addresses_are_rejected() {
        assert_eq!(UserVirt::new(0x1000), Ok(UserVirt(0x1000)));
        assert_eq!(
            UserVirt::new(USER_END - 1).map(UserVirt::get),
            Ok(USER_END - 1)
        );
        for bad in [
            USER_END,
            1 << 47,
            0x0000_8000_0000_0000,
            0xffff_8000_0000_0000,
            u64::MAX,
        ] {
            assert_eq!(UserVirt::new(bad), Err(Status::BadAddress), "{bad:#x}");
        }
        assert_eq!(UserVirt::new_page_aligned(0x1001), Err(Status::Misaligned));
    }

    #[test]
    fn slices_may_not_wrap_or_leave_the_user_half() {
        assert!(UserSlice::new(USER_END - 16, 16).is_ok());
        assert_eq!(UserSlice::new(USER_END - 16, 17), Err(Status::BadAddress));
        assert_eq!(UserSlice::new(0x1000, u64::MAX), Err(Status::BadAddress));
        assert_eq!(UserSlice::new(0, 0).map(UserSlice::length), Ok(0));
        assert_eq!(UserSlice::new_pages(0x1000, 0), Err(Status::Misaligned));
        assert_eq!(UserSlice::new_pages(0x1000, 0x800), Err(Status::Misaligned));
        assert_eq!(
            UserSlice::new_pages(!0xfff, 0x1000),
            Err(Status::BadAddress)
        );
        let first = UserSlice::new_pages(0x1000, 0x2000).unwrap();
        let second = UserSlice::new_pages(0x2000, 0x1000).unwrap();
        let third = UserSlice::new_pages(0x3000, 0x1000).unwrap();
        assert!(first.overlaps(second));
        assert!(!first.overlaps(third));
    }
}
