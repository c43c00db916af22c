//! Property tests: the parser never panics on random bytes, and valid specs roundtrip.

use proptest::prelude::*;
use sluice_sysdesc::*;

fn sample<'a>(guests: &'a [GuestSpec<'a>], devices: &'a [DeviceSpec]) -> SystemSpec<'a> {
    SystemSpec {
        name: "demo",
        machine_memory: 1 << 30,
        machine_cpus: 4,
        flags: FLAG_IOMMU,
        guests,
        devices,
    }
}

fn encode(spec: &SystemSpec<'_>) -> Vec<u8> {
    let mut out = vec![0u8; encoded_len(spec).unwrap()];
    let used = write(spec, &mut out).unwrap();
    out.truncate(used);
    out
}

const GUESTS: [GuestSpec<'static>; 2] = [
    GuestSpec {
        name: "quail",
        memory_bytes: 64 << 20,
        cpu_mask: 0b10,
        vcpus: 1,
        kernel: Kernel::Builtin(BuiltinGuest::Probe),
        cmdline: "console=ttyS0",
    },
    GuestSpec {
        name: "wren",
        memory_bytes: 32 << 20,
        cpu_mask: 0b1,
        vcpus: 1,
        kernel: Kernel::Module(0),
        cmdline: "",
    },
];
const DEVICES: [DeviceSpec; 1] = [DeviceSpec {
    host_bdf: 0x0100,
    guest_bdf: 0x0028,
    guest_index: 0,
    flags: 0,
    iommu_group: 3,
}];

#[test]
fn roundtrip_sample() {
    let bytes = encode(&sample(&GUESTS, &DEVICES));
    let description = parse(&bytes).unwrap();
    assert_eq!(description.name(), "demo");
    assert_eq!(description.machine_cpus(), 4);
    let guests: Vec<_> = description.guests().collect();
    assert_eq!(guests.len(), 2);
    assert_eq!(guests[0].name, "quail");
    assert_eq!(guests[0].cmdline, "console=ttyS0");
    assert_eq!(guests[1].kernel, Kernel::Module(0));
    assert_eq!(description.devices_of(0).count(), 1);
    assert_eq!(description.devices_of(1).count(), 0);
}

fn corrupt(edit: impl Fn(&mut Vec<u8>)) -> Result<(), SysdescError> {
    let mut bytes = encode(&sample(&GUESTS, &DEVICES));
    edit(&mut bytes);
    parse(&bytes).map(|_| ())
}

#[test]
fn rejects_each_corruption() {
    assert_eq!(corrupt(|b| b[0] = b'X'), Err(SysdescError::BadMagic));
    assert_eq!(corrupt(|b| b.truncate(10)), Err(SysdescError::TooShort));
    assert!(matches!(
        corrupt(|b| b.push(0)),
        Err(SysdescError::LengthMismatch { .. })
    ));
    assert_eq!(
        corrupt(|b| b[8] = 9),
        Err(SysdescError::UnsupportedVersion(9))
    );
    let g1 = HEADER_LEN + GUEST_RECORD_LEN;
    // Second guest takes CPU 1, which the first owns (cpu_mask at name + memory = 40).
    assert_eq!(
        corrupt(|b| b[g1 + 40] = 0b10),
        Err(SysdescError::CpuOwnedTwice { guest: 1 })
    );
    assert_eq!(
        corrupt(|b| b[g1 + 40] = 0b10000),
        Err(SysdescError::BadCpuMask { guest: 1 })
    );
    // Same name as the first guest.
    assert_eq!(
        corrupt(|b| b[g1..g1 + 5].copy_from_slice(b"quail")),
        Err(SysdescError::DuplicateGuestName { guest: 1 })
    );
    // vcpus 2 with one CPU owned.
    assert_eq!(
        corrupt(|b| b[g1 + 48] = 2),
        Err(SysdescError::BadVcpus { guest: 1 })
    );
    // Device's guest index out of range.
    let d0 = HEADER_LEN + 2 * GUEST_RECORD_LEN;
    assert_eq!(
        corrupt(|b| b[d0 + 4] = 7),
        Err(SysdescError::BadGuestIndex { device: 0 })
    );
    // Memory not a multiple of 2 MiB.
    assert_eq!(
        corrupt(|b| b[g1 + 32] = 1),
        Err(SysdescError::BadGuestMemory { guest: 1 })
    );
    // Unknown built-in id.
    assert_eq!(
        corrupt(|b| b[HEADER_LEN + 56] = 99),
        Err(SysdescError::BadKernel { guest: 0 })
    );
}

