//! The boot summary and the system description: init logs what the kernel handed it, maps the
//! `sysdesc` boot module read-only, checks it with `sluice-sysdesc` and logs every guest.

use core::fmt;

use sluice_abi::boot::selector::SELF_DOMAIN;
use sluice_abi::boot::{BootCapabilityKind, BootInfo};
use sluice_abi::syscall::{MemoryRights, Selector};

use crate::error::{Action, InitError};
use crate::kernel::Kernel;
use crate::layout::{page_round_up, SYSDESC_WINDOW};

/// The boot module holding the compiled system description.
pub const SYSDESC_MODULE: &str = "sysdesc";

/// What init keeps from the description after reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemFacts {
    /// Number of guests.
    pub guests: usize,
    /// The lowest host CPU the first guest owns (its vmm-server runs there).
    pub first_guest_cpu: Option<u16>,
    /// Guests that run in a VM (built-in test guests): (index, memory bytes, lowest CPU).
    pub vm_guests: heapless::Vec<(u64, u64, u16), MAX_VM_GUESTS>,
    /// Guests run by the built-in DMA test driver: (guest index, host BDF of its first
    /// device, if it has one).
    pub dma_tests: heapless::Vec<(u16, Option<u16>), MAX_VM_GUESTS>,
    /// The manifest allows passthrough without interrupt remapping.
    pub insecure_no_interrupt_remapping: bool,
    /// Guests whose kernel is a boot module (a Linux kernel): not started, and the boot
    /// reports them as failed rather than claiming the system came up as described.
    pub unsupported_guests: usize,
}

/// Most VM guests init starts a vmm-server for.
pub const MAX_VM_GUESTS: usize = 8;

/// A CPU mask written as a list: `[0, 2]`.
pub struct CpuList(pub u64);

impl fmt::Display for CpuList {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[")?;
        let mut first = true;
        for cpu in (0..64u32).filter(|cpu| self.0 & (1u64 << cpu) != 0) {
            if !first {
                formatter.write_str(", ")?;
            }
            write!(formatter, "{cpu}")?;
            first = false;
        }
        formatter.write_str("]")
    }
}

const MIB: u64 = 1024 * 1024;

/// Logs `init: boot info: N cpus, M modules, RAM X MiB` (or fails on a page without magic).
pub fn log_boot_info(boot: &BootInfo, ram_bytes: u64) -> Result<(), InitError> {
    if boot.magic != sluice_abi::boot::BOOT_INFO_MAGIC {
        return Err(InitError::BadBootInfo);
    }
    let modules = boot
        .listed()
        .iter()
        .filter(|c| c.kind == BootCapabilityKind::Module as u32)
        .count();
    sluice_rt::log!(
        "init: boot info: {} cpus, {} modules, RAM {} MiB",
        boot.cpus,
        modules,
        ram_bytes / MIB
    );
    Ok(())
}

/// Maps, checks and logs the system description, then unmaps it.
pub fn read<K: Kernel>(kernel: &mut K, boot: &BootInfo) -> Result<SystemFacts, InitError> {
    let module = *boot
        .module(SYSDESC_MODULE)
        .ok_or(InitError::ModuleMissing {
            module: SYSDESC_MODULE,
        })?;
    let refused = |action| {
        move |status| InitError::Kernel {
            program: SYSDESC_MODULE,
            action,
            status,
        }
    };
    let own = Selector(SELF_DOMAIN);
    let size = page_round_up(module.length.max(1))
        .unwrap_or(module.size)
        .min(module.size);
    kernel
        .map(
            Selector(module.selector),
            own,
            SYSDESC_WINDOW,
            0,
            size,
            MemoryRights::READ,
        )
        .map_err(refused(Action::MapModule))?;
    let facts = {
        let bytes = kernel.read_own(SYSDESC_WINDOW, module.length)?;
        let description = sluice_sysdesc::parse(bytes).map_err(InitError::Sysdesc)?;
        sluice_rt::log!(
            "init: system {}: {} guests",
            description.name(),
            description.guest_count()
        );
        for guest in description.guests() {
            sluice_rt::log!(
                "init: guest {}: {} MiB, cpus {}, vcpus {}",
                guest.name,
                guest.memory_bytes / MIB,
                CpuList(guest.cpu_mask),
                guest.vcpus
            );
            if let sluice_sysdesc::Kernel::Module(module) = guest.kernel {
                sluice_rt::log!(
                    "init: guest {}: kernel module {module} (a Linux kernel) cannot be booted yet: \
                     only the built-in guests run; this guest is not started",
                    guest.name
                );
            }
        }
        let vm_guests = description
            .guests()
            .enumerate()
            .filter(|(_, guest)| {
                matches!(
                    guest.kernel,
                    sluice_sysdesc::Kernel::Builtin(
                        sluice_sysdesc::BuiltinGuest::Probe | sluice_sysdesc::BuiltinGuest::Hello
                    )
                )
            })
            .map(|(index, guest)| {
                let cpu = (guest.cpu_mask.trailing_zeros() as u16).min(63);
                (index as u64, guest.memory_bytes, cpu)
            })
            .take(MAX_VM_GUESTS)
            .collect();
        let dma_tests = description
            .guests()
            .enumerate()
            .filter(|(_, guest)| {
                guest.kernel
                    == sluice_sysdesc::Kernel::Builtin(sluice_sysdesc::BuiltinGuest::DmaTest)
            })
            .filter_map(|(index, _)| {
                let device = description
                    .devices_of(index)
                    .next()
                    .map(|device| device.host_bdf.get());
                Some((u16::try_from(index).ok()?, device))
            })
            .take(MAX_VM_GUESTS)
            .collect();
        let insecure_no_interrupt_remapping =
            description.flags() & sluice_sysdesc::FLAG_INSECURE_NO_IRQ_REMAP != 0;
        let unsupported_guests = description
            .guests()
            .filter(|guest| matches!(guest.kernel, sluice_sysdesc::Kernel::Module(_)))
            .count();
        SystemFacts {
            unsupported_guests,
            dma_tests,
            insecure_no_interrupt_remapping,
            vm_guests,
            guests: description.guest_count(),
            first_guest_cpu: description
                .guest(0)
                .map(|guest| guest.cpu_mask.trailing_zeros() as u16)
                .filter(|cpu| *cpu < 64),
        }
    };
    kernel
        .unmap(own, SYSDESC_WINDOW, size)
        .map_err(refused(Action::UnmapModule))?;
    Ok(facts)
}
