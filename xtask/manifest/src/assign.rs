//! Device assignments: resolve each `[[guest.pci]]` to host functions, give each a guest
//! BDF, and refuse anything that would share a function, slot, IOMMU group, INTx line or
//! BAR page between guests.

use crate::diagnostic::{did_you_mean, Violation};
use crate::rules;
use crate::schema::{Functions, RawManifest};
use crate::system::{lookup, Guest, Machine, PciAssignment};
use crate::topology::PlacedDevice;
use crate::units::{parse_bdf, Bdf};
use std::collections::BTreeMap;
use std::ops::Range;

struct Taken {
    guest: String,
    key: String,
    span: Range<usize>,
    device: usize,
}

/// Resolve all assignments; returns whether any guest got a PCI function.
pub fn assign(
    raw: &RawManifest,
    machine: &Machine,
    guests: &mut [(usize, Guest)],
    out: &mut Vec<Violation>,
) -> bool {
    let mut taken: BTreeMap<Bdf, Taken> = BTreeMap::new();
    let mut any = false;
    for (raw_index, guest) in guests.iter_mut() {
        let Some(raw_guest) = raw.guests.get(*raw_index) else {
            continue;
        };
        let mut next_slot: u8 = 1;
        for (pci_index, pci) in raw_guest.pci.iter().enumerate() {
            let path = format!("guest[{raw_index}].pci[{pci_index}]");
            let Some(reference) = &pci.device else {
                continue;
            };
            let key = format!("{path}.device");
            let functions: Vec<(Option<usize>, Bdf)> = match lookup(machine, &reference.value) {
                Ok(Some(device)) => {
                    let index = machine
                        .devices
                        .iter()
                        .position(|d| std::ptr::eq(d, device))
                        .unwrap_or(0);
                    if !device.assignable() {
                        out.push(Violation::new(rules::DEVICE_NOT_ASSIGNABLE, key, reference.span.clone(),
                            format!("`{}` ({}) is part of the machine's fabric, not a device a guest can own", device.id, device.model),
                            "assign an endpoint (nvme, edu, e1000e, ...) or one of its SR-IOV VFs"));
                        continue;
                    }
                    match pci.functions {
                        Functions::One => vec![(Some(index), device.bdf)],
                        Functions::All => machine
                            .devices
                            .iter()
                            .enumerate()
                            .filter(|(_, d)| {
                                d.physical_function.is_none()
                                    && d.parent == device.parent
                                    && d.addr.slot == device.addr.slot
                                    && !d.builtin
                            })
                            .map(|(i, d)| (Some(i), d.bdf))
                            .collect(),
                    }
                }
                Err(Some(bdf)) if !machine.described => vec![(None, bdf)],
                Err(bdf) => {
                    out.push(unknown_device(
                        machine,
                        &reference.value,
                        bdf,
                        &key,
                        reference.span.clone(),
                    ));
                    continue;
                }
                Ok(None) => continue,
            };
            let slot = match &pci.vbdf {
                Some(v) => {
                    if v.value.bus == 0 && v.value.device == 0 {
                        out.push(Violation::new(
                            rules::VBDF_RESERVED,
                            format!("{path}.vbdf"),
                            v.span.clone(),
                            "guest 00:00.x is the guest's host bridge",
                            "pick another slot, e.g. \"00:05.0\"",
                        ));
                        continue;
                    }
                    (v.value.bus, v.value.device)
                }
                None => {
                    while guest
                        .pci
                        .iter()
                        .any(|p| p.guest_bdf.bus == 0 && p.guest_bdf.device == next_slot)
                    {
                        next_slot = next_slot.saturating_add(1);
                    }
                    (0, next_slot)
                }
            };
            for (device_index, host_bdf) in functions {
                let device = device_index.and_then(|i| machine.devices.get(i));
                let function = match (pci.functions, &pci.vbdf) {
                    (Functions::All, _) => host_bdf.function,
                    (Functions::One, Some(v)) => v.value.function,
                    (Functions::One, None) => 0,
                };
                let guest_bdf = Bdf {
                    bus: slot.0,
                    device: slot.1,
                    function,
                };
                if let Some(first) = taken.get(&host_bdf) {
                    out.push(Violation::new(
                        rules::DEVICE_ASSIGNED_TWICE,
                        key.clone(),
                        reference.span.clone(),
                        format!(
                            "{host_bdf} is already assigned to guest `{}` by `{}`",
                            first.guest, first.key
                        ),
                        "assign every function to one guest only; remove one of the two entries",
                    ));
                    continue;
                }
                if let Some(other) = guest.pci.iter().find(|p| p.guest_bdf == guest_bdf) {
                    let at = pci
                        .vbdf
                        .as_ref()
                        .map_or(reference.span.clone(), |v| v.span.clone());
                    out.push(Violation::new(rules::VBDF_COLLISION, format!("{path}.vbdf"), at,
                        format!("guest BDF {guest_bdf} is already used by `{}` in this guest", other.device),
                        "give each assignment its own vbdf slot, or omit vbdf to take the next free one"));
                    continue;
                }
                taken.insert(
                    host_bdf,
                    Taken {
                        guest: guest.name.clone(),
                        key: key.clone(),
                        span: reference.span.clone(),
                        device: device_index.unwrap_or(usize::MAX),
                    },
                );
                any = true;
                guest.pci.push(PciAssignment {
                    device: device.map_or(reference.value.clone(), |d| d.id.clone()),
                    model: device.map(|d| d.model.clone()),
                    host_bdf,
                    guest_bdf,
                    iommu_group: device.map(|d| d.iommu_group),
                    virtual_function: device.is_some_and(|d| d.physical_function.is_some()),
                    intx_only: device.is_some_and(PlacedDevice::intx_only),
                });
            }
            if pci.vbdf.is_none() {
                next_slot = next_slot.saturating_add(1);
            }
        }
    }
    check_sharing(machine, &taken, out);
    any
}

