//! Passthrough: the iommu-server gets the DMAR table and its fault-event line, and a guest
//! whose kernel is `builtin:dma-test` gets its driver with exactly the documented
//! capabilities; the driver's report decides the exit code.

use sluice_abi::boot::BootCapabilityKind;
use sluice_abi::syscall::{InterruptRights, MemoryRights, NotificationRights, PortalRights};
use sluice_rt::protocol::Request;
use sluice_sysdesc::{BuiltinGuest, DeviceSpec, GuestSpec, Kernel as GuestKernel, SystemSpec};

use super::fixture::{elf, run, Fixture, ENTRY, MIB, SEGMENTS};
use crate::fake::{FakeKernel, Object};
use crate::programs::{number, CANARY_PATTERN, DMA_TEST_BUFFER};

const EDU: u16 = 0x0900;
const DMAR_TABLE: u64 = 0x7f_e000;
const FIRST_MSI_LINE: u32 = 24;

fn description() -> Vec<u8> {
    let guests = [GuestSpec {
        name: "dma-driver",
        memory_bytes: 2 * MIB,
        cpu_mask: 0b1,
        vcpus: 1,
        kernel: GuestKernel::Builtin(BuiltinGuest::DmaTest),
        cmdline: "",
    }];
    let devices = [DeviceSpec {
        host_bdf: EDU,
        guest_bdf: 0x18,
        guest_index: 0,
        flags: 0,
        iommu_group: 13,
    }];
    let spec = SystemSpec {
        name: "dma-isolation",
        machine_memory: 512 * MIB,
        machine_cpus: 2,
        flags: sluice_sysdesc::FLAG_IOMMU,
        guests: &guests,
        devices: &devices,
    };
    let mut out = vec![0u8; 4096];
    let length = sluice_sysdesc::write(&spec, &mut out).unwrap();
    out.truncate(length);
    out
}

/// The fixture with the DMA test system, a dma-test module and an ACPI DMAR table.
fn fixture() -> Fixture {
    let mut fixture = Fixture::new();
    fixture.replace_module("sysdesc", &description());
    fixture.module("dma-test", &elf(ENTRY, &SEGMENTS));
    fixture.boot.first_msi_line = FIRST_MSI_LINE;
    fixture.boot.dmar_table = DMAR_TABLE + 0x10;
    fixture.boot.dmar_length = 0x50;
    let index = fixture.boot.capability_count as usize;
    let entry = &mut fixture.boot.capabilities[index];
    entry.selector = 16 + index as u32;
    entry.kind = BootCapabilityKind::Firmware as u32;
    entry.base = DMAR_TABLE;
    entry.size = 4096;
    entry.length = 0x50;
    entry.name[..9].copy_from_slice(b"acpi-dmar");
    fixture.boot.capability_count += 1;
    fixture
}

fn run_with_report(fixture: &Fixture, status: u64) -> (FakeKernel, u32, String) {
    let mut kernel = fixture.kernel();
    for child in 1..=3 {
        kernel.push_request(child, Request::Ready.encode());
    }
    let done = Request::GuestDone {
        guest: 0,
        status,
        exits: 3 - u64::from(status.count_ones()),
    };
    kernel.push_request(number::FIRST_OWNER, done.encode());
    let (code, log) = run(&mut kernel, fixture);
    (kernel, code, log)
}

fn stack_words(kernel: &FakeKernel, domain: usize, count: usize) -> Vec<u64> {
    let start = match kernel.objects[kernel.table(domain)[&1].object] {
        Object::Thread { start, .. } => start,
        _ => panic!("no thread"),
    };
    let stack = kernel
        .mappings_of(domain)
        .into_iter()
        .find(|m| m.address <= start.stack_pointer && start.stack_pointer < m.address + m.size)
        .unwrap();
    let bytes = kernel.mapped_bytes(&stack);
    let at = (start.stack_pointer - stack.address) as usize;
    (0..count)
        .map(|i| u64::from_le_bytes(bytes[at + 8 * i..at + 8 * i + 8].try_into().unwrap()))
        .collect()
}

