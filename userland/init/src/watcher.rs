//! Init's fault watcher: a second thread in init's own domain that waits on the kernel's fault
//! notification (`FAULT_NOTIFICATION`, bit 0 per faulted thread) and forwards each wake-up as a
//! `FAULT` request to init's service thread through a portal of its own, so the service loop
//! sees faults and children's requests in one stream.
//!
//! Its stack (8 KiB) and UTCB page are carved from RAM and mapped into init's space; the
//! thread starts at `sluice_rt::thread::trampoline` with `[rsp]` = [`fault_watcher`] and
//! `[rsp + 8]` = the portal's selector.

use sluice_abi::boot::selector::{FAULT_NOTIFICATION, SELF_DOMAIN, SELF_THREAD};
use sluice_abi::syscall::{MemoryRights, Selector, WAIT_FOREVER};
use sluice_rt::types::ThreadStart;

use crate::error::{Action, InitError};
use crate::kernel::Kernel;
use crate::layout::{PAGE, WATCHER_STACK_SIZE, WATCHER_STACK_TOP, WATCHER_UTCB};
use crate::resources::Resources;
use crate::service::FAULT_PORTAL_ID;

/// The watcher's priority: above the programs, so a fault is forwarded before they run on.
pub const WATCHER_PRIORITY: u8 = 20;

/// Where the watcher starts: the trampoline and the function it calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatcherEntry {
    pub trampoline: u64,
    pub function: u64,
}

/// The watcher's selectors in init's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watcher {
    pub thread: Selector,
    pub portal: Selector,
}

/// Sets up and starts the watcher thread.
pub fn start<K: Kernel>(
    kernel: &mut K,
    resources: &mut Resources,
    entry: WatcherEntry,
) -> Result<Watcher, InitError> {
    const PROGRAM: &str = "init";
    let refused = |action| {
        move |status| InitError::Kernel {
            program: PROGRAM,
            action,
            status,
        }
    };
    let own = Selector(SELF_DOMAIN);
    let rights = MemoryRights::READ | MemoryRights::WRITE;
    let memory = resources.carve_ram(
        kernel,
        PROGRAM,
        WATCHER_STACK_SIZE + PAGE,
        Action::CarveThreadMemory,
    )?;
    let stack_base = WATCHER_STACK_TOP - WATCHER_STACK_SIZE;
    kernel
        .map(memory, own, stack_base, 0, WATCHER_STACK_SIZE, rights)
        .map_err(refused(Action::MapStack {
            address: stack_base,
        }))?;
    kernel
        .map(memory, own, WATCHER_UTCB, WATCHER_STACK_SIZE, PAGE, rights)
        .map_err(refused(Action::MapUtcb {
            address: WATCHER_UTCB,
        }))?;
    kernel.zero_own(stack_base, WATCHER_STACK_SIZE)?;
    kernel.zero_own(WATCHER_UTCB, PAGE)?;

    let portal = resources.selector()?;
    kernel
        .create_portal(Selector(SELF_THREAD), portal, FAULT_PORTAL_ID)
        .map_err(refused(Action::CreatePortal {
            portal_id: FAULT_PORTAL_ID,
        }))?;
    let stack_pointer = WATCHER_STACK_TOP - 16;
    let mut words = [0u8; 16];
    words[..8].copy_from_slice(&entry.function.to_le_bytes());
    words[8..].copy_from_slice(&u64::from(portal.0).to_le_bytes());
    kernel.write_own(stack_pointer, &words)?;
    let thread = resources.selector()?;
    let start = ThreadStart {
        instruction_pointer: entry.trampoline,
        stack_pointer,
        utcb: WATCHER_UTCB,
        priority: WATCHER_PRIORITY,
        cpu: 0,
    };
    kernel
        .create_thread(own, thread, start)
        .map_err(refused(Action::CreateThread))?;
    kernel
        .start_thread(thread)
        .map_err(refused(Action::StartThread))?;
    Ok(Watcher { thread, portal })
}

/// The watcher thread's body (see the module documentation). Never returns; if waiting is
/// refused it logs and ends the thread.
pub extern "C" fn fault_watcher(utcb: u64, portal: u64) -> ! {
    // SAFETY: the kernel passes this thread's own UTCB in RDI; init mapped that page for this
    // thread alone (`start`), read-write, for good.
    #[allow(unsafe_code)]
    let mut buffer = unsafe { sluice_rt::utcb::MessageBuffer::from_address(utcb) };
    let portal = Selector(u32::try_from(portal).unwrap_or(u32::MAX));
    loop {
        match sluice_rt::sys::wait(Selector(FAULT_NOTIFICATION), WAIT_FOREVER) {
            Ok(bits) => {
                let request = sluice_rt::protocol::Request::Fault { bits };
                if let Err(error) = sluice_rt::protocol::request(&mut buffer, portal, request, 0) {
                    sluice_rt::log!("init: fault watcher: forwarding failed: {error}");
                }
            }
            Err(status) => {
                sluice_rt::log!("init: fault watcher: wait refused: {status:?}");
                sluice_rt::sys::exit()
            }
        }
    }
}
