//! Other CPUs: reschedule IPIs and synchronous TLB shootdowns; application-processor
//! bring-up is in `ap.rs`.

use crate::apic;
use crate::percpu::MAX_CPUS;
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

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

/// Per CPU: it may be using translations without checking for flushes first: it runs user
/// code (set when the scheduler loads a thread, cleared on every kernel entry) or a guest (set
/// before the VM entry checks its VM's flush epoch, cleared after the exit). A CPU that is not
/// active checks before it uses translations again (the address space generation in `run`,
/// the VM epoch at VM entry), so a shootdown needs no answer from it.
static ACTIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: flush interrupts handled.
static FLUSHES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Shootdowns so far, and how many CPUs they had to interrupt and wait for.
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
static INTERRUPTED: AtomicU64 = AtomicU64::new(0);
/// The first completed wait is logged once (the boot tests look for it).
static FIRST_WAIT_REPORTED: AtomicBool = AtomicBool::new(false);

/// (shootdowns, CPUs interrupted and waited for) since boot.
pub fn shootdown_counts() -> (u64, u64) {
    (
        SHOOTDOWNS.load(Ordering::Relaxed),
        INTERRUPTED.load(Ordering::Relaxed),
    )
}

/// Spins between re-sent flush interrupts while waiting for an answer.
const RESEND_SPINS: u64 = 1 << 20;

/// Whether this CPU is marked active (see [`set_active`]).
#[inline]
pub fn is_active() -> bool {
    ACTIVE[crate::percpu::current_index() % MAX_CPUS].load(Ordering::SeqCst)
}

/// [`set_active`]`(true)` for a CPU that may already be marked: the store only when it is not,
/// the fence always (so later loads are ordered after the mark either way).
#[inline]
pub fn ensure_active() {
    let cpu = crate::percpu::current_index() % MAX_CPUS;
    if !ACTIVE[cpu].load(Ordering::SeqCst) {
        ACTIVE[cpu].store(true, Ordering::SeqCst);
    }
    fence(Ordering::SeqCst);
}

/// Marks this CPU as about to use (`true`) or done using (`false`) translations without a
/// flush check. Setting is followed by a full fence, so either a concurrent shootdown sees
/// the CPU active or the CPU's following check sees the shootdown's new generation or epoch.
#[inline]
pub fn set_active(active: bool) {
    let cpu = crate::percpu::current_index() % MAX_CPUS;
    ACTIVE[cpu].store(active, Ordering::SeqCst);
    if active {
        fence(Ordering::SeqCst);
    }
}

/// The flush interrupt: drop this CPU's non-global translations (reloading CR3, SDM Vol. 3A
/// 4.10.4.1) and say so. Guest translations are dropped by the next VM entry, which sees the
/// VM's new epoch.
pub fn flush_here() {
    // SAFETY: writing CR3 with its own value changes no mapping; it only empties the TLB of
    // non-global entries.
    unsafe {
        core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack));
    }
    FLUSHES[crate::percpu::current_index() % MAX_CPUS].fetch_add(1, Ordering::SeqCst);
}

/// After page-table entries were removed (user page tables or a VM's nested tables), before
/// the frames they named can be reused: every other CPU that may still use translations
/// without a check gets a flush interrupt, and this waits until each has flushed or entered
/// the kernel (synchronous shootdown). Called with the kernel lock held: the flush handler
/// takes no lock, and CPUs in the kernel are never waited for, so this cannot deadlock.
/// Afterwards every other CPU is also poked to reschedule.
pub fn flush_everywhere() {
    // The entries were cleared (and generations or epochs bumped) before: make that visible
    // before reading who is active, and before the interrupt is sent.
    fence(Ordering::SeqCst);
    let me = crate::percpu::current_index();
    let online = ONLINE.load(Ordering::Acquire);
    let mut waiting = [None; MAX_CPUS];
    for (cpu, slot) in waiting.iter_mut().enumerate() {
        if cpu != me && online & (1 << cpu) != 0 && ACTIVE[cpu].load(Ordering::SeqCst) {
            let seen = FLUSHES[cpu].load(Ordering::SeqCst);
            apic::send_fixed(APIC_IDS[cpu].load(Ordering::Relaxed), apic::FLUSH_VECTOR);
            *slot = Some(seen);
            INTERRUPTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    for (cpu, slot) in waiting.iter().enumerate() {
        let Some(seen) = *slot else { continue };
        let mut spins = 0u64;
        while FLUSHES[cpu].load(Ordering::SeqCst) == seen && ACTIVE[cpu].load(Ordering::SeqCst) {
            spins += 1;
            if spins.is_multiple_of(RESEND_SPINS) {
                apic::send_fixed(APIC_IDS[cpu].load(Ordering::Relaxed), apic::FLUSH_VECTOR);
            }
            core::hint::spin_loop();
        }
        if !FIRST_WAIT_REPORTED.swap(true, Ordering::Relaxed) {
            kprintln!("sluice: tlb shootdown: waited for CPU {cpu}");
        }
    }
    for cpu in 0..MAX_CPUS {
        poke(cpu);
    }
}
