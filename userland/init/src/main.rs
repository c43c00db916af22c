//! The init binary: the kernel starts it in ring 3 with RDI = the boot-information page and
//! its UTCB at `sluice_abi::boot::INIT_UTCB`. Everything it does lives in the host-tested
//! library (`init::run`); this file connects it to the real kernel.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
sluice_rt::entry!(root run);

#[cfg(target_os = "none")]
fn run(_startup: sluice_rt::start::Startup) {
    use sluice_rt::abi::boot::{BootInfo, BOOT_INFO_ADDRESS};

    sluice_rt::log!("init: started");
    // SAFETY: the kernel maps the boot-information page read-only at BOOT_INFO_ADDRESS before
    // init's first instruction and never unmaps it (sluice_abi::boot); `BootInfo` is plain
    // data that fits in the page, and the page is aligned.
    let boot = unsafe { &*(BOOT_INFO_ADDRESS as *const BootInfo) };
    let Some(buffer) = sluice_rt::utcb::MessageBuffer::current() else {
        sluice_rt::log!("init: no UTCB recorded at entry");
        return;
    };
    let mut kernel = init::system::SystemKernel::new(buffer);
    let entry = init::watcher::WatcherEntry {
        trampoline: sluice_rt::thread::trampoline_address(),
        function: init::watcher::fault_watcher as *const () as u64,
    };
    init::run(&mut kernel, boot, entry);
}

/// Host builds only type-check the program; it runs on the Sluice kernel.
#[cfg(not(target_os = "none"))]
fn main() {}
