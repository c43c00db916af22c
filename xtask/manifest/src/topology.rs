//! The emulated machine's PCI topology: where QEMU puts each device (addr or first free
//! slot), how SeaBIOS numbers the buses (depth first, in devfn order), which functions
//! SR-IOV adds, the IOMMU groups and the INTx line of every device.

use crate::diagnostic::{did_you_mean, Violation};
use crate::models::{self, BusKind, Kind, Model};
use crate::rules;
use crate::schema::{RawDevice, RawMachine};
use crate::units::{valid_name, Bdf, SlotAddr};
use std::collections::BTreeMap;
use std::ops::Range;

/// One PCI function of the machine: a manifest device, a built-in chipset function, or a VF.
#[derive(Debug, Clone)]
pub struct PlacedDevice {
    /// Manifest id; built-ins are named after QEMU's models; VFs are `<pf id>.vf<N>`.
    pub id: String,
    pub model: String,
    /// Id of the bridge or port it sits behind (None: root bus).
    pub parent: Option<String>,
    pub addr: SlotAddr,
    /// Host BDF after SeaBIOS numbered the buses.
    pub bdf: Bdf,
    /// Bus number of the bus this device provides, if it is a bridge or port.
    pub secondary_bus: Option<u8>,
    pub multifunction: bool,
    pub disk_bytes: Option<u64>,
    /// Scalar props, as QEMU text.
    pub props: Vec<(String, String)>,
    pub builtin: bool,
    /// Index of the physical function if this is an SR-IOV VF.
    pub physical_function: Option<usize>,
    /// VFs the pci-server can enable (props.sriov_max_vfs).
    pub max_vfs: u16,
    pub iommu_group: u32,
    /// INTx line on the root complex: PIRQ index 0-3 (A-D), None if MSI-capable or no pin.
    pub intx_line: Option<u8>,
    pub(crate) kind: Kind,
    pub(crate) sub_page_bar: bool,
    pub(crate) span: Range<usize>,
}

impl PlacedDevice {
    /// Can be given to a guest (endpoints and VFs, not chipset functions or bridges).
    pub fn assignable(&self) -> bool {
        self.kind == Kind::Endpoint && !self.builtin
    }
    /// Needs its INTx line (no MSI/MSI-X).
    pub fn intx_only(&self) -> bool {
        self.intx_line.is_some()
    }
}

/// Slots of the q35 root bus QEMU fills before any -device: 00.0 host bridge (mch),
/// 1f.0 LPC, 1f.2 AHCI, 1f.3 SMBus (ICH9); `-nic none` keeps 01.0 free.
const BUILTINS: &[(&str, u8, u8)] = &[
    ("mch", 0, 0),
    ("ich9-lpc", 31, 0),
    ("ich9-ahci", 31, 2),
    ("ich9-smbus", 31, 3),
];

fn builtin(name: &str, slot: u8, function: u8) -> PlacedDevice {
    PlacedDevice {
        id: name.to_owned(),
        model: name.to_owned(),
        parent: None,
        addr: SlotAddr { slot, function },
        bdf: Bdf {
            bus: 0,
            device: slot,
            function,
        },
        secondary_bus: None,
        multifunction: slot == 31 && function == 0,
        disk_bytes: None,
        props: Vec::new(),
        builtin: true,
        physical_function: None,
        max_vfs: 0,
        iommu_group: 0,
        intx_line: None,
        kind: Kind::Endpoint,
        sub_page_bar: false,
        span: 0..0,
    }
}

fn prop<'a>(device: &'a RawDevice, key: &str) -> Option<&'a str> {
    device
        .props
        .iter()
        .find(|(k, _)| k.value == key)
        .map(|(_, v)| v.as_str())
}