fn unknown_device(
    machine: &Machine,
    text: &str,
    bdf: Option<Bdf>,
    key: &str,
    span: Range<usize>,
) -> Violation {
    if let Some(bdf) = bdf {
        let known: Vec<String> = machine
            .devices
            .iter()
            .filter(|d| d.assignable())
            .map(|d| format!("{} ({})", d.bdf, d.id))
            .collect();
        return Violation::new(
            rules::DEVICE_UNKNOWN,
            key,
            span,
            format!("no device of the machine is at {bdf}"),
            if known.is_empty() {
                "add the device to [machine] or reference it by id".to_owned()
            } else {
                format!("assignable devices: {}", known.join(", "))
            },
        );
    }
    if let Some((pf, vf)) = text.rsplit_once(".vf") {
        if let Some(device) = machine
            .devices
            .iter()
            .find(|d| d.id == pf && d.physical_function.is_none())
        {
            return Violation::new(
                rules::SRIOV_VF_UNKNOWN,
                key,
                span,
                format!("`{pf}` has {} VF(s); there is no VF {vf}", device.max_vfs),
                format!(
                    "use {pf}.vf0 .. {pf}.vf{} or raise props.sriov_max_vfs",
                    device.max_vfs.saturating_sub(1)
                ),
            );
        }
    }
    let ids = machine
        .devices
        .iter()
        .filter(|d| d.assignable())
        .map(|d| d.id.as_str());
    let hint = match did_you_mean(text, ids) {
        Some(near) => format!("did you mean `{near}`? Name a [[machine.device]] id, `<id>.vf<N>`, or a host BDF"),
        None => "name a [[machine.device]] id, `<id>.vf<N>` for an SR-IOV VF, or a host BDF such as \"0000:01:00.0\"".to_owned(),
    };
    let _ = parse_bdf;
    Violation::new(
        rules::DEVICE_UNKNOWN,
        key,
        span,
        format!("no machine device `{text}`"),
        hint,
    )
}

fn check_sharing(machine: &Machine, taken: &BTreeMap<Bdf, Taken>, out: &mut Vec<Violation>) {
    let mut reported: Vec<(&'static str, String, String)> = Vec::new();
    let entries: Vec<(&Taken, &PlacedDevice)> = taken
        .values()
        .filter_map(|t| machine.devices.get(t.device).map(|d| (t, d)))
        .collect();
    for (i, (a, da)) in entries.iter().enumerate() {
        for (b, db) in entries.iter().skip(i + 1) {
            if a.guest == b.guest {
                continue;
            }
            let pair = |rule| (rule, a.guest.clone(), b.guest.clone());
            let same_slot = da.parent == db.parent
                && da.addr.slot == db.addr.slot
                && da.physical_function.is_none()
                && db.physical_function.is_none();
            let mut push = |rule: &'static str, message: String, help: &str| {
                if !reported.contains(&pair(rule)) {
                    reported.push(pair(rule));
                    out.push(Violation::new(
                        rule,
                        b.key.clone(),
                        b.span.clone(),
                        message,
                        help,
                    ));
                }
            };
            if same_slot {
                push(rules::FUNCTION_SPLIT,
                    format!("{} (`{}`) and {} (`{}`) are functions of one slot but go to guests `{}` and `{}`", da.bdf, da.id, db.bdf, db.id, a.guest, b.guest),
                    "give all functions of a slot to one guest (functions = \"all\")");
            } else if da.iommu_group == db.iommu_group {
                push(rules::IOMMU_GROUP_SPLIT,
                    format!("{} (`{}`) and {} (`{}`) share IOMMU group {} but go to guests `{}` and `{}`", da.bdf, da.id, db.bdf, db.id, da.iommu_group, a.guest, b.guest),
                    "give the whole group to one guest, or move one device behind its own pcie-root-port");
            }
            if let (Some(la), Some(lb)) = (da.intx_line, db.intx_line) {
                if la == lb {
                    push(rules::INTX_SHARED,
                        format!("`{}` and `{}` need INTx and both reach PIRQ{} , shared between guests `{}` and `{}`", da.id, db.id, char::from(b'A' + la), a.guest, b.guest),
                        "move one device to a slot whose line differs, or use a model with MSI/MSI-X");
                }
            }
            if da.parent == db.parent && (da.sub_page_bar || db.sub_page_bar) {
                push(rules::BAR_PAGE_SHARED,
                    format!("`{}` and `{}` sit on one bus and one has a BAR smaller than 4 KiB: the firmware may pack both into one page, shared by guests `{}` and `{}`", da.id, db.id, a.guest, b.guest),
                    "put the device with the small BAR behind its own pcie-root-port");
            }
        }
    }
}
