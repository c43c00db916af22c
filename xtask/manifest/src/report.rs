//! The platform report: per guest RAM, CPUs, devices host BDF -> guest BDF, IOMMU groups;
//! as text for people and as JSON with the same content.

use crate::system::{KernelRef, System};
use crate::units::format_size;
use serde_json::{json, Value};
use std::fmt::Write;

/// One group member: (BDF, device id, owning guest).
type Member = (String, String, Option<String>);

fn kernel_text(kernel: &KernelRef) -> String {
    match kernel {
        KernelRef::Builtin(b) => format!("builtin:{}", b.name()),
        KernelRef::Path(p) => p.display().to_string(),
    }
}

impl System {
    /// Human-readable report.
    pub fn report_text(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "system {}", self.name);
        let _ = writeln!(
            s,
            "machine: {} RAM, {} CPU(s), iommu {}{}",
            format_size(m.memory_bytes),
            m.cpus,
            if m.iommu {
                "on (intel-iommu, interrupt remapping)"
            } else {
                "off"
            },
            if m.described {
                ""
            } else {
                " [default machine: BDFs are checked at boot]"
            }
        );
        for guest in &self.guests {
            let cpus: Vec<String> = guest.cpus.iter().map(u32::to_string).collect();
            let _ = writeln!(
                s,
                "guest {}: {} RAM, host CPUs [{}], {} vCPU(s), kernel {}{}",
                guest.name,
                format_size(guest.memory_bytes),
                cpus.join(", "),
                guest.vcpus,
                kernel_text(&guest.kernel),
                if guest.cmdline.is_empty() {
                    String::new()
                } else {
                    format!(", cmdline \"{}\"", guest.cmdline)
                }
            );
            for p in &guest.pci {
                let group = p.iommu_group.map_or("?".to_owned(), |g| g.to_string());
                let _ = writeln!(
                    s,
                    "  pci {} -> {}  {} ({}) iommu group {}{}{}",
                    p.host_bdf,
                    p.guest_bdf,
                    p.device,
                    p.model.as_deref().unwrap_or("unknown model"),
                    group,
                    if p.virtual_function {
                        ", SR-IOV VF"
                    } else {
                        ""
                    },
                    if p.intx_only { ", INTx only" } else { "" }
                );
            }
        }
        let _ = writeln!(s, "iommu groups:");
        for (group, members) in self.groups() {
            let list: Vec<String> = members
                .iter()
                .map(|(bdf, id, owner)| {
                    format!(
                        "{bdf} {id}{}",
                        owner.as_ref().map_or(String::new(), |o| format!(" [{o}]"))
                    )
                })
                .collect();
            let _ = writeln!(s, "  {group}: {}", list.join(", "));
        }
        s
    }

    /// (group, [(bdf, id, owner guest)]) in group order.
    fn groups(&self) -> Vec<(u32, Vec<Member>)> {
        let mut groups: std::collections::BTreeMap<u32, Vec<Member>> = Default::default();
        let mut devices: Vec<_> = self.machine.devices.iter().collect();
        devices.sort_by_key(|d| d.bdf);
        for d in devices {
            let owner = self
                .guests
                .iter()
                .find(|g| g.pci.iter().any(|p| p.host_bdf == d.bdf))
                .map(|g| g.name.clone());
            groups
                .entry(d.iommu_group)
                .or_default()
                .push((d.bdf.to_string(), d.id.clone(), owner));
        }
        groups.into_iter().collect()
    }

    /// The same report as JSON.
    pub fn report_json(&self) -> Value {
        let m = &self.machine;
        let devices: Vec<Value> =
            {
                let mut list: Vec<_> = m.devices.iter().collect();
                list.sort_by_key(|d| d.bdf);
                list.iter().map(|d| json!({
                "id": d.id, "model": d.model, "bdf": d.bdf.to_string(), "bus": d.parent,
                "addr": d.addr.to_string(), "secondary_bus": d.secondary_bus,
                "iommu_group": d.iommu_group, "assignable": d.assignable(),
                "intx_line": d.intx_line.map(|l| format!("PIRQ{}", char::from(b'A' + l))),
                "virtual_function": d.physical_function.is_some(),
            })).collect()
            };
        let guests: Vec<Value> = self.guests.iter().map(|g| json!({
            "name": g.name, "memory_bytes": g.memory_bytes, "memory": format_size(g.memory_bytes),
            "cpus": g.cpus, "vcpus": g.vcpus, "kernel": kernel_text(&g.kernel), "cmdline": g.cmdline,
            "pci": g.pci.iter().map(|p| json!({
                "device": p.device, "model": p.model, "host_bdf": p.host_bdf.to_string(),
                "guest_bdf": p.guest_bdf.to_string(), "iommu_group": p.iommu_group,
                "virtual_function": p.virtual_function, "intx_only": p.intx_only,
            })).collect::<Vec<_>>(),
        })).collect();
        let groups: Vec<Value> = self.groups().into_iter().map(|(group, members)| json!({
            "group": group,
            "devices": members.into_iter().map(|(bdf, id, owner)| json!({"bdf": bdf, "id": id, "guest": owner})).collect::<Vec<_>>(),
        })).collect();
        json!({
            "system": self.name,
            "machine": { "memory_bytes": m.memory_bytes, "memory": format_size(m.memory_bytes), "cpus": m.cpus,
                         "iommu": m.iommu, "described": m.described, "devices": devices },
            "insecure_no_interrupt_remapping": self.insecure_no_interrupt_remapping,
            "guests": guests,
            "iommu_groups": groups,
        })
    }
}