/// Place every device. Returns the devices (built-ins first, then the manifest's in order,
/// then VFs); devices that could not be placed are left out and reported.
pub fn place(
    machine: &RawMachine,
    path_of: impl Fn(usize) -> String,
    out: &mut Vec<Violation>,
) -> Vec<PlacedDevice> {
    let mut devices: Vec<PlacedDevice> =
        BUILTINS.iter().map(|&(n, s, f)| builtin(n, s, f)).collect();
    // bus key: None = root bus, Some(index into devices) = that bridge's secondary bus.
    let mut occupied: BTreeMap<(Option<usize>, u8), usize> = BTreeMap::new();
    for (index, device) in devices.iter().enumerate() {
        occupied.insert((None, device.addr.slot << 3 | device.addr.function), index);
    }
    let mut ids: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let all_ids: Vec<&str> = machine
        .devices
        .iter()
        .filter_map(|d| d.id.as_ref().map(|i| i.value.as_str()))
        .collect();
    for (index, raw) in machine.devices.iter().enumerate() {
        let path = path_of(index);
        let (Some(id), Some(model_name)) = (&raw.id, &raw.model) else {
            continue;
        };
        if !valid_name(&id.value) {
            out.push(Violation::new(
                rules::BAD_NAME,
                format!("{path}.id"),
                id.span.clone(),
                format!("`{}` is not a valid device id", id.value),
                "use 1-31 characters a-z, 0-9, '-' or '_', starting with a letter",
            ));
        }
        if let Some(first) = ids.get(&id.value) {
            let _ = first;
            out.push(Violation::new(
                rules::DUPLICATE_DEVICE_ID,
                format!("{path}.id"),
                id.span.clone(),
                format!(
                    "device id `{}` is already used by an earlier [[machine.device]]",
                    id.value
                ),
                "give every machine device its own id",
            ));
            continue;
        }
        ids.insert(id.value.clone(), id.span.clone());
        let Some(model) = models::find(&model_name.value) else {
            let names = models::MODELS.iter().map(|m| m.name);
            let hint = match did_you_mean(&model_name.value, names) {
                Some(near) => format!("did you mean `{near}`? Known models: {}", model_list()),
                None => format!("use one of: {}", model_list()),
            };
            out.push(Violation::new(
                rules::UNKNOWN_MODEL,
                format!("{path}.model"),
                model_name.span.clone(),
                format!("unknown device model `{}`", model_name.value),
                hint,
            ));
            continue;
        };
        check_model_keys(raw, model, &path, out);
        let Some((parent, bus_kind)) = resolve_bus(raw, &devices, &all_ids, &path, out) else {
            continue;
        };
        if !model.allowed_on(bus_kind) {
            let at = raw
                .bus
                .as_ref()
                .map_or(model_name.span.clone(), |b| b.span.clone());
            out.push(Violation::new(
                rules::BUS_PLACEMENT,
                format!("{path}.bus"),
                at,
                format!("a {} cannot sit on {}", model.name, bus_kind.describe()),
                format!("put it on {}", model.allowed_text()),
            ));
            continue;
        }
        let Some(addr) = choose_addr(raw, parent, bus_kind, &occupied, &devices, &path, out) else {
            continue;
        };
        let index = devices.len();
        occupied.insert((parent, addr.slot << 3 | addr.function), index);
        let sriov = prop(raw, "sriov_max_vfs")
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        let msi_off =
            matches!(prop(raw, "msi"), Some("off" | "false")) || prop(raw, "vectors") == Some("0");
        devices.push(PlacedDevice {
            id: id.value.clone(),
            model: model.name.to_owned(),
            parent: parent.and_then(|p| devices.get(p)).map(|p| p.id.clone()),
            addr,
            bdf: Bdf {
                bus: 0,
                device: addr.slot,
                function: addr.function,
            },
            secondary_bus: None,
            multifunction: raw.multifunction,
            disk_bytes: raw.disk.as_ref().map(|d| d.value),
            props: raw
                .props
                .iter()
                .map(|(k, v)| (k.value.clone(), v.clone()))
                .collect(),
            builtin: false,
            physical_function: None,
            max_vfs: if model.sriov { sriov } else { 0 },
            iommu_group: 0,
            intx_line: (!model.msi || msi_off).then_some(0),
            kind: model.kind,
            sub_page_bar: model.sub_page_bar,
            span: raw.span.clone(),
        });
        let _ = sriov;
    }
    check_functions(&devices, &occupied, machine, &path_of, out);
    add_virtual_functions(&mut devices, &mut occupied, machine, &path_of, out);
    number_buses(&mut devices);
    crate::groups::assign_groups(&mut devices);
    devices
}

