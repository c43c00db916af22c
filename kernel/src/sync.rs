//! A spinning mutual-exclusion lock for kernel data shared between CPUs.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A lock that spins until it is free. Interrupts are not touched: holders must not block.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by `locked`, so sharing the lock between CPUs is
// sound whenever the value itself may be sent between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is taken.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free, without waiting.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(SpinGuard { lock: self })
    }

    /// Releases the lock whoever holds it: only for the fatal-exception path, which must print
    /// even if the faulting code held the lock.
    pub fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Holds a [`SpinLock`] until dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held, so no other reference exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A [`SpinLock`] that counts how often it was taken (the kernel lock: `execution::vcpu_run`
/// uses the count to prove nobody touched kernel state while a guest ran).
pub struct CountingLock<T> {
    lock: SpinLock<T>,
    acquisitions: AtomicU64,
}

impl<T> CountingLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        CountingLock {
            lock: SpinLock::new(value),
            acquisitions: AtomicU64::new(0),
        }
    }

    /// Spins until the lock is taken, then counts it.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let guard = self.lock.lock();
        self.acquisitions.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Takes the lock if it is free, without waiting (and counts it).
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        let guard = self.lock.try_lock()?;
        self.acquisitions.fetch_add(1, Ordering::SeqCst);
        Some(guard)
    }

    /// How many times the lock has been taken. Read after a sequentially consistent store, a
    /// value equal to one read while holding the lock earlier proves nobody took the lock in
    /// between, and that anybody who takes it later sees that store (the count is bumped with
    /// `SeqCst` right after each acquisition, before anything is done under the lock).
    pub fn acquisitions(&self) -> u64 {
        self.acquisitions.load(Ordering::SeqCst)
    }
}
