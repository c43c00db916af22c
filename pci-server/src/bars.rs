//! Handing BARs to owners as memory capabilities, carved from the device windows init
//! delegated (every DeviceMmio range below 4 GiB except the ECAM window and the VT-d unit).
//! A capability is page-granular: a BAR smaller than a page comes with its whole page (the
//! composer never lets two owners share a page of BARs). The pages holding a function's MSI-X
//! table or PBA are never handed out (PCIe Base spec 6.0 section 7.7.2: no other registers
//! share their naturally aligned 4 KiB ranges), so a BAR is handed out in parts: the runs of
//! its pages around them, in address order.

use pci_api::{BarReply, Bdf, PciError};
use pci_core::bar::{Bar, BarKind};
use sluice_rt::abi::syscall::Selector;

/// Most device windows (selectors 6..=15; as many as init's argument words carry, see
/// [`crate::arguments`]).
pub const MAX_WINDOWS: usize = 10;
/// Most BAR capabilities handed out at once.
pub const MAX_HANDED_OUT: usize = 32;
/// The page size.
const PAGE: u64 = 4096;

/// A device window: the capability and the physical range it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceWindow {
    /// The capability (read, write, retype).
    pub selector: Selector,
    /// Physical base.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

/// Where a BAR's capability comes from: which window, at which offset, how many bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carve {
    /// The window's capability.
    pub window: Selector,
    /// Offset of the first page in the window.
    pub offset: u64,
    /// Bytes (page multiple).
    pub size: u64,
    /// What the owner is told.
    pub reply: BarReply,
}

/// The memory BAR with register index `index` of a function's BARs.
pub fn memory_bar(bars: &[Bar], index: u8) -> Result<Bar, PciError> {
    bars.iter()
        .find(|bar| bar.index == index)
        .filter(|bar| {
            matches!(
                bar.kind,
                BarKind::Memory32 | BarKind::Memory64 | BarKind::MemoryBelow1M
            )
        })
        .filter(|bar| bar.size > 0 && bar.address != 0)
        .copied()
        .ok_or(PciError::NoSuchBar)
}

/// The windows and the capabilities carved from them.
#[derive(Clone, Debug, Default)]
pub struct DeviceWindows {
    windows: heapless::Vec<DeviceWindow, MAX_WINDOWS>,
    /// (function, carved capability) of every BAR handed out.
    handed_out: heapless::Vec<(Bdf, Selector), MAX_HANDED_OUT>,
}

impl DeviceWindows {
    /// The windows init delegated.
    pub fn new(windows: heapless::Vec<DeviceWindow, MAX_WINDOWS>) -> Self {
        DeviceWindows {
            windows,
            handed_out: heapless::Vec::new(),
        }
    }

    /// Plans the capability for part `part` of `bar`: the runs of the BAR's pages outside the
    /// page ranges `excluded` (first, end), in address order, and the window covering the run.
    /// Errors: `BarPartUnavailable` (no such run), `BarUnavailable` (no window covers it).
    pub fn plan(&self, bar: &Bar, excluded: &[(u64, u64)], part: u8) -> Result<Carve, PciError> {
        let first = bar.address - bar.address % PAGE;
        let end = bar
            .address
            .checked_add(bar.size)
            .and_then(|end| end.checked_next_multiple_of(PAGE))
            .ok_or(PciError::BarUnavailable)?;
        let runs = runs_outside(first, end, excluded);
        let (run_first, run_end) = runs
            .get(usize::from(part))
            .copied()
            .ok_or(PciError::BarPartUnavailable)?;
        let (window, offset) = self
            .covering(run_first, run_end)
            .ok_or(PciError::BarUnavailable)?;
        Ok(Carve {
            window,
            offset,
            size: run_end - run_first,
            reply: BarReply {
                address: bar.address,
                size: bar.size,
                offset_in_capability: bar.address.saturating_sub(run_first),
                capability_size: run_end - run_first,
                part_offset: run_first.saturating_sub(bar.address),
                parts: runs.len() as u32,
                reserved: 0,
            },
        })
    }

    /// The window covering physical `first..end`, with the offset of `first` in it.
    pub fn covering(&self, first: u64, end: u64) -> Option<(Selector, u64)> {
        self.windows
            .iter()
            .find(|w| w.base <= first && w.base.checked_add(w.size).is_some_and(|top| end <= top))
            .map(|w| (w.selector, first - w.base))
    }

    /// Remembers a capability handed out for `bdf`; `false` when the table is full.
    pub fn record(&mut self, bdf: Bdf, selector: Selector) -> bool {
        self.handed_out.push((bdf, selector)).is_ok()
    }

    /// Forgets and returns the capabilities handed out for `bdf` (to revoke them).
    pub fn take(&mut self, bdf: Bdf) -> heapless::Vec<Selector, MAX_HANDED_OUT> {
        let taken = self
            .handed_out
            .iter()
            .filter(|(owner, _)| *owner == bdf)
            .map(|(_, selector)| *selector)
            .collect();
        self.handed_out.retain(|(owner, _)| *owner != bdf);
        taken
    }
}