#[test]
fn writer_rejects_overlapping_cpus() {
    let mut guests = GUESTS;
    guests[1].cpu_mask = 0b11;
    let spec = sample(&guests, &DEVICES);
    let mut out = vec![0u8; encoded_len(&spec).unwrap()];
    assert_eq!(
        write(&spec, &mut out),
        Err(SysdescError::CpuOwnedTwice { guest: 1 })
    );
    let mut small = vec![0u8; 8];
    assert!(matches!(
        write(&sample(&GUESTS, &DEVICES), &mut small),
        Err(SysdescError::BufferTooSmall { .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_valid_bytes_never_panic(index in 0usize..400, value in any::<u8>()) {
        let mut bytes = encode(&sample(&GUESTS, &DEVICES));
        let len = bytes.len();
        bytes[index % len] = value;
        if let Ok(description) = parse(&bytes) {
            let _ = description.guests().count();
            let _ = description.name();
        }
    }

    #[test]
    fn valid_descriptions_roundtrip(
        guest_count in 1usize..6,
        memories in proptest::collection::vec(1u64..64, 6),
        cmdline in "[ -~]{0,40}",
        device_count in 0usize..8,
    ) {
        let names = ["a", "bb", "guest-3", "d4", "e5", "f6"];
        let guests: Vec<GuestSpec<'_>> = (0..guest_count).map(|i| GuestSpec {
            name: names[i],
            memory_bytes: memories[i] * 2 * 1024 * 1024,
            cpu_mask: 1 << i,
            vcpus: 1,
            kernel: if i % 2 == 0 { Kernel::Builtin(BuiltinGuest::Hello) } else { Kernel::Module(i as u32) },
            cmdline: &cmdline,
        }).collect();
        let devices: Vec<DeviceSpec> = (0..device_count).map(|i| DeviceSpec {
            host_bdf: 0x100 + i as u16, guest_bdf: 0x8 * (i as u16 + 1), guest_index: (i % guest_count) as u16,
            flags: (i % 2) as u16, iommu_group: i as u32,
        }).collect();
        let spec = SystemSpec { name: "prop", machine_memory: 1 << 40, machine_cpus: 8, flags: FLAG_KNOWN, guests: &guests, devices: &devices };
        let bytes = encode(&spec);
        let description = parse(&bytes).unwrap();
        let back: Vec<GuestView<'_>> = description.guests().collect();
        prop_assert_eq!(back.len(), guests.len());
        for (view, spec) in back.iter().zip(&guests) {
            prop_assert_eq!(view.name, spec.name);
            prop_assert_eq!(view.memory_bytes, spec.memory_bytes);
            prop_assert_eq!(view.cpu_mask, spec.cpu_mask);
            prop_assert_eq!(view.kernel, spec.kernel);
            prop_assert_eq!(view.cmdline, spec.cmdline);
        }
        prop_assert_eq!(description.devices().len(), devices.len());
        for (record, spec) in description.devices().iter().zip(&devices) {
            prop_assert_eq!(record.host_bdf.get(), spec.host_bdf);
            prop_assert_eq!(record.guest_index.get(), spec.guest_index);
            prop_assert_eq!(record.iommu_group.get(), spec.iommu_group);
        }
    }
}
