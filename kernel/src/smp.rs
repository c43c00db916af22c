//! Other CPUs: reschedule IPIs now; application-processor bring-up is added in `ap.rs`.

use crate::apic;
use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// CPUs that run the scheduler (bit n = CPU n).
static ONLINE: AtomicU64 = AtomicU64::new(1);
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Records CPU `index` as online with its APIC ID.
pub fn set_online(index: usize, apic_id: u32) {
    APIC_IDS[index % MAX_CPUS].store(apic_id, Ordering::Relaxed);
    ONLINE.fetch_or(1 << (index % MAX_CPUS), Ordering::Release);
}

/// Interrupts CPU `cpu` so it reschedules (if it is another online CPU).
pub fn poke(cpu: usize) {
    let online = ONLINE.load(Ordering::Acquire);
    if cpu < MAX_CPUS && cpu != crate::percpu::current_index() && online & (1 << cpu) != 0 {
        apic::send_fixed(
            APIC_IDS[cpu].load(Ordering::Relaxed),
            apic::RESCHEDULE_VECTOR,
        );
    }
}

/// After page-table entries were removed: every other CPU takes an interrupt and reloads its
/// address space before it runs user code again.
pub fn flush_everywhere() {
    for cpu in 0..MAX_CPUS {
        poke(cpu);
    }
}
