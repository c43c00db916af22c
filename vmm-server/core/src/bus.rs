//! Byte-level device buses (the Cloud Hypervisor `BusDevice` model): one bus for I/O ports and
//! one for MMIO, each routing address ranges to devices. Overlapping registrations are refused;
//! an access no device claims, or that a device refuses, is recorded as an [`UnhandledAccess`]
//! (reads then return all ones, as on a real bus with nothing decoding the address), never
//! dropped silently.
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

/// Why a device refused an access inside its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// No register at this offset.
    UnknownRegister,
    /// The device does not support an access of this width or alignment here.
    UnsupportedWidth,
    /// The access spans more than one register.
    CrossesRegister,
    /// A write to a read-only register.
    ReadOnly,
    /// A read of a write-only register.
    WriteOnly,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessError::UnknownRegister => "no register at this offset",
            AccessError::UnsupportedWidth => "unsupported access width or alignment",
            AccessError::CrossesRegister => "access spans more than one register",
            AccessError::ReadOnly => "write to a read-only register",
            AccessError::WriteOnly => "read of a write-only register",
        })
    }
}

/// A device model behind a bus: offsets are relative to the start of its range, `data.len()` is
/// the access width (1..=8 bytes, little-endian).
pub trait BusDevice {
    /// Fills `data` with the bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError>;
    /// Writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError>;
}

/// Which address space a bus decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// I/O ports (16-bit addresses).
    Port,
    /// Guest-physical MMIO.
    Mmio,
}

impl fmt::Display for BusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusKind::Port => "port",
            BusKind::Mmio => "MMIO",
        })
    }
}

/// Why a registration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// Zero length, or a range past the end of the address space.
    InvalidRange {
        /// Requested base.
        base: u64,
        /// Requested length.
        length: u64,
    },
    /// The range overlaps an existing registration.
    Overlap {
        /// Requested base.
        base: u64,
        /// Base of the device already there.
        existing_base: u64,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::InvalidRange { base, length } => {
                write!(f, "invalid bus range {base:#x} length {length:#x}")
            }
            BusError::Overlap {
                base,
                existing_base,
            } => write!(
                f,
                "range at {base:#x} overlaps the device registered at {existing_base:#x}"
            ),
        }
    }
}

/// Why an access was not handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnhandledCause {
    /// No device is registered at the address.
    NoDevice,
    /// The access runs past the end of the device's range.
    PastRangeEnd,
    /// The width is not 1..=8 bytes.
    BadWidth,
    /// The device refused it.
    Refused(AccessError),
}

/// One access that no device handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnhandledAccess {
    /// Which bus.
    pub bus: BusKind,
    /// Port or guest-physical address.
    pub address: u64,
    /// Width in bytes.
    pub width: usize,
    /// `true` for a write.
    pub write: bool,
    /// Why.
    pub cause: UnhandledCause,
}

impl fmt::Display for UnhandledAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = if self.write { "write" } else { "read" };
        write!(
            f,
            "unhandled {} {direction} at {:#x} ({} bytes): ",
            self.bus, self.address, self.width
        )?;
        match self.cause {
            UnhandledCause::NoDevice => f.write_str("no device"),
            UnhandledCause::PastRangeEnd => f.write_str("runs past the device's range"),
            UnhandledCause::BadWidth => f.write_str("width not 1..=8 bytes"),
            UnhandledCause::Refused(error) => write!(f, "{error}"),
        }
    }
}

/// Most unhandled accesses kept until [`Bus::take_unhandled`]; later ones are only counted.
pub const UNHANDLED_LOG_CAPACITY: usize = 32;

struct Entry {
    base: u64,
    length: u64,
    device: Box<dyn BusDevice>,
}

/// An address space routing ranges to devices.
pub struct Bus {
    kind: BusKind,
    entries: Vec<Entry>,
    unhandled: Vec<UnhandledAccess>,
    unhandled_dropped: u64,
}

