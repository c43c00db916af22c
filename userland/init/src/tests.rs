//! Init against the fake kernel: the whole boot, what every child gets (segments, rights,
//! contents, stack, UTCB, capabilities), RAM accounting, refusals at every step, the service
//! protocol and the misbehave sequence.

use proptest::prelude::*;
use sluice_abi::syscall::{MemoryRights, Status, Syscall};
use sluice_rt::message::Message;
use sluice_rt::protocol::Request;

use crate::fake::{Object, INIT_DOMAIN, INIT_THREAD};
use crate::layout::{CHILD_STACK_SIZE, CHILD_STACK_TOP, CHILD_UTCB};
use crate::service::{FAULT_PORTAL_ID, VCPU_LIFECYCLE_ALL_STEPS};

mod fixture;
mod loading;
mod passthrough;
mod protocol;
mod windows;

use fixture::*;

#[test]
fn boots_three_servers_and_powers_off_cleanly() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 0, "{log}");
    assert_eq!(kernel.shutdown_code, Some(0));
    for line in [
        "init: boot info: 2 cpus, 5 modules, RAM 12 MiB",
        "init: system demo: 1 guests",
        "init: guest probe: 2 MiB, cpus [1], vcpus 1",
        "init: guest 0 passed (status 0x0, 1 exits)",
        "init: iommu-server ready",
        "init: pci-server ready",
        "init: vmm-server ready",
        "init: system up: 3 servers ready",
    ] {
        assert!(log.lines().any(|l| l == line), "missing {line:?} in\n{log}");
    }
    assert!(!log.contains("misbehaving"));
    // Every thread was started, and nothing is left in init's scratch or module windows.
    for object in &kernel.objects {
        if let Object::Thread { started, .. } = object {
            assert!(started);
        }
    }
    let own: Vec<u64> = kernel
        .mappings_of(INIT_DOMAIN)
        .iter()
        .map(|m| m.address)
        .collect();
    assert_eq!(
        own,
        [0x7f00_0000_2000, 0x7f00_001f_e000],
        "only the watcher's UTCB and stack"
    );
}

#[test]
fn the_vmm_server_runs_on_its_guests_cpu_with_the_guest_index_as_argument() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    run(&mut kernel, &fixture);
    let vmm = kernel.domain_named("vmm").unwrap();
    let Object::Domain { cpu_mask, .. } = kernel.objects[vmm] else {
        panic!()
    };
    assert_eq!(cpu_mask, 0b10, "guest probe owns CPU 1");
    let thread = kernel.table(vmm)[&1].object;
    let Object::Thread { start, .. } = kernel.objects[thread] else {
        panic!()
    };
    assert_eq!(start.cpu, 1);
    assert_eq!(start.utcb, CHILD_UTCB);
    assert_eq!(start.instruction_pointer, ENTRY);
    assert_eq!(start.stack_pointer, CHILD_STACK_TOP - 16);
    let stack = kernel
        .mappings_of(vmm)
        .into_iter()
        .find(|m| m.address == CHILD_STACK_TOP - CHILD_STACK_SIZE)
        .unwrap();
    let bytes = kernel.mapped_bytes(&stack);
    let top = bytes.len() - 16;
    assert_eq!(
        u64::from_le_bytes(bytes[top..top + 8].try_into().unwrap()),
        1
    );
    assert_eq!(u64::from_le_bytes(bytes[top + 8..].try_into().unwrap()), 0);
    assert!(
        bytes[..top].iter().all(|b| *b == 0),
        "the rest of the stack is zeroed"
    );
}

#[test]
fn a_guest_with_a_linux_kernel_is_not_started_and_fails_the_boot() {
    use sluice_sysdesc::{BuiltinGuest, GuestSpec, Kernel as GuestKernel};
    let guests = [
        GuestSpec {
            name: "probe",
            memory_bytes: 2 * MIB,
            cpu_mask: 0b10,
            vcpus: 1,
            kernel: GuestKernel::Builtin(BuiltinGuest::Probe),
            cmdline: "",
        },
        GuestSpec {
            name: "debian",
            memory_bytes: 256 * MIB,
            cpu_mask: 0b1,
            vcpus: 1,
            kernel: GuestKernel::Module(0),
            cmdline: "console=ttyS0",
        },
    ];
    let description = sysdesc_with("mixed", &guests);
    let mut fixture = Fixture::new();
    fixture.replace_module("sysdesc", &description);
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 13, "{log}");
    assert!(
        log.contains("init: guest debian: kernel module 0 (a Linux kernel) cannot be booted yet"),
        "{log}"
    );
    assert!(log.contains("init: 1 guests not started"), "{log}");
    assert_eq!(
        kernel.domain_named("vmm").into_iter().count(),
        1,
        "only the built-in guest gets a vmm-server"
    );
}