/// The page runs of `first..end` outside every range of `excluded` (page aligned; at most
/// four ranges are considered), in address order.
fn runs_outside(first: u64, end: u64, excluded: &[(u64, u64)]) -> heapless::Vec<(u64, u64), 5> {
    let mut holes: heapless::Vec<(u64, u64), 4> = excluded.iter().take(4).copied().collect();
    holes.sort_unstable();
    let mut runs = heapless::Vec::new();
    let mut start = first;
    for (low, high) in holes {
        let (low, high) = (low.clamp(first, end), high.clamp(first, end));
        if high <= start {
            continue;
        }
        if low > start {
            let _ = runs.push((start, low));
        }
        start = start.max(high);
    }
    if start < end {
        let _ = runs.push((start, end));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> DeviceWindows {
        let mut list = heapless::Vec::new();
        list.push(DeviceWindow {
            selector: Selector(6),
            base: 0x8000_0000,
            size: 0x3000_0000,
        })
        .unwrap();
        DeviceWindows::new(list)
    }

    fn bar(address: u64, size: u64) -> Bar {
        Bar {
            index: 0,
            kind: BarKind::Memory32,
            prefetchable: false,
            address,
            size,
        }
    }

    #[test]
    fn plans_page_granular_carves_inside_a_window() {
        let carve = windows()
            .plan(&bar(0x8100_0000, 0x10_0000), &[], 0)
            .unwrap();
        assert_eq!(carve.window, Selector(6));
        assert_eq!((carve.offset, carve.size), (0x100_0000, 0x10_0000));
        assert_eq!(carve.reply.offset_in_capability, 0);
        assert_eq!((carve.reply.part_offset, carve.reply.parts), (0, 1));
        let small = windows().plan(&bar(0x8100_0040, 0x20), &[], 0).unwrap();
        assert_eq!((small.offset, small.size), (0x100_0000, PAGE));
        assert_eq!(small.reply.offset_in_capability, 0x40);
        assert_eq!(
            windows().plan(&bar(0x8100_0000, 0x10_0000), &[], 1),
            Err(PciError::BarPartUnavailable)
        );
    }

    #[test]
    fn msix_pages_are_cut_out_of_a_bar() {
        // A 16 KiB BAR with the table in its third page and the PBA in its fourth (nvme-like).
        let nvme = bar(0x8100_0000, 0x4000);
        let msix = [(0x8100_2000, 0x8100_4000)];
        let part = windows().plan(&nvme, &msix, 0).unwrap();
        assert_eq!((part.offset, part.size), (0x100_0000, 0x2000));
        assert_eq!((part.reply.part_offset, part.reply.parts), (0, 1));
        assert_eq!(
            windows().plan(&nvme, &msix, 1),
            Err(PciError::BarPartUnavailable)
        );
        // Table and PBA apart in the middle: three parts around them.
        let apart = [(0x8100_1000, 0x8100_2000), (0x8100_3000, 0x8100_4000)];
        let big = bar(0x8100_0000, 0x8000);
        let parts: Vec<(u64, u64, u64)> = (0..3)
            .map(|part| {
                let carve = windows().plan(&big, &apart, part).unwrap();
                assert_eq!(carve.reply.parts, 3);
                assert_eq!(carve.reply.offset_in_capability, 0);
                (carve.offset, carve.size, carve.reply.part_offset)
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (0x100_0000, 0x1000, 0),
                (0x100_2000, 0x1000, 0x2000),
                (0x100_4000, 0x4000, 0x4000)
            ]
        );
        // A BAR holding nothing but the MSI-X structures (e1000e BAR3) has no part at all.
        let only = [(0x8100_0000, 0x8100_1000), (0x8100_2000, 0x8100_3000)];
        let e1000e = bar(0x8100_0000, 0x4000);
        let carve = windows().plan(&e1000e, &only, 0).unwrap();
        assert_eq!(
            (carve.offset, carve.size, carve.reply.part_offset),
            (0x100_1000, 0x1000, 0x1000)
        );
        let whole = [(0x8100_0000, 0x8100_4000)];
        assert_eq!(
            windows().plan(&e1000e, &whole, 0),
            Err(PciError::BarPartUnavailable)
        );
        // Ranges reaching past the BAR (a bogus offset) cut only the BAR's own pages.
        assert_eq!(
            windows().plan(&e1000e, &[(0x8000_0000, 0x9000_0000)], 0),
            Err(PciError::BarPartUnavailable)
        );
    }

    #[test]
    fn bars_outside_the_windows_or_wrapping_are_unavailable() {
        assert_eq!(
            windows().plan(&bar(0xc000_0000, 0x1000), &[], 0),
            Err(PciError::BarUnavailable)
        );
        assert_eq!(
            windows().plan(&bar(0xafff_f000, 0x2000), &[], 0),
            Err(PciError::BarUnavailable)
        );
        assert_eq!(
            windows().plan(&bar(u64::MAX - 0xfff, 0x2000), &[], 0),
            Err(PciError::BarUnavailable)
        );
    }

    #[test]
    fn only_implemented_memory_bars_are_handed_out() {
        let io = Bar {
            kind: BarKind::Io,
            index: 1,
            ..bar(0xc000, 0x20)
        };
        let bars = [bar(0x8100_0000, 0x1000), io];
        assert_eq!(memory_bar(&bars, 0).unwrap().address, 0x8100_0000);
        assert_eq!(memory_bar(&bars, 1), Err(PciError::NoSuchBar));
        assert_eq!(memory_bar(&bars, 2), Err(PciError::NoSuchBar));
        let mut handed = windows();
        let bdf = Bdf::new(5, 0, 0).unwrap();
        assert!(handed.record(bdf, Selector(40)));
        assert!(handed.record(Bdf::new(6, 0, 0).unwrap(), Selector(41)));
        assert_eq!(handed.take(bdf).as_slice(), &[Selector(40)]);
        assert!(handed.take(bdf).is_empty());
    }
}
