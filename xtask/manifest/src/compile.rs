//! Compile a validated system into sluice-sysdesc bytes for init.

use crate::system::{KernelRef, System};
use sluice_sysdesc::{
    encoded_len, write, DeviceSpec, GuestSpec, Kernel, SystemSpec, DEVICE_FLAG_INTX_ONLY,
    DEVICE_FLAG_VIRTUAL_FUNCTION, FLAG_INSECURE_NO_IRQ_REMAP, FLAG_IOMMU,
};

impl System {
    /// The boot-time description. Kernel files become boot modules numbered in guest order.
    /// A validated system always encodes; an empty vector means the writer refused it
    /// (which validation is meant to make impossible).
    pub fn compile(&self) -> Vec<u8> {
        let mut module = 0u32;
        let guests: Vec<GuestSpec<'_>> = self
            .guests
            .iter()
            .map(|g| GuestSpec {
                name: &g.name,
                memory_bytes: g.memory_bytes,
                cpu_mask: g
                    .cpus
                    .iter()
                    .fold(0u64, |mask, cpu| mask | 1u64.checked_shl(*cpu).unwrap_or(0)),
                vcpus: g.vcpus,
                kernel: match &g.kernel {
                    KernelRef::Builtin(b) => Kernel::Builtin(*b),
                    KernelRef::Path(_) => {
                        module += 1;
                        Kernel::Module(module - 1)
                    }
                },
                cmdline: &g.cmdline,
            })
            .collect();
        let devices: Vec<DeviceSpec> = self
            .guests
            .iter()
            .enumerate()
            .flat_map(|(index, g)| {
                g.pci.iter().map(move |p| DeviceSpec {
                    host_bdf: p.host_bdf.requester_id(),
                    guest_bdf: p.guest_bdf.requester_id(),
                    guest_index: u16::try_from(index).unwrap_or(u16::MAX),
                    flags: if p.virtual_function {
                        DEVICE_FLAG_VIRTUAL_FUNCTION
                    } else {
                        0
                    } | if p.intx_only {
                        DEVICE_FLAG_INTX_ONLY
                    } else {
                        0
                    },
                    iommu_group: p.iommu_group.unwrap_or(u32::MAX),
                })
            })
            .collect();
        let mut flags = 0;
        if self.machine.iommu {
            flags |= FLAG_IOMMU;
        }
        if self.insecure_no_interrupt_remapping {
            flags |= FLAG_INSECURE_NO_IRQ_REMAP;
        }
        let spec = SystemSpec {
            name: &self.name,
            machine_memory: self.machine.memory_bytes,
            machine_cpus: self.machine.cpus,
            flags,
            guests: &guests,
            devices: &devices,
        };
        let Ok(len) = encoded_len(&spec) else {
            return Vec::new();
        };
        let mut out = vec![0u8; len];
        match write(&spec, &mut out) {
            Ok(used) => {
                out.truncate(used);
                out
            }
            Err(_) => Vec::new(),
        }
    }
}
