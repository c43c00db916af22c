//! Loading: segments, stacks and UTCBs land where and how they must, children get exactly the
//! documented capabilities, RAM carves never overlap, and every refused step stops init.

use std::collections::{BTreeMap, HashMap};

use sluice_abi::boot::BootCapabilityKind;
use sluice_abi::syscall::{
    InterruptRights, MemoryRights, NotificationRights, PortalRights, ProtectionDomainRights,
    Status, Syscall, ThreadRights,
};

use super::fixture::{
    elf, run, segment_byte, servers_ready, Fixture, DMAR, ECAM, ENTRY, RAM, SEGMENTS,
};
use crate::fake::{Capability, FakeKernel, Object, INIT_THREAD};
use crate::layout::{stack_top, CHILD_STACK_SIZE, CHILD_UTCB, SERVER_STACK_SIZE};

const SERVERS: [&str; 3] = ["iommu", "pci", "vmm"];

fn booted(fixture: &Fixture) -> FakeKernel {
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, log) = run(&mut kernel, fixture);
    assert_eq!(code, 0, "{log}");
    kernel
}

#[test]
fn every_segment_is_mapped_at_its_address_with_its_rights_and_contents() {
    let kernel = booted(&Fixture::new());
    let rw = MemoryRights::READ | MemoryRights::WRITE;
    for server in SERVERS {
        let domain = kernel.domain_named(server).unwrap();
        let mappings = kernel.mappings_of(domain);
        assert_eq!(
            mappings.len(),
            SEGMENTS.len() + 2,
            "{server}: segments, stack, UTCB"
        );
        for (index, (vaddr, filesz, memsz, flags)) in SEGMENTS.iter().enumerate() {
            let start = vaddr & !0xfff;
            let end = (vaddr + memsz).next_multiple_of(0x1000);
            let mapping = mappings.iter().find(|m| m.address == start).unwrap();
            assert_eq!(
                mapping.size,
                end - start,
                "{server} segment {index}: exact pages"
            );
            let mut rights = MemoryRights::READ;
            if flags & 2 != 0 {
                rights |= MemoryRights::WRITE;
            }
            if flags & 1 != 0 {
                rights |= MemoryRights::EXECUTE;
            }
            assert_eq!(mapping.rights, rights, "{server} segment {index}");
            let bytes = kernel.mapped_bytes(mapping);
            let in_page = (vaddr - start) as usize;
            for (offset, byte) in bytes.iter().enumerate() {
                let expected = match offset.checked_sub(in_page) {
                    Some(o) if (o as u64) < *filesz => segment_byte(index, o as u64),
                    _ => 0,
                };
                assert_eq!(*byte, expected, "{server} segment {index} byte {offset:#x}");
            }
        }
        // The iommu- and pci-server build their large state on a 1 MiB stack.
        let stack_size = match server {
            "iommu" | "pci" => SERVER_STACK_SIZE,
            _ => CHILD_STACK_SIZE,
        };
        let stack = mappings
            .iter()
            .find(|m| m.address == stack_top(stack_size) - stack_size)
            .unwrap();
        assert_eq!((stack.size, stack.rights), (stack_size, rw));
        let utcb = mappings.iter().find(|m| m.address == CHILD_UTCB).unwrap();
        assert_eq!((utcb.size, utcb.rights), (4096, rw));
        assert!(
            kernel.mapped_bytes(utcb).iter().all(|b| *b == 0),
            "UTCB zeroed"
        );
        assert_eq!(stack.memory, utcb.memory, "one carve for stack and UTCB");
        assert_eq!(utcb.offset, stack_size);
        let thread = kernel.table(domain)[&1].object;
        let Object::Thread { start, started, .. } = kernel.objects[thread] else {
            panic!()
        };
        assert!(started);
        assert_eq!(start.instruction_pointer, ENTRY);
        assert_eq!(start.priority, crate::programs::PROGRAM_PRIORITY);
    }
}

fn memory_at(kernel: &FakeKernel, capability: Capability) -> (u64, u64) {
    match kernel.objects[capability.object] {
        Object::Memory { base, size } => (base, size),
        ref other => panic!("not memory: {other:?}"),
    }
}

