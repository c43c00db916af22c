//! The validated system: machine, guests and their device assignments, built from the
//! schema's sections with every cross-reference rule checked.

use crate::diagnostic::{did_you_mean, Violation};
use crate::rules;
use crate::schema::{At, RawGuest, RawMachine, RawManifest};
use crate::topology::{place, PlacedDevice};
use crate::units::{format_size, parse_bdf, valid_name, Bdf, TWO_MIB};
use sluice_sysdesc::BuiltinGuest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Memory kept for the hypervisor (kernel, servers, page tables, boot modules) when
/// checking that guests fit: 128 MiB.
pub const HYPERVISOR_RESERVE: u64 = 128 << 20;
/// Machine used when the manifest has no [machine]: 512M, 1 CPU, IOMMU, no extra devices.
pub const DEFAULT_MACHINE_MEMORY: u64 = 512 << 20;

/// The host machine (emulated by QEMU when `described`).
#[derive(Debug, Clone)]
pub struct Machine {
    pub memory_bytes: u64,
    pub cpus: u32,
    pub iommu: bool,
    /// False when the manifest has no [machine] (bare metal: BDFs are checked at boot).
    pub described: bool,
    /// Every PCI function: built-in chipset functions, manifest devices, SR-IOV VFs.
    pub devices: Vec<PlacedDevice>,
}

/// What a guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelRef {
    Builtin(BuiltinGuest),
    /// A kernel file (resolved against the manifest's directory).
    Path(PathBuf),
}

/// One PCI function given to a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciAssignment {
    /// The machine device id (VFs: `<pf>.vf<N>`), or the BDF text on bare metal.
    pub device: String,
    pub model: Option<String>,
    pub host_bdf: Bdf,
    pub guest_bdf: Bdf,
    pub iommu_group: Option<u32>,
    pub virtual_function: bool,
    pub intx_only: bool,
}

/// One guest.
#[derive(Debug, Clone)]
pub struct Guest {
    pub name: String,
    pub memory_bytes: u64,
    /// Host CPUs this guest owns.
    pub cpus: Vec<u32>,
    pub vcpus: u32,
    pub kernel: KernelRef,
    pub cmdline: String,
    pub pci: Vec<PciAssignment>,
}

/// A whole validated system.
#[derive(Debug, Clone)]
pub struct System {
    pub(crate) name: String,
    pub(crate) machine: Machine,
    pub(crate) guests: Vec<Guest>,
    pub(crate) insecure_no_interrupt_remapping: bool,
}

impl System {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn machine(&self) -> &Machine {
        &self.machine
    }
    pub fn guests(&self) -> &[Guest] {
        &self.guests
    }
    /// Whether passthrough without interrupt remapping was allowed explicitly.
    pub fn insecure_no_interrupt_remapping(&self) -> bool {
        self.insecure_no_interrupt_remapping
    }
}

/// Build the system from the schema's sections; violations go to `out`.
pub fn build(raw: &RawManifest, base_dir: &Path, out: &mut Vec<Violation>) -> Option<System> {
    let name = raw
        .system_name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_default();
    if let Some(n) = &raw.system_name {
        if !valid_name(&n.value) {
            out.push(Violation::new(
                rules::BAD_NAME,
                "system.name",
                n.span.clone(),
                format!("`{}` is not a valid system name", n.value),
                "use 1-31 characters a-z, 0-9, '-' or '_', starting with a letter",
            ));
        }
    }
    let machine = build_machine(raw.machine.as_ref(), out);
    if raw.guests.is_empty() {
        out.push(Violation::new(
            rules::NO_GUESTS,
            "guest",
            raw.system_span.clone(),
            "the system has no [[guest]]",
            "add at least one [[guest]] table with name, memory, cpus and kernel",
        ));
    }
    let mut guests = Vec::new();
    let mut cpu_owner: BTreeMap<i64, String> = BTreeMap::new();
    let mut names: BTreeMap<String, ()> = BTreeMap::new();
    for (index, raw_guest) in raw.guests.iter().enumerate() {
        if let Some(guest) = build_guest(
            raw_guest,
            index,
            &machine,
            base_dir,
            &mut cpu_owner,
            &mut names,
            out,
        ) {
            guests.push((index, guest));
        }
    }
    check_memory(raw, &machine, out);
    let assigned = crate::assign::assign(raw, &machine, &mut guests, out);
    if assigned && !machine.iommu && !raw.insecure_no_interrupt_remapping {
        let span = raw
            .machine
            .as_ref()
            .and_then(|m| m.iommu.as_ref())
            .map_or(0..0, |i| i.span.clone());
        out.push(Violation::new(rules::INTERRUPT_REMAPPING_REQUIRED, "machine.iommu", span,
            "guests get PCI devices but the machine has no IOMMU with interrupt remapping",
            "set `iommu = true`, or accept the risk with `insecure_no_interrupt_remapping = true` under [system]"));
    }
    Some(System {
        name,
        machine,
        guests: guests.into_iter().map(|(_, g)| g).collect(),
        insecure_no_interrupt_remapping: raw.insecure_no_interrupt_remapping,
    })
}

