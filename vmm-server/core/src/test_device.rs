//! The MMIO test device the built-in test guest checks its MMIO path against. One 4 KiB page of
//! little-endian 64-bit registers; any width 1..=8 is accepted where noted.
//!
//! | offset | name | access | behaviour |
//! |---|---|---|---|
//! | 0x00 | ID | read | [`TEST_DEVICE_ID`] (32-bit register; upper half of the qword reads 0) |
//! | 0x08 | SCRATCH | read/write, any byte range | reads back exactly the bytes written |
//! | 0x10 | COUNTER | read/write at 0x10 | a read returns the count of earlier COUNTER reads, then increments; a write sets it |
//! | 0x18 | CHECKSUM | read | wrapping sum of every value written to DATA |
//! | 0x20 | DATA | write at 0x20 | adds the written value (zero-extended from the access width) to CHECKSUM, increments WRITE_COUNT |
//! | 0x28 | WRITE_COUNT | read | number of DATA writes |
//! | 0x30 | RESET | write at 0x30 | any value clears SCRATCH, COUNTER, CHECKSUM, WRITE_COUNT |
//!
//! Reads must not span two registers; write-effect registers take a write only at their
//! first byte. Anything else is refused with an [`AccessError`] (and so logged by the bus).
use crate::bus::{AccessError, BusDevice};

/// Value of the ID register: "SLTD" read as big-endian ASCII.
pub const TEST_DEVICE_ID: u32 = 0x534c_5444;
/// Size of the device's MMIO range.
pub const TEST_DEVICE_SIZE: u64 = 0x1000;

/// Register offsets (see the module table).
pub mod register {
    /// ID.
    pub const ID: u64 = 0x00;
    /// SCRATCH.
    pub const SCRATCH: u64 = 0x08;
    /// COUNTER.
    pub const COUNTER: u64 = 0x10;
    /// CHECKSUM.
    pub const CHECKSUM: u64 = 0x18;
    /// DATA.
    pub const DATA: u64 = 0x20;
    /// WRITE_COUNT.
    pub const WRITE_COUNT: u64 = 0x28;
    /// RESET.
    pub const RESET: u64 = 0x30;
    /// First offset past the registers.
    pub const END: u64 = 0x38;
}

/// The device's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestDevice {
    scratch: [u8; 8],
    counter: u64,
    checksum: u64,
    write_count: u64,
}

fn little_endian(data: &[u8]) -> u64 {
    data.iter()
        .rev()
        .fold(0, |value, &byte| value << 8 | u64::from(byte))
}

impl TestDevice {
    /// A device in its reset state.
    pub fn new() -> TestDevice {
        TestDevice::default()
    }

    /// Running checksum of DATA writes.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Splits `offset` into (register base, byte within register) after checking the access
    /// stays inside one register.
    fn locate(offset: u64, width: usize) -> Result<(u64, usize), AccessError> {
        if offset >= register::END {
            return Err(AccessError::UnknownRegister);
        }
        let base = offset & !7;
        let within = (offset - base) as usize;
        if width == 0 || within + width > 8 {
            return Err(AccessError::CrossesRegister);
        }
        Ok((base, within))
    }
}

impl BusDevice for TestDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        let (base, within) = TestDevice::locate(offset, data.len())?;
        let value = match base {
            register::ID => u64::from(TEST_DEVICE_ID),
            register::SCRATCH => little_endian(&self.scratch),
            register::COUNTER => {
                if within != 0 {
                    return Err(AccessError::UnsupportedWidth);
                }
                let value = self.counter;
                self.counter = self.counter.wrapping_add(1);
                value
            }
            register::CHECKSUM => self.checksum,
            register::WRITE_COUNT => self.write_count,
            _ => return Err(AccessError::WriteOnly),
        };
        let bytes = value.to_le_bytes();
        let source = bytes
            .get(within..within + data.len())
            .ok_or(AccessError::CrossesRegister)?;
        data.copy_from_slice(source);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        let (base, within) = TestDevice::locate(offset, data.len())?;
        let value = little_endian(data);
        match base {
            register::SCRATCH => {
                let target = self
                    .scratch
                    .get_mut(within..within + data.len())
                    .ok_or(AccessError::CrossesRegister)?;
                target.copy_from_slice(data);
            }
            register::COUNTER | register::DATA | register::RESET if within != 0 => {
                return Err(AccessError::UnsupportedWidth)
            }
            register::COUNTER => self.counter = value,
            register::DATA => {
                self.checksum = self.checksum.wrapping_add(value);
                self.write_count = self.write_count.wrapping_add(1);
            }
            register::RESET => *self = TestDevice::new(),
            _ => return Err(AccessError::ReadOnly),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(device: &mut TestDevice, offset: u64, width: usize) -> Result<u64, AccessError> {
        let mut data = [0u8; 8];
        device.read(offset, &mut data[..width])?;
        Ok(little_endian(&data[..width]))
    }

    #[test]
    fn registers_behave_as_documented() {
        let mut device = TestDevice::new();
        assert_eq!(
            read(&mut device, register::ID, 4),
            Ok(u64::from(TEST_DEVICE_ID))
        );
        assert_eq!(read(&mut device, register::ID + 3, 1), Ok(0x53));
        device
            .write(register::SCRATCH, &0x1122_3344_5566_7788u64.to_le_bytes())
            .unwrap();
        device.write(register::SCRATCH + 2, &[0xaa, 0xbb]).unwrap();
        assert_eq!(
            read(&mut device, register::SCRATCH, 8),
            Ok(0x1122_3344_bbaa_7788)
        );
        assert_eq!(read(&mut device, register::SCRATCH + 4, 4), Ok(0x1122_3344));
        assert_eq!(read(&mut device, register::COUNTER, 8), Ok(0));
        assert_eq!(read(&mut device, register::COUNTER, 4), Ok(1));
        device.write(register::COUNTER, &[40]).unwrap();
        assert_eq!(read(&mut device, register::COUNTER, 8), Ok(40));
        device.write(register::DATA, &[5]).unwrap();
        device
            .write(register::DATA, &0x1_0000u32.to_le_bytes())
            .unwrap();
        assert_eq!(read(&mut device, register::CHECKSUM, 8), Ok(0x1_0005));
        assert_eq!(read(&mut device, register::WRITE_COUNT, 8), Ok(2));
        device.write(register::RESET, &[1]).unwrap();
        assert_eq!(device, TestDevice::new());
    }

    #[test]
    fn refuses_bad_accesses_without_changing_state() {
        let mut device = TestDevice::new();
        device.write(register::SCRATCH, &[9; 8]).unwrap();
        let before = device.clone();
        assert_eq!(device.write(register::ID, &[1]), Err(AccessError::ReadOnly));
        assert_eq!(
            device.write(register::SCRATCH + 6, &[0; 4]),
            Err(AccessError::CrossesRegister)
        );
        assert_eq!(
            device.write(register::DATA + 1, &[1]),
            Err(AccessError::UnsupportedWidth)
        );
        assert_eq!(
            device.write(register::END, &[1]),
            Err(AccessError::UnknownRegister)
        );
        assert_eq!(
            read(&mut device, register::DATA, 8),
            Err(AccessError::WriteOnly)
        );
        assert_eq!(
            read(&mut device, register::COUNTER + 1, 1),
            Err(AccessError::UnsupportedWidth)
        );
        assert_eq!(
            read(&mut device, 0x800, 4),
            Err(AccessError::UnknownRegister)
        );
        assert_eq!(device, before);
    }
}