#[test]
fn children_get_exactly_the_documented_capabilities() {
    let kernel = booted(&Fixture::new());
    let domain_rights =
        (ProtectionDomainRights::CREATE_THREAD | ProtectionDomainRights::MAP).bits();
    let call = PortalRights::CALL.bits();
    let rw = (MemoryRights::READ | MemoryRights::WRITE).bits();
    let thread_of = |name: &str| kernel.table(kernel.domain_named(name).unwrap())[&1].object;
    for (number, server) in SERVERS.iter().enumerate() {
        let domain = kernel.domain_named(server).unwrap();
        let table = kernel.table(domain);
        assert_eq!(
            table[&0],
            Capability {
                object: domain,
                rights: domain_rights
            }
        );
        let thread = table[&1];
        assert_eq!(thread.rights, ThreadRights::all().bits());
        assert!(
            matches!(kernel.objects[thread.object], Object::Thread { domain: d, .. } if d == domain)
        );
        assert_eq!(table[&2].rights, call);
        assert_eq!(
            kernel.objects[table[&2].object],
            Object::Portal {
                handler: INIT_THREAD,
                portal_id: number as u64 + 1
            }
        );
        let selectors: Vec<u32> = table.keys().copied().collect();
        match *server {
            "iommu" => {
                // 4 (the DMAR table) only when the kernel found one: see the passthrough tests.
                assert_eq!(selectors, [0, 1, 2, 3, 5, 6, 7, 8]);
                assert_eq!(table[&3].rights, rw);
                assert_eq!(memory_at(&kernel, table[&3]), (DMAR, 4096));
                let dma = rw | MemoryRights::DMA_MAP.bits();
                assert_eq!(table[&5].rights, dma);
                assert_eq!(memory_at(&kernel, table[&5]).1, 256 * 1024);
                assert_eq!(table[&8].rights, rw);
                assert_eq!(table[&6].rights, NotificationRights::WAIT.bits());
                assert_eq!(table[&7].rights, InterruptRights::ACKNOWLEDGE.bits());
            }
            "pci" => {
                // 5 = the system description, 6.. = the device windows (DeviceMmio minus the
                // ECAM window and the VT-d page), 16 = the interrupt lines (INTx routing).
                assert_eq!(selectors, [0, 1, 2, 3, 4, 5, 6, 7, 8, 16]);
                assert_eq!(table[&16].rights, InterruptRights::all().bits());
                assert!(matches!(
                    kernel.objects[table[&16].object],
                    Object::Interrupt { line: None, .. }
                ));
                assert_eq!(table[&5].rights, MemoryRights::READ.bits());
                let windows: Vec<(u64, u64)> = (6..=8)
                    .map(|selector| memory_at(&kernel, table[&selector]))
                    .collect();
                assert_eq!(
                    windows,
                    [
                        (0xa000_0000, 0x1000_0000),
                        (0xfec0_0000, DMAR - 0xfec0_0000),
                        (DMAR + 4096, (4 << 30) - DMAR - 4096)
                    ]
                );
                let retype = rw | MemoryRights::RETYPE.bits();
                assert!((6..=8).all(|selector| table[&selector].rights == retype));
                assert_eq!(table[&3].rights, call);
                assert_eq!(
                    kernel.objects[table[&3].object],
                    Object::Portal {
                        handler: thread_of("iommu"),
                        portal_id: 2
                    }
                );
                assert_eq!(table[&4].rights, rw);
                assert_eq!(memory_at(&kernel, table[&4]), (ECAM, 256 << 20));
            }
            _ => {
                // 4 = the guest's RAM, 6 = the system description; 5 (the guest image) is
                // skipped: the fixture has no guest-probe module.
                assert_eq!(selectors, [0, 1, 2, 3, 4, 6]);
                assert_eq!(memory_at(&kernel, table[&4]).1, 2 << 20);
                assert_eq!(table[&6].rights, MemoryRights::READ.bits());
                assert_eq!(
                    kernel.objects[table[&3].object],
                    Object::Portal {
                        handler: thread_of("pci"),
                        portal_id: 3
                    }
                );
            }
        }
    }
}