#[test]
fn the_dma_test_driver_gets_exactly_its_documented_capabilities() {
    let (kernel, code, log) = run_with_report(&fixture(), 0);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("init: guest 0 passed"), "{log}");
    let driver = kernel.domain_named("dma-test").unwrap();
    let table = kernel.table(driver);
    assert_eq!(
        table.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    let thread_of = |name: &str| kernel.table(kernel.domain_named(name).unwrap())[&1].object;
    for (selector, server) in [(3, "iommu"), (4, "pci")] {
        assert_eq!(table[&selector].rights, PortalRights::CALL.bits());
        assert_eq!(
            kernel.objects[table[&selector].object],
            Object::Portal {
                handler: thread_of(server),
                portal_id: number::FIRST_OWNER
            },
            "servers know the driver as owner {}",
            number::FIRST_OWNER
        );
    }
    let dma = MemoryRights::READ | MemoryRights::WRITE | MemoryRights::DMA_MAP;
    assert_eq!(table[&5].rights, dma.bits());
    let (canary_rights, canary) = (table[&6].rights, table[&6].object);
    assert_eq!(
        canary_rights,
        (MemoryRights::READ | MemoryRights::DMA_MAP).bits(),
        "the driver cannot write its canary"
    );
    let Object::Memory { base, size } = kernel.objects[table[&5].object] else {
        panic!()
    };
    assert_eq!(size, DMA_TEST_BUFFER);
    let Object::Memory {
        base: canary_base,
        size: canary_size,
    } = kernel.objects[canary]
    else {
        panic!()
    };
    assert_eq!(canary_size, 4096);
    assert!(
        canary_base + 4096 <= base || base + size <= canary_base,
        "the canary is apart"
    );
    let bytes = &kernel.physical[canary_base as usize..canary_base as usize + 4096];
    assert!(bytes
        .chunks_exact(8)
        .all(|word| u64::from_le_bytes(word.try_into().unwrap()) == CANARY_PATTERN));
    assert_eq!(table[&7].rights, NotificationRights::WAIT.bits());
    assert_eq!(table[&8].rights, InterruptRights::ACKNOWLEDGE.bits());
    assert_eq!(
        kernel.objects[table[&8].object],
        Object::Interrupt {
            line: Some(FIRST_MSI_LINE + 1),
            notification: Some(table[&7].object),
            bit: 0
        }
    );
    assert_eq!(
        stack_words(&kernel, driver, 4),
        [3, 0, u64::from(FIRST_MSI_LINE + 1), u64::from(EDU)],
        "argument count, guest, MSI line, device"
    );
    let iommu = kernel.table(kernel.domain_named("iommu").unwrap());
    assert_eq!(
        iommu[&4].rights,
        MemoryRights::READ.bits(),
        "the DMAR table, read-only"
    );
    assert_eq!(
        kernel.objects[iommu[&7].object],
        Object::Interrupt {
            line: Some(FIRST_MSI_LINE),
            notification: Some(iommu[&6].object),
            bit: 0
        }
    );
    let iommu_domain = kernel.domain_named("iommu").unwrap();
    let words = stack_words(&kernel, iommu_domain, 8);
    assert_eq!(
        words,
        [
            7,
            u64::from(FIRST_MSI_LINE),
            2,
            number::FIRST_OWNER,
            25,
            0,
            0x10,
            0x50
        ],
        "count, fault line, pci-server, first owner, its line, secure, DMAR offset, length"
    );
}

#[test]
fn a_failed_dma_check_fails_the_boot_with_the_guest_code() {
    let (_, code, log) = run_with_report(&fixture(), 0b100);
    assert_eq!(code, 13, "{log}");
    assert!(log.contains("init: guest 0 FAILED (status 0x4"), "{log}");
}

/// A DMAR with DRHDs at `bases` (VT-d spec 8.3: type 0, length 16, flags, size, segment,
/// register base), no device scopes.
fn dmar_with_units(bases: &[u64]) -> Vec<u8> {
    let mut bytes = b"DMAR".to_vec();
    bytes.resize(48, 0);
    for base in bases {
        bytes.extend(0u16.to_le_bytes());
        bytes.extend(16u16.to_le_bytes());
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(base.to_le_bytes());
    }
    let length = bytes.len() as u32;
    bytes[4..8].copy_from_slice(&length.to_le_bytes());
    bytes
}

#[test]
fn the_iommu_server_gets_one_register_page_per_drhd_unit() {
    let mut fixture = fixture();
    let further = 0xfed9_1000;
    let outside = 0x1_0000_0000;
    let table = dmar_with_units(&[crate::tests::DMAR, further, outside]);
    let at = (DMAR_TABLE + 0x10) as usize;
    fixture.physical[at..at + table.len()].copy_from_slice(&table);
    fixture.boot.dmar_length = table.len() as u64;
    let (kernel, code, log) = run_with_report(&fixture, 0);
    assert_eq!(code, 0, "{log}");
    let iommu = kernel.table(kernel.domain_named("iommu").unwrap());
    assert_eq!(
        kernel.objects[iommu[&9].object],
        Object::Memory {
            base: further,
            size: 4096
        },
        "unit 1's page at selector 9"
    );
    assert_eq!(
        iommu[&9].rights,
        (MemoryRights::READ | MemoryRights::WRITE).bits()
    );
    assert!(!iommu.contains_key(&10), "unit 2 is outside device memory");
    assert!(
        log.contains("init: DRHD unit 2 at 0x100000000 is not in device memory"),
        "{log}"
    );
    let pci = kernel.table(kernel.domain_named("pci").unwrap());
    for entry in pci.iter().filter(|(selector, _)| **selector >= 6) {
        if let Object::Memory { base, size } = kernel.objects[entry.1.object] {
            assert!(
                further + 4096 <= base || base + size <= further,
                "no device window of the pci-server covers unit 1's registers"
            );
        }
    }
}

#[test]
fn an_unreadable_or_inconsistent_dmar_hands_out_only_the_kernels_unit() {
    let mut fixture = fixture();
    let table = dmar_with_units(&[0xfed9_2000, 0xfed9_1000]);
    let at = (DMAR_TABLE + 0x10) as usize;
    fixture.physical[at..at + table.len()].copy_from_slice(&table);
    fixture.boot.dmar_length = table.len() as u64;
    let (kernel, code, log) = run_with_report(&fixture, 0);
    assert_eq!(code, 0, "{log}");
    let iommu = kernel.table(kernel.domain_named("iommu").unwrap());
    assert!(iommu.contains_key(&3));
    assert!(
        !iommu.contains_key(&9),
        "the table's first unit is not the kernel's: only the kernel's is trusted"
    );
}
