//! Init, the root task. Step by step ([`run`]):
//!
//! 1. read the boot-information page and log `init: boot info: N cpus, M modules, RAM X MiB`;
//! 2. map the `sysdesc` module, check it with `sluice-sysdesc` and log every guest;
//! 3. start the fault watcher, a second init thread that forwards the kernel's fault
//!    notifications to the service loop ([`watcher`]);
//! 4. load the iommu-, pci- and vmm-server, in that order, each from its ELF boot module into a
//!    domain of its own with exactly the capabilities [`programs`] lists ([`loader`]);
//! 5. serve the parent portal ([`service`]) until every server said `READY` (and, with the
//!    kernel flag `init.misbehave`, misbehave mode 1 reported, modes 2-5 faulted and mode 7,
//!    the vCPU capability lifecycle, reported every step passed);
//! 6. log `init: system up: 3 servers ready` and power off with code 0.
//!
//! Every failure is logged with the kernel's `Status` name and powers off with a non-zero code
//! ([`error::InitError::exit_code`]). The logic runs against the [`kernel::Kernel`] trait, so
//! it is tested on the host with a behavioural fake.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod description;
pub mod dmar;
pub mod error;
pub mod kernel;
pub mod layout;
pub mod loader;
pub mod programs;
pub mod resources;
pub mod service;
pub mod system;
pub mod watcher;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use sluice_abi::boot::BootInfo;
use sluice_rt::log;
use sluice_rt::protocol;

use error::InitError;
use kernel::Kernel;
use resources::Resources;
use service::{Next, Service};
use watcher::WatcherEntry;

/// The kernel command-line flag that makes init run the misbehave program.
pub const MISBEHAVE_FLAG: &str = "init.misbehave";
/// The kernel command-line flag that makes init run the IPC benchmark (`cargo xtask bench`).
pub const BENCH_FLAG: &str = "init.bench";

/// Runs init (see the crate documentation) and powers off; returns the exit code if the
/// kernel let `shutdown` return.
pub fn run<K: Kernel>(kernel: &mut K, boot: &BootInfo, watcher_entry: WatcherEntry) -> u32 {
    let code = match boot_system(kernel, boot, watcher_entry) {
        Ok(()) => 0,
        Err(error) => {
            log!("init: error: {error}");
            let code = error.exit_code();
            log!("init: giving up, powering off with code {code}");
            code
        }
    };
    if let Err(status) = kernel.shutdown(code) {
        log!("init: shutdown refused: {status:?} ({status})");
    }
    code
}

fn boot_system<K: Kernel>(
    kernel: &mut K,
    boot: &BootInfo,
    watcher_entry: WatcherEntry,
) -> Result<(), InitError> {
    let mut resources = Resources::from_boot(boot);
    description::log_boot_info(boot, resources.ram_total())?;
    let facts = description::read(kernel, boot)?;
    let misbehave = boot.has_flag(MISBEHAVE_FLAG);
    watcher::start(kernel, &mut resources, watcher_entry)?;
    let drhd = dmar::drhd_pages(kernel, boot);
    let iommu = loader::load(
        kernel,
        boot,
        &mut resources,
        &programs::iommu_server(boot, facts.insecure_no_interrupt_remapping, &drhd),
    )?;
    let pci = loader::load(
        kernel,
        boot,
        &mut resources,
        &programs::pci_server(boot, iommu.thread, &drhd),
    )?;
    let mut servers: heapless::Vec<(u64, &'static str, bool), { service::MAX_SERVERS }> =
        heapless::Vec::new();
    let _ = servers.push((programs::number::IOMMU_SERVER, "iommu-server", false));
    let _ = servers.push((programs::number::PCI_SERVER, "pci-server", false));
    let mut guests: heapless::Vec<(u64, u64, bool, u64), { service::MAX_SERVERS }> =
        heapless::Vec::new();
    let cpu_or_zero = |cpu: u16| if u32::from(cpu) < boot.cpus { cpu } else { 0 };
    if facts.vm_guests.is_empty() {
        let cpu = cpu_or_zero(facts.first_guest_cpu.unwrap_or(0));
        let spec = programs::vmm_server(0, u64::MAX, cpu, pci.thread, 0);
        loader::load(kernel, boot, &mut resources, &spec)?;
        let _ = servers.push((spec.number, "vmm-server", false));
    }
    for (order, &(guest, memory, cpu)) in facts.vm_guests.iter().enumerate() {
        let spec = programs::vmm_server(order, guest, cpu_or_zero(cpu), pci.thread, memory);
        loader::load(kernel, boot, &mut resources, &spec)?;
        let _ = servers.push((spec.number, "vmm-server", false));
        let _ = guests.push((spec.number, guest, false, 0));
    }
    // The DMA test drivers report their checks as their guest's end (status 0 = all passed).
    for &(guest, device) in facts.dma_tests.iter() {
        let device = device.unwrap_or(u16::MAX);
        let spec = programs::dma_test(boot, guest, device, iommu.thread, pci.thread);
        loader::load(kernel, boot, &mut resources, &spec)?;
        let _ = guests.push((spec.number, u64::from(guest), false, 0));
    }
    if boot.has_flag(BENCH_FLAG) {
        let server = loader::load(kernel, boot, &mut resources, &programs::bench(1, None))?;
        loader::load(
            kernel,
            boot,
            &mut resources,
            &programs::bench(2, Some(server.thread)),
        )?;
    }
    if misbehave && boot.cpus >= 2 {
        loader::load(kernel, boot, &mut resources, &programs::spinner(1))?;
    }
    serve(
        kernel,
        boot,
        &mut resources,
        Service::with(misbehave, servers, guests),
    )?;
    if facts.unsupported_guests > 0 {
        log!(
            "init: {} guests not started (Linux kernels cannot be booted yet)",
            facts.unsupported_guests
        );
        return Err(InitError::GuestsFailed {
            failed: facts.unsupported_guests as u64,
        });
    }
    Ok(())
}

/// The service loop: answers every request and acts on what the [`Service`] says next.
fn serve<K: Kernel>(
    kernel: &mut K,
    boot: &BootInfo,
    resources: &mut Resources,
    mut service: Service,
) -> Result<(), InitError> {
    let misbehave = boot.has_flag(MISBEHAVE_FLAG);
    // The first reply_and_wait has no caller to answer; its reply is ignored.
    let mut reply = protocol::success(&[]);
    loop {
        let (portal_id, request) = kernel.reply_and_wait(&reply).map_err(InitError::Service)?;
        let (answer, next) = service.handle(portal_id, &request);
        reply = answer;
        match next {
            Next::Continue => {}
            Next::StartMisbehave { mode } => {
                loader::load(kernel, boot, resources, &programs::misbehave(mode))?;
            }
            Next::Finished => {
                log!("init: system up: {} servers ready", service.servers_ready());
                if misbehave {
                    log!(
                        "init: misbehaving program: {} faults reported, system still running",
                        service.faults()
                    );
                }
                log!("init: RAM carved: {} KiB", resources.ram_used() / 1024);
                let (done, failed) = service.guests_done();
                if done > 0 {
                    log!("init: guests: {} passed, {failed} failed", done - failed);
                }
                if failed > 0 {
                    return Err(InitError::GuestsFailed {
                        failed: failed as u64,
                    });
                }
                return Ok(());
            }
            Next::Failed(error) => return Err(error),
        }
    }
}