#[test]
fn a_guest_cpu_the_machine_lacks_falls_back_to_cpu_zero() {
    let mut fixture = Fixture::new();
    fixture.boot.cpus = 1;
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let (code, _) = run(&mut kernel, &fixture);
    assert_eq!(code, 0);
    let vmm = kernel.domain_named("vmm").unwrap();
    let Object::Domain { cpu_mask, .. } = kernel.objects[vmm] else {
        panic!()
    };
    assert_eq!(cpu_mask, 1);
}

#[test]
fn the_fault_watcher_runs_in_inits_domain_with_its_portal_on_its_stack() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    run(&mut kernel, &fixture);
    let watcher = kernel
        .objects
        .iter()
        .position(|o| matches!(o, Object::Thread { domain: INIT_DOMAIN, start, .. } if start.instruction_pointer == WATCHER.trampoline))
        .unwrap();
    let Object::Thread { start, .. } = kernel.objects[watcher] else {
        panic!()
    };
    let stack = kernel
        .mappings_of(INIT_DOMAIN)
        .into_iter()
        .find(|m| m.address + m.size == start.stack_pointer + 16)
        .unwrap();
    let bytes = kernel.mapped_bytes(&stack);
    let top = bytes.len() - 16;
    assert_eq!(
        u64::from_le_bytes(bytes[top..top + 8].try_into().unwrap()),
        WATCHER.function
    );
    let portal_selector = u64::from_le_bytes(bytes[top + 8..].try_into().unwrap()) as u32;
    let portal = kernel.capability(INIT_DOMAIN, portal_selector).unwrap();
    assert_eq!(
        kernel.objects[portal.object],
        Object::Portal {
            handler: INIT_THREAD,
            portal_id: FAULT_PORTAL_ID
        }
    );
}

#[test]
fn with_two_cpus_misbehave_keeps_cpu_1_busy_with_a_lowest_priority_spinner() {
    for cpus in [1, 2] {
        let mut fixture = Fixture::new();
        fixture.set_cmdline("exit=qemu init.misbehave");
        fixture.boot.cpus = cpus;
        let mut kernel = fixture.kernel();
        servers_ready(&mut kernel);
        run(&mut kernel, &fixture);
        let spinner = kernel.domain_named("spinner");
        if cpus == 1 {
            assert!(spinner.is_none(), "no second CPU, no spinner");
            continue;
        }
        let spinner = spinner.expect("spinner started");
        let thread = kernel.table(spinner)[&1].object;
        let Object::Thread { start, started, .. } = kernel.objects[thread] else {
            panic!("thread")
        };
        assert!(started);
        assert_eq!((start.cpu, start.priority), (1, 1));
        assert_eq!(
            kernel.table(spinner).keys().copied().collect::<Vec<_>>(),
            [0, 1, 2],
            "only its own domain, thread and init's portal"
        );
    }
}

