//! What counts as passing each check: the bytes the device copied equal the pattern written,
//! a fault report names the device and the page the blocked DMA aimed at, the canary reads
//! back exactly as before.

use core::fmt;

use iommu_api::FaultReport;

/// The byte the driver writes at `index` of its pattern (never zero, so a copy of nothing is
/// visible).
pub const fn pattern(index: usize) -> u8 {
    (index as u8).wrapping_mul(7).wrapping_add(0x31) | 1
}

/// The first difference between what was expected and what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the first differing byte.
    pub offset: usize,
    /// Byte expected there.
    pub expected: u8,
    /// Byte found there.
    pub found: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "byte {} is {:#04x}, expected {:#04x}",
            self.offset, self.found, self.expected
        )
    }
}

/// Compares two byte sequences of the same length (a shorter `found` differs at its end).
pub fn compare(expected: &[u8], found: &[u8]) -> Result<(), Mismatch> {
    for (offset, want) in expected.iter().enumerate() {
        let got = found.get(offset).copied();
        if got != Some(*want) {
            return Err(Mismatch {
                offset,
                expected: *want,
                found: got.unwrap_or(0),
            });
        }
    }
    Ok(())
}

/// Why a fault report is not the one expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMismatch {
    /// Another requester id.
    Device { found: u16 },
    /// Another page.
    Address { found: u64 },
    /// A read fault for a write.
    Kind,
}

impl fmt::Display for FaultMismatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device { found } => write!(formatter, "reported for requester {found:#06x}"),
            Self::Address { found } => write!(formatter, "reported at {found:#x}"),
            Self::Kind => write!(formatter, "reported as a read"),
        }
    }
}

/// Checks that `report` is the write fault of `device` at the page of `address`.
pub fn fault_matches(report: &FaultReport, device: u16, address: u64) -> Result<(), FaultMismatch> {
    if report.device.0 != device {
        return Err(FaultMismatch::Device {
            found: report.device.0,
        });
    }
    if report.address != address & !0xfff {
        return Err(FaultMismatch::Address {
            found: report.address,
        });
    }
    if report.kind != 0 {
        return Err(FaultMismatch::Kind);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_has_no_zero_bytes() {
        assert!((0..4096).all(|index| pattern(index) != 0));
        assert_ne!(pattern(0), pattern(1));
    }

    #[test]
    fn comparisons_name_the_first_difference() {
        assert_eq!(compare(&[1, 2, 3], &[1, 2, 3]), Ok(()));
        assert_eq!(
            compare(&[1, 2, 3], &[1, 9, 3]),
            Err(Mismatch {
                offset: 1,
                expected: 2,
                found: 9
            })
        );
        assert_eq!(
            compare(&[1, 2], &[1]),
            Err(Mismatch {
                offset: 1,
                expected: 2,
                found: 0
            })
        );
    }

    #[test]
    fn fault_reports_must_name_the_device_page_and_direction() {
        let report = FaultReport {
            device: iommu_api::Bdf(0x0900),
            reason: 5,
            kind: 0,
            reserved: 0,
            address: 0x20_0000,
        };
        assert_eq!(fault_matches(&report, 0x0900, 0x20_0040), Ok(()));
        assert_eq!(
            fault_matches(&report, 0x0901, 0x20_0000),
            Err(FaultMismatch::Device { found: 0x0900 })
        );
        assert_eq!(
            fault_matches(&report, 0x0900, 0x30_0000),
            Err(FaultMismatch::Address { found: 0x20_0000 })
        );
        let read = FaultReport { kind: 1, ..report };
        assert_eq!(
            fault_matches(&read, 0x0900, 0x20_0000),
            Err(FaultMismatch::Kind)
        );
    }
}
