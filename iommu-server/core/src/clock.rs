//! Time for bounded hardware waits.
//!
//! Every wait on VT-d hardware has a deadline and ends in `IommuError::HardwareTimeout` rather
//! than spinning forever (NOVA's rule). The server implements [`Clock`] with the TSC or a kernel
//! call; tests use [`crate::fake::FakeClock`], which advances on every read.

use iommu_api::IommuError;

/// A monotonic clock in nanoseconds.
pub trait Clock {
    /// Current time in nanoseconds since an arbitrary origin.
    fn now(&mut self) -> u64;
}

/// Polls `done` until it returns true or `timeout` nanoseconds have passed. `done` is polled at
/// least once, and once more after the deadline, so a completion racing the deadline is seen.
pub fn wait_until<C: Clock>(
    clock: &mut C,
    timeout: u64,
    mut done: impl FnMut() -> bool,
) -> Result<(), IommuError> {
    let deadline = clock.now().saturating_add(timeout);
    loop {
        if done() {
            return Ok(());
        }
        if clock.now() >= deadline {
            return if done() {
                Ok(())
            } else {
                Err(IommuError::HardwareTimeout)
            };
        }
        core::hint::spin_loop();
    }
}
