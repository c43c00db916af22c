//! Every example system validates, reports and compiles; placement matches QEMU + SeaBIOS.

use sluice_manifest::load_file;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../userland/systems")
        .join(name)
}

#[test]
fn print_reports() {
    for name in [
        "default.toml",
        "two-guests.toml",
        "passthrough-demo.toml",
        "dma-isolation.toml",
    ] {
        match load_file(&example(name)) {
            Ok(system) => println!("{}", system.report_text()),
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn dma_isolation_placement_matches_seabios() {
    let system = load_file(&example("dma-isolation.toml")).unwrap();
    let bdf = |id: &str| {
        system
            .machine()
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.bdf.to_string())
            .unwrap()
    };
    // Verified against `info pci` of QEMU 7.2 + SeaBIOS with the same -device list.
    assert_eq!(bdf("rp1"), "0000:00:01.0");
    assert_eq!(bdf("switch-up"), "0000:01:00.0");
    assert_eq!(bdf("switch-down2"), "0000:02:01.0");
    assert_eq!(bdf("nic0"), "0000:03:00.0");
    assert_eq!(bdf("legacy-nic"), "0000:06:00.0");
    assert_eq!(bdf("audio-nic"), "0000:07:00.1");
    assert_eq!(bdf("nvme0.vf1"), "0000:08:00.2");
    assert_eq!(bdf("edu0"), "0000:09:00.0");
    let group = |id: &str| {
        system
            .machine()
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.iommu_group)
            .unwrap()
    };
    assert_eq!(group("pcibr"), group("legacy-nic"));
    assert_eq!(group("audio"), group("audio-nic"));
    assert_ne!(group("nvme0.vf0"), group("nvme0.vf1"));
    assert_ne!(group("edu0"), group("nvme0"));
    let json = system.report_json();
    assert_eq!(json["guests"][0]["pci"][0]["host_bdf"], "0000:09:00.0");
    assert_eq!(json["guests"][0]["pci"][0]["guest_bdf"], "0000:00:03.0");
    let text = system.report_text();
    assert!(text.contains("pci 0000:09:00.0 -> 0000:00:03.0  edu0"));
}

#[test]
fn every_example_compiles_to_a_valid_description() {
    for name in [
        "default.toml",
        "two-guests.toml",
        "passthrough-demo.toml",
        "dma-isolation.toml",
    ] {
        let system = load_file(&example(name)).unwrap();
        let bytes = system.compile();
        let description = sluice_sysdesc::parse(&bytes).unwrap();
        assert_eq!(description.name(), system.name());
        assert_eq!(description.guest_count(), system.guests().len());
        let assigned: usize = system.guests().iter().map(|g| g.pci.len()).sum();
        assert_eq!(description.devices().len(), assigned);
    }
}

#[test]
fn qemu_args_for_passthrough_demo() {
    let system = load_file(&example("passthrough-demo.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-manifest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = system.qemu_machine_args(&dir).unwrap().join(" ");
    assert!(args.contains("-m 2048M -smp 2"), "{args}");
    assert!(args.contains("intel-iommu,intremap=on"), "{args}");
    assert!(
        args.contains("pcie-root-port,id=rp1,addr=01.0,chassis=1"),
        "{args}"
    );
    assert!(args.contains("nvme-subsys,id=nvme0-subsys"), "{args}");
    assert!(
        args.contains("nvme,id=nvme0,bus=rp1,addr=00.0,multifunction=on"),
        "{args}"
    );
    assert!(args.contains("sriov_max_vfs=2"), "{args}");
    assert!(
        args.contains("nvme-ns,drive=nvme0-drive,bus=nvme0"),
        "{args}"
    );
    assert_eq!(
        std::fs::metadata(dir.join("nvme0.img")).unwrap().len(),
        64 << 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Boots QEMU 7.2 with the generated arguments and compares `info pci` bus numbers.
/// Needs qemu-system-x86_64; run with `cargo test -- --ignored`.
#[test]
#[ignore]
fn qemu_accepts_dma_isolation_args() {
    let system = load_file(&example("dma-isolation.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-manifest-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let args = system.qemu_machine_args(&dir).unwrap();
    println!("{}", args.join(" "));
    let status = std::process::Command::new("timeout")
        .args([
            "5",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-display",
            "none",
            "-vga",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-S",
        ])
        .args(&args)
        .status()
        .unwrap();
    // timeout's 124 = QEMU was still running (accepted every -device); 1 = QEMU refused.
    assert_eq!(status.code(), Some(124));
    std::fs::remove_dir_all(&dir).unwrap();
}