impl Bus {
    /// An empty bus.
    pub fn new(kind: BusKind) -> Bus {
        Bus {
            kind,
            entries: Vec::new(),
            unhandled: Vec::new(),
            unhandled_dropped: 0,
        }
    }

    /// The address space this bus decodes.
    pub fn kind(&self) -> BusKind {
        self.kind
    }

    fn limit(&self) -> u64 {
        match self.kind {
            BusKind::Port => 0x1_0000,
            // Architectural maximum physical address width (SDM Vol. 3A section 4.1.4).
            BusKind::Mmio => 1 << 52,
        }
    }

    /// Routes `[base, base + length)` to `device`; refuses empty, out-of-space or overlapping
    /// ranges without changing the bus.
    pub fn register(
        &mut self,
        base: u64,
        length: u64,
        device: Box<dyn BusDevice>,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(length)
            .filter(|&end| length != 0 && end <= self.limit());
        let end = end.ok_or(BusError::InvalidRange { base, length })?;
        if let Some(existing) = self
            .entries
            .iter()
            .find(|entry| base < entry.base + entry.length && entry.base < end)
        {
            return Err(BusError::Overlap {
                base,
                existing_base: existing.base,
            });
        }
        let position = self.entries.partition_point(|entry| entry.base < base);
        self.entries.insert(
            position,
            Entry {
                base,
                length,
                device,
            },
        );
        Ok(())
    }

    /// Whether a device claims `address`.
    pub fn contains(&self, address: u64) -> bool {
        self.find(address).is_some()
    }

    fn find(&self, address: u64) -> Option<usize> {
        let position = self.entries.partition_point(|entry| entry.base <= address);
        let index = position.checked_sub(1)?;
        let entry = self.entries.get(index)?;
        (address - entry.base < entry.length).then_some(index)
    }

    fn route(&mut self, address: u64, width: usize) -> Result<(&mut Entry, u64), UnhandledCause> {
        if width == 0 || width > 8 {
            return Err(UnhandledCause::BadWidth);
        }
        let index = self.find(address).ok_or(UnhandledCause::NoDevice)?;
        let entry = self
            .entries
            .get_mut(index)
            .ok_or(UnhandledCause::NoDevice)?;
        let offset = address - entry.base;
        if offset + width as u64 > entry.length {
            return Err(UnhandledCause::PastRangeEnd);
        }
        Ok((entry, offset))
    }

    /// Reads `data.len()` bytes at `address`. On an unhandled access `data` is all ones and the
    /// access is recorded; the return value says which.
    pub fn read(&mut self, address: u64, data: &mut [u8]) -> Result<(), UnhandledAccess> {
        let width = data.len();
        let result = match self.route(address, width) {
            Ok((entry, offset)) => entry
                .device
                .read(offset, data)
                .map_err(UnhandledCause::Refused),
            Err(cause) => Err(cause),
        };
        result.map_err(|cause| {
            data.fill(0xff);
            self.record(UnhandledAccess {
                bus: self.kind,
                address,
                width,
                write: false,
                cause,
            })
        })
    }

    /// Writes `data` at `address`; an unhandled write is recorded and has no effect.
    pub fn write(&mut self, address: u64, data: &[u8]) -> Result<(), UnhandledAccess> {
        let width = data.len();
        let result = match self.route(address, width) {
            Ok((entry, offset)) => entry
                .device
                .write(offset, data)
                .map_err(UnhandledCause::Refused),
            Err(cause) => Err(cause),
        };
        result.map_err(|cause| {
            self.record(UnhandledAccess {
                bus: self.kind,
                address,
                width,
                write: true,
                cause,
            })
        })
    }

    fn record(&mut self, access: UnhandledAccess) -> UnhandledAccess {
        if self.unhandled.len() < UNHANDLED_LOG_CAPACITY {
            self.unhandled.push(access);
        } else {
            self.unhandled_dropped = self.unhandled_dropped.saturating_add(1);
        }
        access
    }

    /// Whether an unhandled access was recorded (or counted) since the last
    /// [`Bus::take_unhandled`].
    pub fn has_unhandled(&self) -> bool {
        !self.unhandled.is_empty() || self.unhandled_dropped > 0
    }

