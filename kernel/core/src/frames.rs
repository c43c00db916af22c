//! Which physical frames the kernel may hand out: the available memory-map regions, minus the
//! first MiB (firmware data), the kernel image, the boot modules and anything else reserved,
//! cut to whole 4 KiB frames. Pure arithmetic on ranges, so it is tested on the host.

use crate::multiboot2::{Region, RegionKind};

/// Most disjoint free ranges kept.
pub const MAX_RANGES: usize = 64;
const FRAME: u64 = 4096;
/// Below this, memory belongs to the firmware (BDA, EBDA, real-mode IVT) and AP start-up code.
pub const LOW_LIMIT: u64 = 1 << 20;

/// A half-open physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Free frame ranges: `regions` that are available, minus `reserved`, frame-aligned inward.
/// Ranges past `limit` (what the kernel maps) are cut off. Overflowing [`MAX_RANGES`] drops the
/// smallest pieces, never hands out reserved memory.
pub fn free_ranges(
    regions: &[Region],
    reserved: &[Range],
    limit: u64,
) -> heapless::Vec<Range, MAX_RANGES> {
    let mut out: heapless::Vec<Range, MAX_RANGES> = heapless::Vec::new();
    for region in regions.iter().filter(|r| r.kind == RegionKind::Available) {
        let start = region.base.max(LOW_LIMIT).next_multiple_of(FRAME);
        let end = region.end().min(limit) & !(FRAME - 1);
        if start < end {
            subtract_into(Range { start, end }, reserved, &mut out);
        }
    }
    out
}

/// Adds `range` minus every reserved range (each rounded outward to frames) to `out`.
fn subtract_into(range: Range, reserved: &[Range], out: &mut heapless::Vec<Range, MAX_RANGES>) {
    let mut pieces: heapless::Vec<Range, MAX_RANGES> = heapless::Vec::new();
    let _ = pieces.push(range);
    for hole in reserved {
        let hole = Range {
            start: hole.start & !(FRAME - 1),
            end: hole.end.next_multiple_of(FRAME),
        };
        let mut next: heapless::Vec<Range, MAX_RANGES> = heapless::Vec::new();
        for piece in &pieces {
            if hole.end <= piece.start || piece.end <= hole.start {
                let _ = next.push(*piece);
                continue;
            }
            if piece.start < hole.start {
                let _ = next.push(Range {
                    start: piece.start,
                    end: hole.start,
                });
            }
            if hole.end < piece.end {
                let _ = next.push(Range {
                    start: hole.end,
                    end: piece.end,
                });
            }
        }
        pieces = next;
    }
    for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
        if out.push(piece).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(base: u64, length: u64) -> Region {
        Region {
            base,
            length,
            kind: RegionKind::Available,
        }
    }

    #[test]
    fn removes_low_memory_kernel_and_modules() {
        let regions = [
            available(0, 0x9fc00),
            Region {
                base: 0xf0000,
                length: 0x10000,
                kind: RegionKind::Reserved,
            },
            available(0x10_0000, 0x1ff0_0000),
        ];
        let reserved = [
            Range {
                start: 0x10_0000,
                end: 0x18_a123,
            },
            Range {
                start: 0x28_b000,
                end: 0x66_3010,
            },
        ];
        let free = free_ranges(&regions, &reserved, 4 << 30);
        assert_eq!(
            free.as_slice(),
            &[
                Range {
                    start: 0x18_b000,
                    end: 0x28_b000
                },
                Range {
                    start: 0x66_4000,
                    end: 0x2000_0000
                }
            ]
        );
    }

    #[test]
    fn cuts_at_the_mapped_limit_and_skips_unaligned_slivers() {
        let regions = [
            available(0x10_0800, 0x800),
            available(0x1_0000_0000, 0x1_0000_0000),
        ];
        let free = free_ranges(&regions, &[], 0x1_8000_0000);
        assert_eq!(
            free.as_slice(),
            &[Range {
                start: 0x1_0000_0000,
                end: 0x1_8000_0000
            }]
        );
    }

    proptest::proptest! {
        #[test]
        fn free_ranges_never_touch_reserved_memory(
            bases in proptest::collection::vec((0u64..1 << 34, 0u64..1 << 30), 1..6),
            holes in proptest::collection::vec((0u64..1 << 34, 0u64..1 << 28), 0..6),
        ) {
            let regions: Vec<Region> = bases.iter().map(|&(b, l)| available(b, l)).collect();
            let reserved: Vec<Range> = holes.iter().map(|&(s, l)| Range { start: s, end: s + l }).collect();
            for free in free_ranges(&regions, &reserved, 1 << 36) {
                proptest::prop_assert!(free.start >= LOW_LIMIT && free.start % FRAME == 0 && free.end % FRAME == 0);
                for hole in &reserved {
                    proptest::prop_assert!(hole.end <= free.start || free.end <= hole.start || hole.is_empty());
                }
                proptest::prop_assert!(regions.iter().any(|r| r.base <= free.start && free.end <= r.end()));
            }
        }
    }
}