#[test]
fn misbehave_runs_six_modes_one_at_a_time_and_counts_four_faults() {
    let mut fixture = Fixture::new();
    fixture.set_cmdline("exit=qemu init.misbehave");
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let report = Request::Report {
        mode: 1,
        first: Status::EmptySlot.as_raw(),
        second: Status::WrongType.as_raw(),
    };
    kernel.push_request(4, report.encode());
    for _ in 0..4 {
        kernel.push_request(FAULT_PORTAL_ID, Request::Fault { bits: 1 }.encode());
    }
    kernel.push_request(10, lifecycle_report(VCPU_LIFECYCLE_ALL_STEPS, 0));
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("init: misbehave mode 1 reported: empty selector -> capability selector names an empty slot, wrong type -> capability names an object of the wrong type"));
    assert!(log
        .lines()
        .any(|l| l
            == "init: misbehave mode 7 reported: vcpu capability lifecycle: all 6 steps passed"));
    assert!(log.lines().any(|l| l == "init: system up: 3 servers ready"));
    assert!(log
        .lines()
        .any(|l| l == "init: misbehaving program: 4 faults reported, system still running"));
    // Mode 1 starts after the readies; each later mode one request later (the guest end
    // queued after the readies takes one).
    let mut received = 0;
    let mut started = Vec::new();
    for event in &kernel.events {
        match event.call {
            Syscall::ReplyAndWait if event.status == Status::Success => received += 1,
            Syscall::CreateProtectionDomain => started.push((event.arguments[5], received)),
            _ => {}
        }
    }
    let name = |text: &str| sluice_rt::types::DomainName::new(text).unwrap().to_raw();
    assert_eq!(
        started,
        [
            (name("iommu"), 0),
            (name("pci"), 0),
            (name("vmm"), 0),
            (name("spinner"), 0),
            (name("misbeh-1"), 3),
            (name("misbeh-2"), 5),
            (name("misbeh-3"), 6),
            (name("misbeh-4"), 7),
            (name("misbeh-5"), 8),
            (name("misbeh-7"), 9),
        ]
    );
    for mode in [1, 2, 3, 4, 5, 7u64] {
        let domain = kernel.domain_named(&format!("misbeh-{mode}")).unwrap();
        let table = kernel.table(domain);
        let expected: &[u32] = if mode == 5 { &[0, 1, 2, 3] } else { &[0, 1, 2] };
        assert_eq!(table.keys().copied().collect::<Vec<_>>(), expected);
        if mode == 5 {
            let ports = kernel.objects[table[&3].object].clone();
            assert_eq!(
                ports,
                Object::IoPorts {
                    first: 0x80,
                    count: 1
                }
            );
        }
        let portal = kernel.objects[table[&2].object].clone();
        assert_eq!(
            portal,
            Object::Portal {
                handler: INIT_THREAD,
                portal_id: 3 + mode
            }
        );
        let stack = kernel
            .mappings_of(domain)
            .into_iter()
            .find(|m| m.address == CHILD_STACK_TOP - CHILD_STACK_SIZE)
            .unwrap();
        let bytes = kernel.mapped_bytes(&stack);
        let top = bytes.len() - 16;
        assert_eq!(bytes[top..top + 8], 1u64.to_le_bytes());
        assert_eq!(bytes[top + 8..], mode.to_le_bytes());
    }
}

#[test]
fn a_fault_while_servers_start_fails_the_boot() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    kernel.push_request(1, Request::Ready.encode());
    kernel.push_request(FAULT_PORTAL_ID, Request::Fault { bits: 1 }.encode());
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 11);
    assert_eq!(kernel.shutdown_code, Some(11));
    assert!(log.contains("a thread faulted"), "{log}");
    assert!(!log.contains("system up"));
}

#[test]
fn a_wrong_misbehave_report_fails_the_boot() {
    let mut fixture = Fixture::new();
    fixture.set_cmdline("init.misbehave");
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let report = Request::Report {
        mode: 1,
        first: 0,
        second: 0,
    };
    kernel.push_request(4, report.encode());
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 12, "{log}");
    assert!(kernel.domain_named("misbeh-2").is_none());
}

/// Misbehave mode 7's report with step masks `passed` and `failed`.
fn lifecycle_report(passed: u64, failed: u64) -> Message {
    Request::Report {
        mode: 7,
        first: passed,
        second: failed,
    }
    .encode()
}

/// Boots with `init.misbehave`, modes 1-5 doing what they must, and mode 7 reporting
/// `passed`, `failed`.
fn boot_with_lifecycle_report(passed: u64, failed: u64) -> (u32, String) {
    let mut fixture = Fixture::new();
    fixture.set_cmdline("init.misbehave");
    let mut kernel = fixture.kernel();
    servers_ready(&mut kernel);
    let report = Request::Report {
        mode: 1,
        first: Status::EmptySlot.as_raw(),
        second: Status::WrongType.as_raw(),
    };
    kernel.push_request(4, report.encode());
    for _ in 0..4 {
        kernel.push_request(FAULT_PORTAL_ID, Request::Fault { bits: 1 }.encode());
    }
    kernel.push_request(10, lifecycle_report(passed, failed));
    let result = run(&mut kernel, &fixture);
    assert_eq!(kernel.shutdown_code, Some(result.0));
    result
}

#[test]
fn a_failed_vcpu_lifecycle_step_fails_the_boot() {
    let (code, log) = boot_with_lifecycle_report(0b00011, 0b00100);
    assert_eq!(code, 14, "{log}");
    assert!(log.contains("init: misbehave mode 7 reported: vcpu capability lifecycle: steps passed: 1, 2; failed: 3"), "{log}");
    assert!(log.contains("init: error: misbehave mode 7 (vcpu capability lifecycle) did not pass every step: passed 1, 2, failed 3"), "{log}");
    assert!(!log.contains("system up"), "{log}");
    // Fewer steps than there are, with none failed, is no pass either; nor are extra bits.
    for (passed, failed) in [
        (0b01_1111, 0),
        (0, 0),
        (0b111_1111, 0),
        (0b11_1111, 1 << 63),
    ] {
        let (code, log) = boot_with_lifecycle_report(passed, failed);
        assert_eq!(code, 14, "{passed:#b} {failed:#x}: {log}");
    }
}

