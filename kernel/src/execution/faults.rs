//! A ring-3 exception stops only the faulting thread: the kernel logs it with the domain's
//! name, fails any IPC partner waiting on it, and tells init through its fault notification.

use super::ipc;
use super::threads::RunState;
use super::{Kernel, Next};
use crate::trap::TrapFrame;

/// Handles an exception of thread `current`.
pub fn handle(kernel: &mut Kernel, _cpu: usize, current: u32, frame: &mut TrapFrame) -> Next {
    let (mnemonic, name) = crate::idt::exception_name(frame.vector);
    let domain = kernel.threads[current as usize].domain;
    let name_bytes = domain
        .map(|id| kernel.domain(id).name)
        .unwrap_or(*b"?\0\0\0\0\0\0\0");
    let length = name_bytes.iter().position(|&b| b == 0).unwrap_or(8);
    let domain_name = core::str::from_utf8(&name_bytes[..length]).unwrap_or("?");
    let address = if frame.vector == 14 {
        crate::cpu::cr2()
    } else {
        0
    };
    kprintln!(
        "sluice: fault: domain {domain_name} thread {current} {mnemonic} ({name}) rip={:#x} addr={address:#x} error={:#x}; thread stopped",
        frame.rip,
        frame.error_code
    );
    stop_thread(kernel, current, RunState::Faulted);
    if let Some(notification) = kernel.fault_notification {
        if kernel.model.signal_object(notification, 1) {
            ipc::wake_waiters(kernel, notification);
        }
    }
    Next::Reschedule
}

/// Stops a thread for good (or until resumed, for `Suspended`), failing its IPC partners.
pub fn stop_thread(kernel: &mut Kernel, index: u32, state: RunState) {
    ipc::abort_partners(kernel, index);
    let Kernel {
        scheduler, threads, ..
    } = kernel;
    scheduler.remove(threads, index);
    threads[index as usize].state = state;
}
