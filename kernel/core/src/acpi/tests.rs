//! Synthetic firmware: RSDP, RSDT/XSDT, MADT, MCFG and DMAR laid out in a fake physical memory.

use super::*;
use std::collections::BTreeMap;

/// Physical memory as a set of (address, bytes) blocks.
#[derive(Default)]
struct FakeMemory {
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl FakeMemory {
    fn put(&mut self, phys: u64, bytes: Vec<u8>) {
        self.blocks.insert(phys, bytes);
    }
}

impl PhysRead for FakeMemory {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), AcpiError> {
        let (&base, block) = self
            .blocks
            .range(..=phys)
            .next_back()
            .ok_or(AcpiError::Unreadable(phys))?;
        let start = (phys - base) as usize;
        let src = block
            .get(start..start + buf.len())
            .ok_or(AcpiError::Unreadable(phys))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(1);
    t.push(0);
    t.extend_from_slice(b"SLUICE");
    t.extend_from_slice(b"TESTTABL");
    t.extend_from_slice(&[0; 12]);
    t.extend_from_slice(body);
    let sum = checksum(&t);
    t[9] = 0u8.wrapping_sub(sum);
    t
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(RSDP_SIGNATURE);
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    let sum = checksum(&r);
    r[8] = 0u8.wrapping_sub(sum);
    r
}

fn qemu_like() -> (FakeMemory, Vec<u8>) {
    let mut mem = FakeMemory::default();
    let mut madt = Vec::new();
    madt.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    madt.extend_from_slice(&1u32.to_le_bytes());
    madt.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU 0, enabled
    madt.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]); // CPU 1, disabled
    madt.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // IOAPIC 0xfec00000
    madt.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // IRQ0 -> GSI2
    let mut mcfg = vec![0u8; 8];
    mcfg.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    mcfg.extend_from_slice(&[0, 0, 0, 255, 0, 0, 0, 0]);
    let mut dmar = vec![38, 1];
    dmar.extend_from_slice(&[0; 10]);
    dmar.extend_from_slice(&[0, 0, 16, 0, 0, 0, 0, 0]);
    dmar.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
    mem.put(0x7000, table(b"APIC", &madt));
    mem.put(0x8000, table(b"MCFG", &mcfg));
    mem.put(0x9000, table(b"DMAR", &dmar));
    let mut rsdt_body = Vec::new();
    for phys in [0x7000u32, 0x8000, 0x9000, 0xdead_0000] {
        rsdt_body.extend_from_slice(&phys.to_le_bytes());
    }
    mem.put(0x6000, table(b"RSDT", &rsdt_body));
    let rsdp = rsdp_v1(0x6000);
    mem.put(0xf_9fa0, rsdp.clone());
    mem.put(0x40e, vec![0, 0]);
    (mem, rsdp)
}

#[test]
fn discovers_tables_through_an_acpi_1_rsdp() {
    let (mem, rsdp) = qemu_like();
    let mut scratch = [0u8; 4096];
    let tables = Tables::discover(&rsdp, &mem, &mut scratch).expect("discover");
    assert_eq!(tables.revision, 0);
    let names: Vec<_> = tables.tables.iter().map(|t| t.signature).collect();
    assert_eq!(
        names,
        vec![*b"APIC", *b"MCFG", *b"DMAR"],
        "unreadable entries are skipped"
    );
    let mut buf = [0u8; 4096];
    let mcfg = read_table(&mem, tables.find(b"MCFG").unwrap().phys, &mut buf).unwrap();
    assert_eq!(
        parse_mcfg(mcfg).as_slice(),
        &[EcamWindow {
            base: 0xb000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 255
        }]
    );
    let mut buf = [0u8; 4096];
    let madt = parse_madt(read_table(&mem, tables.find(b"APIC").unwrap().phys, &mut buf).unwrap());
    assert_eq!(madt.local_apic_address, 0xfee0_0000);
    assert_eq!(madt.cpus.len(), 2);
    assert!(madt.cpus[0].usable && !madt.cpus[1].usable);
    assert_eq!(madt.ioapics[0].address, 0xfec0_0000);
    assert_eq!(madt.overrides[0].gsi, 2);
    let mut buf = [0u8; 4096];
    let dmar = read_table(&mem, tables.find(b"DMAR").unwrap().phys, &mut buf).unwrap();
    assert_eq!(dmar_unit_bases(dmar).as_slice(), &[0xfed9_0000]);
}

#[test]
fn finds_the_rsdp_in_the_bios_area() {
    let (mem, _) = qemu_like();
    assert_eq!(scan_bios_for_rsdp(&mem), Some(0xf_9fa0));
}

#[test]
fn refuses_bad_checksums_and_oversized_tables() {
    let (mut mem, rsdp) = qemu_like();
    let mut broken = rsdp.clone();
    broken[9] ^= 1;
    let mut scratch = [0u8; 4096];
    assert_eq!(
        Tables::discover(&broken, &mem, &mut scratch),
        Err(AcpiError::BadRsdp)
    );
    let mut bad = table(b"MCFG", &[0; 24]);
    bad[9] ^= 0x55;
    mem.put(0x8000, bad);
    let mut buf = [0u8; 4096];
    assert!(matches!(
        read_table(&mem, 0x8000, &mut buf),
        Err(AcpiError::BadTable { .. })
    ));
    let mut small = [0u8; 40];
    assert!(matches!(
        read_table(&mem, 0x7000, &mut small),
        Err(AcpiError::TableTooLarge { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn table_parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = parse_madt(&bytes);
        let _ = parse_mcfg(&bytes);
        let _ = dmar_unit_bases(&bytes);
        let _ = check_rsdp(&bytes);
    }
}