fn build_machine(raw: Option<&RawMachine>, out: &mut Vec<Violation>) -> Machine {
    let default = RawMachine::default();
    let described = raw.is_some();
    let raw = raw.unwrap_or(&default);
    let memory_bytes = raw
        .memory
        .as_ref()
        .map_or(DEFAULT_MACHINE_MEMORY, |m| m.value);
    if let Some(memory) = &raw.memory {
        check_2mib("machine.memory", memory, out);
    }
    let cpus = match &raw.cpus {
        None => 1,
        Some(c) if (1..=64).contains(&c.value) => u32::try_from(c.value).unwrap_or(1),
        Some(c) => {
            out.push(Violation::new(
                rules::MACHINE_CPUS,
                "machine.cpus",
                c.span.clone(),
                format!("machine.cpus = {} is outside 1..=64", c.value),
                "give between 1 and 64 CPUs",
            ));
            1
        }
    };
    let devices = place(raw, |i| format!("machine.device[{i}]"), out);
    Machine {
        memory_bytes,
        cpus,
        iommu: raw.iommu.as_ref().is_none_or(|i| i.value),
        described,
        devices,
    }
}

fn check_2mib(key: &str, memory: &At<u64>, out: &mut Vec<Violation>) {
    if !memory.value.is_multiple_of(TWO_MIB) {
        let up = memory.value.div_ceil(TWO_MIB) * TWO_MIB;
        out.push(Violation::new(
            rules::MEMORY_NOT_ALIGNED,
            key,
            memory.span.clone(),
            format!("{} bytes is not a multiple of 2 MiB", memory.value),
            format!("round it to a multiple of 2M, e.g. \"{}\"", format_size(up)),
        ));
    }
}