#[test]
fn without_vtd_or_ecam_the_servers_get_only_their_portals() {
    let mut fixture = Fixture::new();
    fixture.boot.dmar_unit = 0;
    fixture.boot.ecam_base = 0;
    let kernel = booted(&fixture);
    // The pci-server keeps its system description and, without ECAM and VT-d holes, both
    // device-memory capabilities whole as windows, and the interrupt lines.
    for (server, expected) in [
        ("iommu", vec![0, 1, 2]),
        ("pci", vec![0, 1, 2, 3, 5, 6, 7, 16]),
    ] {
        let table = kernel.table(kernel.domain_named(server).unwrap());
        assert_eq!(
            table.keys().copied().collect::<Vec<_>>(),
            expected,
            "{server}"
        );
    }
}

#[test]
fn an_ecam_window_for_a_bus_range_starts_at_its_first_bus() {
    let mut fixture = Fixture::new();
    fixture.boot.ecam_start_bus = 2;
    fixture.boot.ecam_end_bus = 3;
    let kernel = booted(&fixture);
    let table = kernel.table(kernel.domain_named("pci").unwrap());
    assert_eq!(memory_at(&kernel, table[&4]), (ECAM + (2 << 20), 2 << 20));
    fixture.boot.ecam_end_bus = 1;
    assert_eq!(
        crate::programs::ecam_window(&fixture.boot),
        None,
        "end below start"
    );
}

#[test]
fn device_memory_outside_every_device_capability_is_refused() {
    let mut fixture = Fixture::new();
    fixture.boot.dmar_unit = 0x1_0000_0000;
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 7);
    assert!(
        log.contains("iommu-server: no device-memory boot capability covers 0x100000000"),
        "{log}"
    );
    let iommu = kernel.domain_named("iommu").unwrap();
    let Object::Thread { started, .. } = kernel.objects[kernel.table(iommu)[&1].object] else {
        panic!()
    };
    assert!(!started, "a server missing a resource is not started");
}

#[test]
fn ram_carves_never_overlap_and_stay_inside_their_capability() {
    let mut fixture = Fixture::new();
    fixture.set_cmdline("init.misbehave");
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    kernel.push_request(
        4,
        sluice_rt::protocol::Request::Report {
            mode: 1,
            first: 3,
            second: 5,
        }
        .encode(),
    );
    for _ in 0..4 {
        kernel.push_request(
            crate::service::FAULT_PORTAL_ID,
            sluice_rt::protocol::Request::Fault { bits: 1 }.encode(),
        );
    }
    kernel.push_request(
        10,
        sluice_rt::protocol::Request::Report {
            mode: 7,
            first: crate::service::VCPU_LIFECYCLE_ALL_STEPS,
            second: 0,
        }
        .encode(),
    );
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 0, "{log}");
    let mut carves: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for event in &kernel.events {
        if event.call == Syscall::CreateMemory
            && RAM
                .iter()
                .any(|(s, _, _)| u64::from(*s) == event.arguments[0])
        {
            carves
                .entry(event.arguments[0])
                .or_default()
                .push((event.arguments[2], event.arguments[3]));
        }
    }
    let mut total = 0;
    for (selector, ranges) in &carves {
        let size = RAM
            .iter()
            .find(|(s, _, _)| u64::from(*s) == *selector)
            .unwrap()
            .2;
        for (index, (offset, length)) in ranges.iter().enumerate() {
            assert!(offset + length <= size);
            total += length;
            for (other_offset, other_length) in &ranges[index + 1..] {
                assert!(offset + length <= *other_offset || other_offset + other_length <= *offset);
            }
        }
    }
    // 10 programs (3 servers, 6 misbehave runs, the spinner on CPU 1) x (segments of 2 + 1 + 4 pages, 16 KiB stack + UTCB) + the watcher's 12 KiB
    // + the guest's 2 MiB; the iommu- and pci-server's stacks are 1 MiB, and the iommu-server
    // gets 256 KiB for its tables and 20 KiB for its fault watcher.
    let larger_stacks = 2 * (SERVER_STACK_SIZE - CHILD_STACK_SIZE);
    let iommu_memory = 256 * 1024 + 20 * 1024;
    assert_eq!(
        total,
        10 * (7 * 4096 + 20 * 1024) + 12 * 1024 + (2 << 20) + larger_stacks + iommu_memory
    );
    assert!(log.contains(&format!("init: RAM carved: {} KiB", total / 1024)));
}

