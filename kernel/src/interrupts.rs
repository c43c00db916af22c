//! Hardware interrupts: the scheduling tick, reschedule IPIs, spurious interrupts, and device
//! vectors, which become signals on the notification an interrupt object is bound to.

use crate::apic;
use crate::trap::TrapFrame;

/// Handles interrupt `vector` and returns the frame to resume: `frame` itself, or (when it
/// came from ring 3) the slot of whichever thread runs next.
pub fn handle(vector: u8, frame: &mut TrapFrame) -> *mut TrapFrame {
    match vector {
        apic::SPURIOUS_VECTOR => frame,
        apic::TIMER_VECTOR => {
            apic::end_of_interrupt();
            crate::execution::tick(frame)
        }
        apic::FLUSH_VECTOR => {
            crate::smp::flush_here();
            apic::end_of_interrupt();
            frame
        }
        apic::RESCHEDULE_VECTOR => {
            apic::end_of_interrupt();
            crate::execution::preempt(frame)
        }
        // Masks the line first, then ends the interrupt (see `execution::device_interrupt`).
        vector => crate::execution::device_interrupt(vector, frame),
    }
}
