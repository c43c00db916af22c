//! The debug-exit port: the guest writes a status (0 = pass, anything else a failure code) and
//! the run ends with it. Accepts 1-, 2- and 4-byte writes at offset 0 (like QEMU's
//! isa-debug-exit, but the status is passed on unchanged rather than as `(value << 1) | 1`).
use crate::bus::{AccessError, BusDevice};

/// Where the requested status goes.
pub trait ExitRequest {
    /// The guest asked to end the run with `status`.
    fn request_exit(&mut self, status: u32);
}

/// Number of ports the device decodes.
pub const DEBUG_EXIT_PORT_COUNT: u64 = 4;

/// The device, generic over where the exit request goes.
pub struct DebugExit<E: ExitRequest> {
    request: E,
}

impl<E: ExitRequest> DebugExit<E> {
    /// A device reporting to `request`.
    pub fn new(request: E) -> Self {
        DebugExit { request }
    }
}

impl<E: ExitRequest> BusDevice for DebugExit<E> {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) -> Result<(), AccessError> {
        Err(AccessError::WriteOnly)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        if offset != 0 {
            return Err(AccessError::UnsupportedWidth);
        }
        let status = match *data {
            [a] => u32::from(a),
            [a, b] => u32::from(u16::from_le_bytes([a, b])),
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => return Err(AccessError::UnsupportedWidth),
        };
        self.request.request_exit(status);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ExitRequest for Option<u32> {
        fn request_exit(&mut self, status: u32) {
            *self = Some(status);
        }
    }

    #[test]
    fn writes_end_the_run_with_their_status() {
        let mut device = DebugExit::new(None);
        device.write(0, &[0x34, 0x12]).unwrap();
        assert_eq!(device.request, Some(0x1234));
        device.write(0, &[0]).unwrap();
        assert_eq!(device.request, Some(0));
        let mut fresh = DebugExit::new(None);
        assert_eq!(fresh.write(1, &[1]), Err(AccessError::UnsupportedWidth));
        assert_eq!(
            fresh.write(0, &[1, 2, 3]),
            Err(AccessError::UnsupportedWidth)
        );
        assert_eq!(fresh.read(0, &mut [0]), Err(AccessError::WriteOnly));
        assert_eq!(fresh.request, None);
    }
}