#[test]
fn a_ram_capability_too_small_is_skipped_and_exhaustion_is_reported() {
    let mut fixture = Fixture::new();
    // Shrink the first RAM capability to two pages: carves move on to the second.
    let first = fixture
        .boot
        .listed()
        .iter()
        .position(|c| c.kind == BootCapabilityKind::Ram as u32)
        .unwrap();
    fixture.boot.capabilities[first].size = 8192;
    let kernel = booted(&fixture);
    assert!(kernel
        .events
        .iter()
        .any(|e| e.call == Syscall::CreateMemory && e.arguments[0] == 31));

    let mut fixture = Fixture::new();
    for capability in fixture.boot.capabilities.iter_mut() {
        if capability.kind == BootCapabilityKind::Ram as u32 {
            capability.size = 64 * 1024;
        }
    }
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 6);
    assert!(log.contains("no RAM boot capability has"), "{log}");
}

/// How often each call was made in a clean boot.
fn call_counts() -> HashMap<Syscall, usize> {
    let kernel = booted(&Fixture::new());
    let mut counts = HashMap::new();
    for event in &kernel.events {
        *counts.entry(event.call).or_insert(0) += 1;
    }
    counts
}

#[test]
fn every_refused_step_is_reported_and_nothing_further_is_tried() {
    let counts = call_counts();
    let steps = [
        Syscall::CreateProtectionDomain,
        Syscall::CreateThread,
        Syscall::CreatePortal,
        Syscall::CreateMemory,
        Syscall::Map,
        Syscall::Unmap,
        Syscall::Delegate,
        Syscall::ThreadControl,
    ];
    for call in steps {
        let total = counts.get(&call).copied().unwrap_or(0);
        assert!(total > 0, "{call:?} is used");
        for nth in 0..total {
            let fixture = Fixture::new();
            let mut kernel = fixture.kernel();
            servers_ready(&mut kernel);
            kernel.fail(call, nth, Status::QuotaExceeded);
            let (code, log) = run(&mut kernel, &fixture);
            assert_eq!(code, 8, "{call:?} #{nth}: {log}");
            let failed = kernel
                .events
                .iter()
                .position(|e| e.status != Status::Success)
                .unwrap();
            assert_eq!(kernel.events[failed].call, call);
            let after: Vec<Syscall> = kernel.events[failed + 1..].iter().map(|e| e.call).collect();
            assert_eq!(
                after,
                [Syscall::Shutdown],
                "{call:?} #{nth}: nothing after the refusal"
            );
            assert!(
                log.contains("QuotaExceeded (kernel-memory quota exceeded)"),
                "{log}"
            );
            assert!(log.contains("init: giving up, powering off with code 8"));
            assert!(!log.contains("system up"));
        }
    }
}

#[test]
fn a_refused_segment_map_names_the_program_segment_and_address() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    // Maps: sysdesc, watcher stack + UTCB, iommu module, scratch (segment 0), segment 0.
    kernel.fail(Syscall::Map, 5, Status::QuotaExceeded);
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 8);
    assert!(
        log.contains("init: error: iommu-server: map segment 0 at 0x40001000: QuotaExceeded"),
        "{log}"
    );
    let iommu = kernel.domain_named("iommu").unwrap();
    assert!(
        kernel.table(iommu).is_empty(),
        "the half-built domain got nothing"
    );
    assert!(kernel
        .objects
        .iter()
        .all(|o| !matches!(o, Object::Thread { domain, .. } if *domain == iommu)));
}

#[test]
fn an_entry_outside_the_image_or_a_kernel_address_segment_is_refused() {
    for image in [
        elf(0x4000_9000, &SEGMENTS),
        elf(ENTRY, &[(0x10_0000, 0x10, 0x10, 5)]),
        elf(ENTRY, &[(0x7f00_0000_0000, 0x10, 0x10, 5)]),
    ] {
        let mut fixture = Fixture::new();
        fixture.replace_module("pci-server", &image);
        let mut kernel = fixture.kernel();
        servers_ready(&mut kernel);
        let (code, log) = run(&mut kernel, &fixture);
        assert_eq!(code, 5, "{log}");
        assert!(log.contains("init: error: pci-server: "));
        assert!(kernel.domain_named("pci").is_none());
        assert!(kernel.domain_named("iommu").is_some());
    }
}