fn model_list() -> String {
    models::MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_model_keys(raw: &RawDevice, model: &Model, path: &str, out: &mut Vec<Violation>) {
    if let Some(disk) = &raw.disk {
        if !model.storage {
            out.push(Violation::new(
                rules::DISK_NOT_SUPPORTED,
                format!("{path}.disk"),
                disk.span.clone(),
                format!("a {} has no storage to back with a disk", model.name),
                "remove `disk`, or use a storage model such as nvme or virtio-blk-pci",
            ));
        }
    }
    if let Some((key, value)) = raw.props.iter().find(|(k, _)| k.value == "sriov_max_vfs") {
        if !model.sriov {
            out.push(Violation::new(
                rules::SRIOV_NOT_SUPPORTED,
                format!("{path}.props.sriov_max_vfs"),
                key.span.clone(),
                format!("a {} has no SR-IOV capability", model.name),
                "remove sriov_max_vfs, or use model = \"nvme\"",
            ));
        } else if value.parse::<u16>().map_or(true, |n| n > 127) {
            out.push(Violation::new(
                rules::SRIOV_NOT_SUPPORTED,
                format!("{path}.props.sriov_max_vfs"),
                key.span.clone(),
                format!("sriov_max_vfs = {value} is outside QEMU nvme's 0..=127"),
                "give a number of VFs from 0 to 127",
            ));
        }
    }
}

/// Find the parent bus. Returns (parent index, bus kind).
fn resolve_bus(
    raw: &RawDevice,
    devices: &[PlacedDevice],
    all_ids: &[&str],
    path: &str,
    out: &mut Vec<Violation>,
) -> Option<(Option<usize>, BusKind)> {
    let Some(bus) = &raw.bus else {
        return Some((None, BusKind::Root));
    };
    let key = format!("{path}.bus");
    let Some(parent) = devices.iter().position(|d| !d.builtin && d.id == bus.value) else {
        if all_ids.contains(&bus.value.as_str()) {
            out.push(Violation::new(rules::BUS_DECLARED_LATER, key, bus.span.clone(),
                format!("bus `{}` is declared after this device", bus.value),
                "move this [[machine.device]] below the device that provides its bus (QEMU creates devices in order)"));
        } else {
            let hint = match did_you_mean(&bus.value, all_ids.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? `bus` names the id of a port or bridge"),
                None => "name the id of a pcie-root-port, xio3130-downstream, x3130-upstream, pcie-pci-bridge or pci-bridge, or omit `bus` for the root bus".to_owned(),
            };
            out.push(Violation::new(
                rules::UNKNOWN_BUS,
                key,
                bus.span.clone(),
                format!("no machine device has id `{}`", bus.value),
                hint,
            ));
        }
        return None;
    };
    let provider = devices.get(parent)?;
    let bus_kind = models::find(&provider.model).and_then(Model::secondary_bus);
    match bus_kind {
        Some(kind) => Some((Some(parent), kind)),
        None => {
            out.push(Violation::new(rules::BUS_NOT_A_BRIDGE, key, bus.span.clone(),
                format!("`{}` is a {}, which provides no bus", bus.value, provider.model),
                "put the device behind a pcie-root-port, xio3130-downstream, pcie-pci-bridge or pci-bridge"));
            None
        }
    }
}

fn choose_addr(
    raw: &RawDevice,
    parent: Option<usize>,
    bus_kind: BusKind,
    occupied: &BTreeMap<(Option<usize>, u8), usize>,
    devices: &[PlacedDevice],
    path: &str,
    out: &mut Vec<Violation>,
) -> Option<SlotAddr> {
    if let Some(addr) = &raw.addr {
        let key = format!("{path}.addr");
        if bus_kind == BusKind::PortLink && addr.value.slot != 0 {
            out.push(Violation::new(rules::SLOT_BEHIND_PORT, key, addr.span.clone(),
                format!("slot {:02x} behind a PCIe port is unreachable: a port's link carries only device 0 (PCIe Base spec 5.0 section 7.3.1)", addr.value.slot),
                "use addr = \"00.F\", or put more devices behind a switch (x3130-upstream + xio3130-downstream)"));
            return None;
        }
        let devfn = addr.value.slot << 3 | addr.value.function;
        if let Some(other) = occupied.get(&(parent, devfn)).and_then(|i| devices.get(*i)) {
            out.push(Violation::new(
                rules::ADDRESS_IN_USE,
                key,
                addr.span.clone(),
                format!(
                    "addr {} on this bus is already taken by `{}`",
                    addr.value, other.id
                ),
                "pick a free addr on this bus, or omit `addr` to take the first free slot",
            ));
            return None;
        }
        return Some(addr.value);
    }
    // QEMU (hw/pci/pci.c do_pci_register_device): first slot whose function 0 is free.
    let last_slot = if bus_kind == BusKind::PortLink { 0 } else { 31 };
    let free = (0..=last_slot).find(|slot| !occupied.contains_key(&(parent, slot << 3)));
    match free {
        Some(slot) => Some(SlotAddr { slot, function: 0 }),
        None => {
            let at = raw
                .bus
                .as_ref()
                .map_or(raw.span.clone(), |b| b.span.clone());
            out.push(Violation::new(rules::BUS_FULL, format!("{path}.bus"), at,
                "no free slot left on this bus",
                if bus_kind == BusKind::PortLink {
                    "a PCIe port holds one device: add another pcie-root-port (or a switch) for this one"
                } else {
                    "put the device on another bus"
                }));
            None
        }
    }
}

fn check_functions(
    devices: &[PlacedDevice],
    occupied: &BTreeMap<(Option<usize>, u8), usize>,
    machine: &RawMachine,
    path_of: &impl Fn(usize) -> String,
    out: &mut Vec<Violation>,
) {
    for (&(bus, devfn), &index) in occupied {
        let Some(device) = devices.get(index) else {
            continue;
        };
        if device.builtin {
            continue;
        }
        let raw_index = machine
            .devices
            .iter()
            .position(|r| r.id.as_ref().is_some_and(|i| i.value == device.id));
        let path = raw_index.map(path_of).unwrap_or_default();
        let raw = raw_index.and_then(|i| machine.devices.get(i));
        let span = raw
            .and_then(|r| r.addr.as_ref())
            .map_or(device.span.clone(), |a| a.span.clone());
        let slot = devfn >> 3;
        let function0 = occupied
            .get(&(bus, slot << 3))
            .and_then(|i| devices.get(*i));
        if devfn & 7 != 0 {
            match function0 {
                None => out.push(Violation::new(rules::FUNCTION_ZERO_MISSING, format!("{path}.addr"), span,
                    format!("function {} of slot {slot:02x} exists but function 0 does not; software stops scanning a slot without function 0", devfn & 7),
                    format!("add a device at addr = \"{slot:02x}.0\" with multifunction = true, or move this one to function 0"))),
                Some(first) if !first.multifunction && !first.builtin => {
                    let first_index = machine.devices.iter().position(|r| r.id.as_ref().is_some_and(|i| i.value == first.id));
                    let first_path = first_index.map(path_of).unwrap_or_default();
                    out.push(Violation::new(rules::MULTIFUNCTION_NOT_SET, format!("{first_path}.multifunction"), first.span.clone(),
                        format!("`{}` is function 0 of a slot that also has function {} (`{}`) but is not multi-function", first.id, devfn & 7, device.id),
                        "add `multifunction = true` to the function-0 device"));
                }
                Some(_) => {}
            }
        }
    }
}

fn add_virtual_functions(
    devices: &mut Vec<PlacedDevice>,
    occupied: &mut BTreeMap<(Option<usize>, u8), usize>,
    machine: &RawMachine,
    path_of: &impl Fn(usize) -> String,
    out: &mut Vec<Violation>,
) {
    let physical: Vec<usize> = (0..devices.len())
        .filter(|&i| devices.get(i).is_some_and(|d| d.max_vfs > 0))
        .collect();
    for pf_index in physical {
        let Some(pf) = devices.get(pf_index).cloned() else {
            continue;
        };
        let bus = pf
            .parent
            .as_ref()
            .and_then(|p| devices.iter().position(|d| !d.builtin && &d.id == p));
        let pf_devfn = u16::from(pf.addr.slot) << 3 | u16::from(pf.addr.function);
        for vf in 0..pf.max_vfs {
            // QEMU nvme: First VF Offset 1, VF Stride 1 (PCIe Base spec 5.0 section 9.3.3.9/10).
            let devfn = pf_devfn + 1 + vf;
            let raw_index = machine
                .devices
                .iter()
                .position(|r| r.id.as_ref().is_some_and(|i| i.value == pf.id));
            let key = format!(
                "{}.props.sriov_max_vfs",
                raw_index.map(path_of).unwrap_or_default()
            );
            let Ok(devfn) = u8::try_from(devfn) else {
                out.push(Violation::new(
                    rules::SRIOV_VF_COLLISION,
                    key,
                    pf.span.clone(),
                    format!(
                        "VF {vf} of `{}` would fall past function 255 of the bus",
                        pf.id
                    ),
                    "lower sriov_max_vfs",
                ));
                break;
            };
            if let Some(other) = occupied.get(&(bus, devfn)).and_then(|i| devices.get(*i)) {
                out.push(Violation::new(
                    rules::SRIOV_VF_COLLISION,
                    key,
                    pf.span.clone(),
                    format!(
                        "VF {vf} of `{}` lands on {:02x}.{}, which `{}` occupies",
                        pf.id,
                        devfn >> 3,
                        devfn & 7,
                        other.id
                    ),
                    "move the other device to another slot, or lower sriov_max_vfs",
                ));
                break;
            }
            let index = devices.len();
            occupied.insert((bus, devfn), index);
            devices.push(PlacedDevice {
                id: format!("{}.vf{vf}", pf.id),
                addr: SlotAddr {
                    slot: devfn >> 3,
                    function: devfn & 7,
                },
                multifunction: false,
                disk_bytes: None,
                props: Vec::new(),
                physical_function: Some(pf_index),
                max_vfs: 0,
                ..pf.clone()
            });
        }
    }
}

/// SeaBIOS (src/fw/pciinit.c pci_bios_init_bus_rec): depth first, devices in devfn order,
/// each bridge gets the next bus number and its subtree is numbered before its next sibling.
fn number_buses(devices: &mut [PlacedDevice]) {
    let mut next_bus: u8 = 0;
    visit(devices, None, 0, &mut next_bus);
}

fn visit(devices: &mut [PlacedDevice], parent: Option<&str>, bus: u8, next_bus: &mut u8) {
    let mut on_bus: Vec<usize> = (0..devices.len())
        .filter(|&i| {
            devices
                .get(i)
                .is_some_and(|d| d.parent.as_deref() == parent)
        })
        .collect();
    on_bus.sort_by_key(|&i| devices.get(i).map(|d| (d.addr.slot, d.addr.function)));
    for index in on_bus {
        let Some(device) = devices.get_mut(index) else {
            continue;
        };
        device.bdf = Bdf {
            bus,
            device: device.addr.slot,
            function: device.addr.function,
        };
        let bridge = device.kind != Kind::Endpoint && device.physical_function.is_none();
        if bridge {
            *next_bus = next_bus.saturating_add(1);
            device.secondary_bus = Some(*next_bus);
            let id = device.id.clone();
            let secondary = *next_bus;
            visit(devices, Some(&id), secondary, next_bus);
        }
    }
}
