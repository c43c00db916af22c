//! Guest page walk: 4-level paging with 4 KiB, 2 MiB and 1 GiB pages, 32-bit paging with 4 MiB
//! pages, and instruction fetch across a page boundary.
mod common;

use common::{long_mode, protected_mode};
use sluice_abi::vcpu::{GuestPhys, Mtd};
use vmm_core::memory::{fetch_instruction, translate, MAX_INSTRUCTION_BYTES};
use vmm_core::{MemoryError, SliceMemory};

const PRESENT_WRITABLE: u64 = 0x3;
const LARGE: u64 = 0x80;

fn put(ram: &mut [u8], address: u64, entry: u64) {
    let at = address as usize;
    ram[at..at + 8].copy_from_slice(&entry.to_le_bytes());
}

/// PML4 at 0x1000; PML4[0] -> PDPT 0x2000; PDPT[0] -> PD 0x3000, PDPT[1] = 1 GiB page at
/// 0x1_4000_0000; PD[0] -> PT 0x4000, PD[1] = 2 MiB page at 0x60_0000; PT[5] = 4 KiB page at
/// 0x8000, PT[6] = 0x6000; PML4[1] has PS set (reserved).
fn tables() -> Vec<u8> {
    let mut ram = vec![0u8; 0x10000];
    put(&mut ram, 0x1000, 0x2000 | PRESENT_WRITABLE);
    put(&mut ram, 0x1008, 0x5000 | PRESENT_WRITABLE | LARGE);
    put(&mut ram, 0x2000, 0x3000 | PRESENT_WRITABLE);
    put(&mut ram, 0x2008, 0x1_4000_0000 | PRESENT_WRITABLE | LARGE);
    put(&mut ram, 0x3000, 0x4000 | PRESENT_WRITABLE);
    put(&mut ram, 0x3008, 0x60_0000 | PRESENT_WRITABLE | LARGE);
    put(
        &mut ram,
        0x4000 + 5 * 8,
        0x8000 | PRESENT_WRITABLE | 1 << 63,
    );
    put(&mut ram, 0x4000 + 6 * 8, 0x6000 | PRESENT_WRITABLE);
    ram
}

#[test]
fn four_level_walk_honours_large_pages() {
    let ram = tables();
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut state = long_mode(0);
    state.cr3 = 0x1000 | 0x18; // PCD/PWT bits ignored
    assert_eq!(
        translate(&memory, &state, 0x5123),
        Ok(GuestPhys(0x8123)),
        "4 KiB, NX bit masked"
    );
    assert_eq!(
        translate(&memory, &state, 0x2a_bcde),
        Ok(GuestPhys(0x6a_bcde)),
        "2 MiB"
    );
    assert_eq!(
        translate(&memory, &state, 0x7654_3210),
        Ok(GuestPhys(0x1_7654_3210)),
        "1 GiB"
    );
    assert_eq!(
        translate(&memory, &state, 0x7000),
        Err(MemoryError::NotPresent {
            linear: 0x7000,
            level: 1
        })
    );
    assert_eq!(
        translate(&memory, &state, 0x8000_0000),
        Err(MemoryError::NotPresent {
            linear: 0x8000_0000,
            level: 3
        })
    );
    assert_eq!(
        translate(&memory, &state, 0x80_0000_0000),
        Err(MemoryError::ReservedBit {
            linear: 0x80_0000_0000,
            level: 4
        })
    );
    assert_eq!(
        translate(&memory, &state, 0x0000_8000_0000_0000),
        Err(MemoryError::NonCanonical(0x0000_8000_0000_0000))
    );
    state.cr3 = 0x20_0000; // tables outside RAM
    assert_eq!(
        translate(&memory, &state, 0),
        Err(MemoryError::Unmapped(GuestPhys(0x20_0000)))
    );
    state.cr4 |= 1 << 12; // LA57
    assert_eq!(
        translate(&memory, &state, 0),
        Err(MemoryError::UnsupportedPagingMode)
    );
    state.mtd = Mtd::RIP;
    assert!(matches!(
        translate(&memory, &state, 0),
        Err(MemoryError::MissingState(_))
    ));
}

#[test]
fn thirty_two_bit_paging_and_no_paging() {
    let mut ram = vec![0u8; 0x10000];
    ram[0x1000 + 4..0x1000 + 8].copy_from_slice(&(0x0080_0000u32 | 0x83).to_le_bytes()); // PDE[1]: 4 MiB
    ram[0x1000..0x1004].copy_from_slice(&(0x2000u32 | 3).to_le_bytes()); // PDE[0] -> PT
    ram[0x2000 + 4..0x2000 + 8].copy_from_slice(&(0x9000u32 | 3).to_le_bytes()); // PTE[1]
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut state = protected_mode(0);
    assert_eq!(
        translate(&memory, &state, 0x1234_5678),
        Ok(GuestPhys(0x1234_5678)),
        "paging off"
    );
    state.cr0 |= 1 << 31;
    state.cr3 = 0x1000;
    state.cr4 = 1 << 4; // PSE
    assert_eq!(translate(&memory, &state, 0x1234), Ok(GuestPhys(0x9234)));
    assert_eq!(
        translate(&memory, &state, 0x45_6789),
        Ok(GuestPhys(0x85_6789))
    );
    assert_eq!(
        translate(&memory, &state, 0x80_0000),
        Err(MemoryError::NotPresent {
            linear: 0x80_0000,
            level: 2
        })
    );
}

#[test]
fn instruction_fetch_crosses_pages_and_stops_at_unmapped_memory() {
    let mut ram = tables();
    // Linear 0x5ffe..: last two bytes of the 4 KiB page at 0x8000, then page 0x6000.
    ram[0x8ffe..0x9000].copy_from_slice(&[0x48, 0x89]);
    ram[0x6000..0x6002].copy_from_slice(&[0x4f, 0x08]);
    let memory = SliceMemory::new(GuestPhys(0), &ram);
    let mut state = long_mode(0x5ffe);
    state.cr3 = 0x1000;
    let mut bytes = [0u8; MAX_INSTRUCTION_BYTES];
    assert_eq!(
        fetch_instruction(&memory, &state, &mut bytes),
        Ok(MAX_INSTRUCTION_BYTES)
    );
    assert_eq!(&bytes[..4], &[0x48, 0x89, 0x4f, 0x08]);
    // Page 0x6000 + 0x1000 (linear 0x7000) is not present: fetch stops short.
    state.rip = 0x6ffc;
    assert_eq!(fetch_instruction(&memory, &state, &mut bytes), Ok(4));
    state.rip = 0x7000;
    assert_eq!(
        fetch_instruction(&memory, &state, &mut bytes),
        Err(MemoryError::NotPresent {
            linear: 0x7000,
            level: 1
        })
    );
}