    /// Takes the recorded unhandled accesses and the number that did not fit in the log.
    pub fn take_unhandled(&mut self) -> (Vec<UnhandledAccess>, u64) {
        let dropped = core::mem::take(&mut self.unhandled_dropped);
        (core::mem::take(&mut self.unhandled), dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last write and answers reads with its offset.
    struct Echo;
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
            if offset == 3 {
                return Err(AccessError::UnknownRegister);
            }
            data.fill(offset as u8);
            Ok(())
        }
        fn write(&mut self, _offset: u64, _data: &[u8]) -> Result<(), AccessError> {
            Ok(())
        }
    }

    #[test]
    fn routes_by_range_and_rejects_overlaps() {
        let mut bus = Bus::new(BusKind::Port);
        bus.register(0x3f8, 8, Box::new(Echo)).unwrap();
        bus.register(0x400, 4, Box::new(Echo)).unwrap();
        assert_eq!(
            bus.register(0x3ff, 2, Box::new(Echo)),
            Err(BusError::Overlap {
                base: 0x3ff,
                existing_base: 0x3f8
            })
        );
        assert_eq!(
            bus.register(0x3f0, 0x20, Box::new(Echo)),
            Err(BusError::Overlap {
                base: 0x3f0,
                existing_base: 0x3f8
            })
        );
        assert_eq!(
            bus.register(0xffff, 2, Box::new(Echo)),
            Err(BusError::InvalidRange {
                base: 0xffff,
                length: 2
            })
        );
        assert!(bus.register(0, 0, Box::new(Echo)).is_err());
        bus.register(0x3f0, 8, Box::new(Echo)).unwrap();
        let mut data = [0u8; 1];
        bus.read(0x3fa, &mut data).unwrap();
        assert_eq!(data, [2]);
        bus.read(0x401, &mut data).unwrap();
        assert_eq!(data, [1]);
        assert!(bus.contains(0x3f7) && bus.contains(0x400) && !bus.contains(0x404));
    }

    #[test]
    fn unhandled_accesses_read_all_ones_and_are_recorded() {
        let mut bus = Bus::new(BusKind::Mmio);
        bus.register(0x1000, 4, Box::new(Echo)).unwrap();
        let mut data = [0u8; 4];
        bus.read(0x1000, &mut data).unwrap();
        assert!(!bus.has_unhandled(), "a handled access is not recorded");
        let error = bus.read(0x2000, &mut data).unwrap_err();
        assert!(bus.has_unhandled());
        assert_eq!(data, [0xff; 4]);
        assert_eq!(error.cause, UnhandledCause::NoDevice);
        let mut pair = [0u8; 2];
        assert_eq!(
            bus.read(0x1003, &mut pair).unwrap_err().cause,
            UnhandledCause::PastRangeEnd
        );
        let mut byte = [0u8; 1];
        assert_eq!(
            bus.read(0x1003, &mut byte).unwrap_err().cause,
            UnhandledCause::Refused(AccessError::UnknownRegister)
        );
        assert_eq!(
            bus.write(0x10, &[1]).unwrap_err().cause,
            UnhandledCause::NoDevice
        );
        assert_eq!(
            bus.write(0x1000, &[0; 9]).unwrap_err().cause,
            UnhandledCause::BadWidth
        );
        let (log, dropped) = bus.take_unhandled();
        assert_eq!((log.len(), dropped), (5, 0));
        assert_eq!(
            alloc::format!("{}", log[0]),
            "unhandled MMIO read at 0x2000 (4 bytes): no device"
        );
        for _ in 0..UNHANDLED_LOG_CAPACITY + 3 {
            let _ = bus.read(0, &mut byte);
        }
        let (log, dropped) = bus.take_unhandled();
        assert_eq!((log.len(), dropped), (UNHANDLED_LOG_CAPACITY, 3));
        assert!(!bus.has_unhandled());
        // Only counted ones (the log taken, the count not yet) still count.
        bus.unhandled_dropped = 1;
        assert!(bus.has_unhandled());
    }
}
