//! QEMU arguments for [machine]: memory, CPUs, intel-iommu and every -device with its
//! bus, addr, multifunction and props, plus the drives and nvme subsystems it needs.

use crate::models::Kind;
use crate::system::System;
use std::path::Path;

impl System {
    /// QEMU arguments for the machine section (no -accel/-machine/-cpu/-cdrom/-serial: the
    /// xtask adds those). Creates each `disk` backing file fresh (sparse) in `run_dir`.
    /// Includes `-nic none`: the BDFs computed here assume q35 has no default NIC at 00:01.0.
    pub fn qemu_machine_args(&self, run_dir: &Path) -> std::io::Result<Vec<String>> {
        let m = &self.machine;
        let mut args: Vec<String> = vec![
            "-m".into(),
            format!("{}M", m.memory_bytes >> 20),
            "-smp".into(),
            m.cpus.to_string(),
            "-nic".into(),
            "none".into(),
        ];
        if m.iommu {
            // intel-iommu goes first: QEMU wants the IOMMU before the PCI devices it translates.
            args.extend(["-device".into(), "intel-iommu,intremap=on".into()]);
        }
        let mut chassis: u32 = 0;
        for device in m
            .devices
            .iter()
            .filter(|d| !d.builtin && d.physical_function.is_none())
        {
            let mut options = vec![device.model.clone(), format!("id={}", device.id)];
            if let Some(parent) = &device.parent {
                options.push(format!("bus={parent}"));
            }
            options.push(format!(
                "addr={:02x}.{}",
                device.addr.slot, device.addr.function
            ));
            if device.multifunction {
                options.push("multifunction=on".into());
            }
            let has = |key: &str| device.props.iter().any(|(k, _)| k == key);
            match device.kind {
                Kind::RootPort | Kind::DownstreamPort => {
                    chassis += 1;
                    options.push(format!("chassis={chassis}"));
                }
                Kind::PciBridge => {
                    chassis += 1;
                    options.push(format!("chassis_nr={chassis}"));
                }
                _ => {}
            }
            let mut extra = Vec::new();
            if device.model == "nvme" {
                if !has("serial") {
                    options.push(format!("serial={}", device.id));
                }
                if device.max_vfs > 0 {
                    let subsystem = format!("{}-subsys", device.id);
                    extra.extend([
                        "-device".into(),
                        format!("nvme-subsys,id={subsystem},nqn={subsystem}"),
                    ]);
                    options.push(format!("subsys={subsystem}"));
                    for (key, value) in [
                        ("sriov_vq_flexible", "4"),
                        ("sriov_vi_flexible", "2"),
                        ("max_ioqpairs", "6"),
                        ("msix_qsize", "4"),
                    ] {
                        if !has(key) {
                            options.push(format!("{key}={value}"));
                        }
                    }
                }
            }
            for (key, value) in &device.props {
                options.push(format!("{key}={value}"));
            }
            if let Some(bytes) = device.disk_bytes {
                let file = run_dir.join(format!("{}.img", device.id));
                let _ = std::fs::remove_file(&file);
                let handle = std::fs::File::create(&file)?;
                handle.set_len(bytes)?;
                let drive = format!("{}-drive", device.id);
                args.extend([
                    "-drive".into(),
                    format!("file={},if=none,id={drive},format=raw", file.display()),
                ]);
                if device.model == "nvme" && device.max_vfs > 0 {
                    args.append(&mut extra);
                    args.extend(["-device".into(), options.join(",")]);
                    args.extend([
                        "-device".into(),
                        format!("nvme-ns,drive={drive},bus={},shared=false", device.id),
                    ]);
                    continue;
                }
                options.push(format!("drive={drive}"));
            }
            args.extend(extra);
            args.extend(["-device".into(), options.join(",")]);
        }
        Ok(args)
    }
}
