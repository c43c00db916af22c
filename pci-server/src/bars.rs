//! Handing BARs to owners as memory capabilities, carved from the device windows init
//! delegated (every DeviceMmio range below 4 GiB except the ECAM window and the VT-d unit).
//! A capability is page-granular: a BAR smaller than a page comes with its whole page (the
//! composer never lets two owners share a page of BARs).

use pci_api::{BarReply, Bdf, PciError};
use pci_core::bar::{Bar, BarKind};
use sluice_rt::abi::syscall::Selector;

/// Most device windows.
pub const MAX_WINDOWS: usize = 5;
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

    /// Plans the capability for `bar`: the window covering its pages.
    pub fn plan(&self, bar: &Bar) -> Result<Carve, PciError> {
        let first = bar.address - bar.address % PAGE;
        let end = bar
            .address
            .checked_add(bar.size)
            .and_then(|end| end.checked_next_multiple_of(PAGE))
            .ok_or(PciError::BarUnavailable)?;
        let (window, offset) = self.covering(first, end).ok_or(PciError::BarUnavailable)?;
        Ok(Carve {
            window,
            offset,
            size: end - first,
            reply: BarReply {
                address: bar.address,
                size: bar.size,
                offset_in_capability: bar.address - first,
                capability_size: end - first,
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
        let carve = windows().plan(&bar(0x8100_0000, 0x10_0000)).unwrap();
        assert_eq!(carve.window, Selector(6));
        assert_eq!((carve.offset, carve.size), (0x100_0000, 0x10_0000));
        assert_eq!(carve.reply.offset_in_capability, 0);
        let small = windows().plan(&bar(0x8100_0040, 0x20)).unwrap();
        assert_eq!((small.offset, small.size), (0x100_0000, PAGE));
        assert_eq!(small.reply.offset_in_capability, 0x40);
    }

    #[test]
    fn bars_outside_the_windows_or_wrapping_are_unavailable() {
        assert_eq!(
            windows().plan(&bar(0xc000_0000, 0x1000)),
            Err(PciError::BarUnavailable)
        );
        assert_eq!(
            windows().plan(&bar(0xafff_f000, 0x2000)),
            Err(PciError::BarUnavailable)
        );
        assert_eq!(
            windows().plan(&bar(u64::MAX - 0xfff, 0x2000)),
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