fn check_memory(raw: &RawManifest, machine: &Machine, out: &mut Vec<Violation>) {
    let total: u64 = raw
        .guests
        .iter()
        .filter_map(|g| g.memory.as_ref())
        .fold(0u64, |a, m| a.saturating_add(m.value));
    let needed = total.saturating_add(HYPERVISOR_RESERVE);
    if needed > machine.memory_bytes {
        let (key, span) = match raw.machine.as_ref().and_then(|m| m.memory.as_ref()) {
            Some(m) => ("machine.memory".to_owned(), m.span.clone()),
            None => raw
                .guests
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, g)| {
                    g.memory
                        .as_ref()
                        .map(|m| (format!("guest[{i}].memory"), m.span.clone()))
                })
                .unwrap_or_default(),
        };
        out.push(Violation::new(
            rules::MEMORY_OVERCOMMIT,
            key,
            span,
            format!(
                "guests need {} plus the {} hypervisor reserve = {}, but the machine has {}",
                format_size(total),
                format_size(HYPERVISOR_RESERVE),
                format_size(needed),
                format_size(machine.memory_bytes)
            ),
            format!(
                "raise machine.memory to at least \"{}\" or give the guests less memory",
                format_size(needed.div_ceil(TWO_MIB) * TWO_MIB)
            ),
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn build_guest(
    raw: &RawGuest,
    index: usize,
    machine: &Machine,
    base_dir: &Path,
    cpu_owner: &mut BTreeMap<i64, String>,
    names: &mut BTreeMap<String, ()>,
    out: &mut Vec<Violation>,
) -> Option<Guest> {
    let path = format!("guest[{index}]");
    let name = raw.name.as_ref()?;
    if !valid_name(&name.value) {
        out.push(Violation::new(
            rules::BAD_NAME,
            format!("{path}.name"),
            name.span.clone(),
            format!("`{}` is not a valid guest name", name.value),
            "use 1-31 characters a-z, 0-9, '-' or '_', starting with a letter",
        ));
    }
    if names.insert(name.value.clone(), ()).is_some() {
        out.push(Violation::new(
            rules::DUPLICATE_GUEST,
            format!("{path}.name"),
            name.span.clone(),
            format!("another guest is already called `{}`", name.value),
            "give every guest its own name",
        ));
    }
    if let Some(memory) = &raw.memory {
        check_2mib(&format!("{path}.memory"), memory, out);
    }
    let mut cpus = Vec::new();
    if let Some(list) = &raw.cpus {
        if list.value.is_empty() {
            out.push(Violation::new(
                rules::GUEST_WITHOUT_CPUS,
                format!("{path}.cpus"),
                list.span.clone(),
                "the guest owns no host CPU",
                format!(
                    "give it at least one CPU from 0 to {}, e.g. cpus = [0]",
                    machine.cpus.saturating_sub(1)
                ),
            ));
        }
        for (i, cpu) in list.value.iter().enumerate() {
            let key = format!("{path}.cpus[{i}]");
            if cpu.value < 0 || cpu.value >= i64::from(machine.cpus) {
                out.push(Violation::new(
                    rules::CPU_BEYOND_MACHINE,
                    key,
                    cpu.span.clone(),
                    format!(
                        "host CPU {} does not exist: the machine has {} CPU(s), numbered 0 to {}",
                        cpu.value,
                        machine.cpus,
                        machine.cpus.saturating_sub(1)
                    ),
                    "pick a CPU below machine.cpus, or raise machine.cpus",
                ));
                continue;
            }
            if let Some(owner) = cpu_owner.get(&cpu.value) {
                out.push(Violation::new(
                    rules::CPU_OWNED_TWICE,
                    key,
                    cpu.span.clone(),
                    format!("host CPU {} is already owned by guest `{owner}`", cpu.value),
                    "give each host CPU to one guest only (pinning is exclusive)",
                ));
                continue;
            }
            cpu_owner.insert(cpu.value, name.value.clone());
            cpus.push(u32::try_from(cpu.value).unwrap_or(0));
        }
    }
    let owned = u32::try_from(raw.cpus.as_ref().map_or(0, |c| c.value.len())).unwrap_or(u32::MAX);
    let vcpus = match &raw.vcpus {
        None => owned.max(1),
        Some(v) if v.value <= 0 => {
            out.push(Violation::new(
                rules::VCPUS_ZERO,
                format!("{path}.vcpus"),
                v.span.clone(),
                format!("vcpus = {} gives the guest nothing to run on", v.value),
                "give at least 1 vCPU",
            ));
            1
        }
        Some(v) => {
            if v.value > i64::from(owned) {
                out.push(Violation::new(rules::VCPUS_EXCEED_CPUS, format!("{path}.vcpus"), v.span.clone(),
                    format!("{} vCPUs but the guest owns {owned} host CPU(s); pinning is strict, one vCPU per owned CPU", v.value),
                    format!("lower vcpus to {owned} or add host CPUs to `cpus`")));
            }
            u32::try_from(v.value).unwrap_or(u32::MAX)
        }
    };
    let kernel = raw
        .kernel
        .as_ref()
        .and_then(|k| resolve_kernel(k, &format!("{path}.kernel"), base_dir, out));
    Some(Guest {
        name: name.value.clone(),
        memory_bytes: raw.memory.as_ref().map_or(0, |m| m.value),
        cpus,
        vcpus,
        kernel: kernel.unwrap_or(KernelRef::Builtin(BuiltinGuest::Probe)),
        cmdline: raw.cmdline.clone(),
        pci: Vec::new(),
    })
}

fn resolve_kernel(
    kernel: &At<String>,
    key: &str,
    base_dir: &Path,
    out: &mut Vec<Violation>,
) -> Option<KernelRef> {
    if let Some(name) = kernel.value.strip_prefix("builtin:") {
        if let Some(builtin) = BuiltinGuest::from_name(name) {
            return Some(KernelRef::Builtin(builtin));
        }
        let names: Vec<&str> = BuiltinGuest::ALL.iter().map(|b| b.name()).collect();
        let hint = match did_you_mean(name, names.iter().copied()) {
            Some(near) => format!(
                "did you mean \"builtin:{near}\"? Built-ins: {}",
                names.join(", ")
            ),
            None => format!("use one of the built-ins: {}", names.join(", ")),
        };
        out.push(Violation::new(
            rules::KERNEL_BUILTIN_UNKNOWN,
            key,
            kernel.span.clone(),
            format!("there is no built-in guest `{name}`"),
            hint,
        ));
        return None;
    }
    let path = base_dir.join(&kernel.value);
    if !path.is_file() {
        out.push(Violation::new(rules::KERNEL_FILE_MISSING, key, kernel.span.clone(),
            format!("kernel file `{}` does not exist", path.display()),
            "give a path relative to the manifest's directory, or \"builtin:<name>\" for a built-in test guest"));
        return None;
    }
    Some(KernelRef::Path(path))
}

/// A BDF-or-id reference from `guest.pci.device`.
pub fn lookup<'a>(
    machine: &'a Machine,
    text: &str,
) -> Result<Option<&'a PlacedDevice>, Option<Bdf>> {
    if let Some(bdf) = parse_bdf(text) {
        return match machine.devices.iter().find(|d| d.bdf == bdf) {
            Some(device) => Ok(Some(device)),
            None => Err(Some(bdf)),
        };
    }
    match machine.devices.iter().find(|d| !d.builtin && d.id == text) {
        Some(device) => Ok(Some(device)),
        None => Err(None),
    }
}
