//! Kernel-memory quotas. Every domain has a limit on the kernel resources charged to it: bytes
//! of kernel memory, object-table entries and mapping records. Creating charges the creating
//! domain; freeing refunds exactly what was charged. A new domain's limit is carved out of its
//! creator's (donation), so the sum of all limits never exceeds what the kernel gave init: no
//! domain can exhaust the kernel for the others.

use sluice_abi::syscall::Status;

/// An amount of kernel resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Bytes of kernel memory (object storage, capability tables, page tables the kernel allocates).
    pub bytes: u64,
    /// Entries of the kernel object table.
    pub objects: u32,
    /// Mapping records (one per `map` or `io_allow`).
    pub mappings: u32,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources {
        bytes: 0,
        objects: 0,
        mappings: 0,
    };

    /// Component-wise sum, `None` on overflow.
    pub const fn checked_add(self, other: Resources) -> Option<Resources> {
        let (Some(bytes), Some(objects), Some(mappings)) = (
            self.bytes.checked_add(other.bytes),
            self.objects.checked_add(other.objects),
            self.mappings.checked_add(other.mappings),
        ) else {
            return None;
        };
        Some(Resources {
            bytes,
            objects,
            mappings,
        })
    }

    /// Component-wise difference, `None` when any component would go negative.
    pub const fn checked_sub(self, other: Resources) -> Option<Resources> {
        let (Some(bytes), Some(objects), Some(mappings)) = (
            self.bytes.checked_sub(other.bytes),
            self.objects.checked_sub(other.objects),
            self.mappings.checked_sub(other.mappings),
        ) else {
            return None;
        };
        Some(Resources {
            bytes,
            objects,
            mappings,
        })
    }

    /// True when every component is at most the other's.
    pub const fn fits_within(self, other: Resources) -> bool {
        self.bytes <= other.bytes
            && self.objects <= other.objects
            && self.mappings <= other.mappings
    }

    /// True when every component is zero.
    pub const fn is_zero(self) -> bool {
        self.bytes == 0 && self.objects == 0 && self.mappings == 0
    }
}

/// One domain's limit and current use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    limit: Resources,
    used: Resources,
}

impl Quota {
    /// A fresh quota with nothing used.
    pub const fn new(limit: Resources) -> Quota {
        Quota {
            limit,
            used: Resources::ZERO,
        }
    }

    /// The limit.
    pub const fn limit(&self) -> Resources {
        self.limit
    }

    /// What is charged now.
    pub const fn used(&self) -> Resources {
        self.used
    }

    /// What could still be charged.
    pub const fn remaining(&self) -> Resources {
        match self.limit.checked_sub(self.used) {
            Some(remaining) => remaining,
            None => Resources::ZERO,
        }
    }

    /// Check, without changing anything, that `amount` can be charged.
    pub const fn check(&self, amount: Resources) -> Result<(), Status> {
        match self.used.checked_add(amount) {
            Some(total) if total.fits_within(self.limit) => Ok(()),
            _ => Err(Status::QuotaExceeded),
        }
    }

    /// Charge `amount`, or change nothing and return `QuotaExceeded`.
    pub fn charge(&mut self, amount: Resources) -> Result<(), Status> {
        self.check(amount)?;
        // `check` proved the sum fits; keep the arithmetic checked anyway.
        self.used = self.used.checked_add(amount).ok_or(Status::QuotaExceeded)?;
        Ok(())
    }

    /// Give back an amount charged earlier. Refunding more than was charged clamps at zero
    /// (it would be a kernel bug; the model's tests check that it never happens).
    pub fn refund(&mut self, amount: Resources) {
        self.used = Resources {
            bytes: self.used.bytes.saturating_sub(amount.bytes),
            objects: self.used.objects.saturating_sub(amount.objects),
            mappings: self.used.mappings.saturating_sub(amount.mappings),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_OBJECT: Resources = Resources {
        bytes: 100,
        objects: 1,
        mappings: 0,
    };

    #[test]
    fn charge_and_refund_are_exact_and_a_refused_charge_changes_nothing() {
        let mut quota = Quota::new(Resources {
            bytes: 250,
            objects: 10,
            mappings: 0,
        });
        quota.charge(ONE_OBJECT).unwrap();
        quota.charge(ONE_OBJECT).unwrap();
        let before = quota;
        assert_eq!(quota.charge(ONE_OBJECT), Err(Status::QuotaExceeded));
        assert_eq!(quota, before);
        let mapping = Resources {
            mappings: 1,
            ..Resources::ZERO
        };
        assert_eq!(quota.charge(mapping), Err(Status::QuotaExceeded));
        quota.refund(ONE_OBJECT);
        quota.refund(ONE_OBJECT);
        assert!(quota.used().is_zero());
        assert_eq!(quota.remaining(), quota.limit());
    }

    #[test]
    fn overflowing_charges_are_refused() {
        let mut quota = Quota::new(Resources {
            bytes: u64::MAX,
            objects: u32::MAX,
            mappings: 0,
        });
        quota.charge(ONE_OBJECT).unwrap();
        let huge = Resources {
            bytes: u64::MAX,
            ..Resources::ZERO
        };
        assert_eq!(quota.charge(huge), Err(Status::QuotaExceeded));
    }
}