#[test]
fn a_kernel_without_virtualization_lets_mode_7_report_not_run() {
    let (code, log) = boot_with_lifecycle_report(0, 1 << 63);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("init: misbehave mode 7 reported: vcpu capability lifecycle not run: the kernel has no virtualization backend"), "{log}");
    assert!(log.lines().any(|l| l == "init: system up: 3 servers ready"));
}

#[test]
fn a_service_that_stops_answering_is_a_failure() {
    let fixture = Fixture::new();
    let mut kernel = fixture.kernel();
    kernel.push_request(1, Request::Ready.encode());
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 10);
    assert!(log.contains("reply_and_wait: Timeout"), "{log}");
}

#[test]
fn a_page_without_magic_stops_before_any_call() {
    let mut fixture = Fixture::new();
    fixture.boot.magic = 0;
    let mut kernel = fixture.kernel();
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 2);
    assert!(log.contains("boot information page has no valid magic"));
    assert_eq!(kernel.events.len(), 1, "only the shutdown");
    assert_eq!(kernel.events[0].call, Syscall::Shutdown);
}

#[test]
fn a_missing_or_corrupt_system_description_is_reported() {
    let mut fixture = Fixture::new();
    let mut bytes = sysdesc();
    bytes[0] ^= 0xff;
    fixture.replace_module("sysdesc", &bytes);
    let mut kernel = fixture.kernel();
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 4);
    assert!(
        log.contains("system description: not a Sluice system description (bad magic)"),
        "{log}"
    );
    assert!(kernel
        .events
        .iter()
        .all(|e| e.call != Syscall::CreateProtectionDomain));

    let mut fixture = Fixture::new();
    let index = fixture
        .boot
        .listed()
        .iter()
        .position(|c| c.name().starts_with("sysdesc"))
        .unwrap();
    fixture.boot.capabilities[index].name = [0; 48];
    let mut kernel = fixture.kernel();
    let (code, log) = run(&mut kernel, &fixture);
    assert_eq!(code, 3);
    assert!(log.contains("boot module sysdesc missing"));
}

#[test]
fn memory_rights_of_the_test_program_segments() {
    let rights: Vec<MemoryRights> = SEGMENTS
        .iter()
        .map(|(_, _, _, flags)| {
            crate::loader::segment_rights(&kernel_core::elf::Segment {
                virtual_address: 0,
                memory_size: 1,
                file_offset: 0,
                file_size: 0,
                writable: flags & PF_W != 0,
                executable: flags & PF_X != 0,
            })
        })
        .collect();
    assert_eq!(
        rights,
        [
            MemoryRights::READ | MemoryRights::EXECUTE,
            MemoryRights::READ,
            MemoryRights::READ | MemoryRights::WRITE
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_program_modules_never_panic_and_never_start_a_thread(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut fixture = Fixture::new();
        fixture.replace_module("iommu-server", &bytes);
        let mut kernel = fixture.kernel();
        servers_ready(&mut kernel);
        let (code, _) = run(&mut kernel, &fixture);
        prop_assert_eq!(code, 5);
        prop_assert!(kernel.domain_named("iommu").is_none());
    }

    #[test]
    fn random_descriptions_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut fixture = Fixture::new();
        fixture.replace_module("sysdesc", &bytes);
        let mut kernel = fixture.kernel();
        let (code, _) = run(&mut kernel, &fixture);
        prop_assert_eq!(code, 4);
    }

    #[test]
    fn random_requests_get_an_answer_and_never_panic(
        requests in proptest::collection::vec((0u64..8, 0u32..6, proptest::collection::vec(any::<u64>(), 0..4)), 0..12)
    ) {
        let mut fixture = Fixture::new();
        fixture.set_cmdline("init.misbehave");
        let mut kernel = fixture.kernel();
        for (portal, label, words) in &requests {
            kernel.push_request(*portal, Message::with_words(*label, words).unwrap());
        }
        let (code, _) = run(&mut kernel, &fixture);
        prop_assert!(kernel.shutdown_code == Some(code));
        prop_assert_eq!(kernel.replies.len(), kernel.events.iter().filter(|e| e.call == Syscall::ReplyAndWait).count());
    }
}
