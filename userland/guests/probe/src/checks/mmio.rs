//! Check 4 (`mmio`): the MMIO test device at [`TEST_DEVICE_BASE`], against the semantics of
//! vmm-server/core/src/test_device.rs. Every access is one explicit instruction (MOV load and
//! store of 8/16/32/64 bits, MOV with an immediate, MOVZX), the forms the VMM's MMIO emulator
//! decodes, so the compiler cannot pick an instruction the emulator does not handle.
use core::arch::asm;

use guest_probe::check::{equal, Mismatch};
use guest_probe::layout::test_device::{
    CHECKSUM_OFFSET, COUNTER_OFFSET, DATA_OFFSET, ID, ID_OFFSET, RESET_OFFSET, SCRATCH_OFFSET,
    WRITE_COUNT_OFFSET,
};
use guest_probe::layout::TEST_DEVICE_BASE;

/// Address of the register at `offset` (identity-mapped, uncached: boot.rs).
fn at(offset: u64) -> u64 {
    TEST_DEVICE_BASE.0 + offset
}

// SAFETY (for every function below): `at` yields addresses inside the test device's page,
// which the identity map covers uncached; the accesses have device side effects only.

fn read_u8(offset: u64) -> u64 {
    let value: u8;
    // SAFETY: see above.
    unsafe {
        asm!("mov {v}, byte ptr [{a}]", a = in(reg) at(offset), v = out(reg_byte) value, options(nostack, preserves_flags))
    };
    u64::from(value)
}

fn read_u8_zero_extended(offset: u64) -> u64 {
    let value: u32;
    // SAFETY: see above.
    unsafe {
        asm!("movzx {v:e}, byte ptr [{a}]", a = in(reg) at(offset), v = out(reg) value, options(nostack, preserves_flags))
    };
    u64::from(value)
}

fn read_u32(offset: u64) -> u64 {
    let value: u32;
    // SAFETY: see above.
    unsafe {
        asm!("mov {v:e}, dword ptr [{a}]", a = in(reg) at(offset), v = out(reg) value, options(nostack, preserves_flags))
    };
    u64::from(value)
}

fn read_u64(offset: u64) -> u64 {
    let value: u64;
    // SAFETY: see above.
    unsafe {
        asm!("mov {v}, qword ptr [{a}]", a = in(reg) at(offset), v = out(reg) value, options(nostack, preserves_flags))
    };
    value
}

fn write_u8(offset: u64, value: u8) {
    // SAFETY: see above.
    unsafe {
        asm!("mov byte ptr [{a}], {v}", a = in(reg) at(offset), v = in(reg_byte) value, options(nostack, preserves_flags))
    };
}

fn write_u16(offset: u64, value: u16) {
    // SAFETY: see above.
    unsafe {
        asm!("mov word ptr [{a}], {v:x}", a = in(reg) at(offset), v = in(reg) value, options(nostack, preserves_flags))
    };
}

fn write_u32(offset: u64, value: u32) {
    // SAFETY: see above.
    unsafe {
        asm!("mov dword ptr [{a}], {v:e}", a = in(reg) at(offset), v = in(reg) value, options(nostack, preserves_flags))
    };
}

fn write_u64(offset: u64, value: u64) {
    // SAFETY: see above.
    unsafe {
        asm!("mov qword ptr [{a}], {v}", a = in(reg) at(offset), v = in(reg) value, options(nostack, preserves_flags))
    };
}

/// The value [`write_immediate_to_data`] stores.
const IMMEDIATE_DATA: u64 = 0x1_0000;

/// `mov dword ptr [DATA], 0x10000`: a store with an immediate source.
fn write_immediate_to_data() {
    // SAFETY: see above.
    unsafe {
        asm!("mov dword ptr [{a}], 0x10000", a = in(reg) at(DATA_OFFSET), options(nostack, preserves_flags))
    };
}

/// Runs the check. Starts with RESET, so it does not depend on earlier accesses.
pub fn run() -> Result<(), Mismatch> {
    write_u8(RESET_OFFSET, 1);

    // ID: a 32-bit register; the upper half of its quadword reads 0; byte 3 is 'S'.
    equal("ID (32-bit read)", u64::from(ID), read_u32(ID_OFFSET))?;
    equal("ID (64-bit read)", u64::from(ID), read_u64(ID_OFFSET))?;
    equal(
        "ID byte 3 (MOVZX)",
        u64::from(ID >> 24),
        read_u8_zero_extended(ID_OFFSET + 3),
    )?;

    // SCRATCH reads back exactly the bytes written, at any width and offset.
    equal("SCRATCH after RESET", 0, read_u64(SCRATCH_OFFSET))?;
    write_u64(SCRATCH_OFFSET, 0x1122_3344_5566_7788);
    write_u16(SCRATCH_OFFSET + 2, 0xbbaa);
    equal(
        "SCRATCH (64-bit)",
        0x1122_3344_bbaa_7788,
        read_u64(SCRATCH_OFFSET),
    )?;
    equal(
        "SCRATCH bytes 4..8 (32-bit)",
        0x1122_3344,
        read_u32(SCRATCH_OFFSET + 4),
    )?;
    equal("SCRATCH byte 1 (8-bit)", 0x77, read_u8(SCRATCH_OFFSET + 1))?;

    // COUNTER: a read returns the number of earlier reads, then increments; a write sets it.
    equal("COUNTER first read", 0, read_u64(COUNTER_OFFSET))?;
    equal("COUNTER second read (32-bit)", 1, read_u32(COUNTER_OFFSET))?;
    write_u64(COUNTER_OFFSET, 40);
    equal("COUNTER after writing 40", 40, read_u64(COUNTER_OFFSET))?;
    equal("COUNTER read after that", 41, read_u64(COUNTER_OFFSET))?;

    // DATA writes add their zero-extended value to CHECKSUM and count in WRITE_COUNT.
    write_u8(DATA_OFFSET, 5);
    write_immediate_to_data();
    write_u64(DATA_OFFSET, 0x1_0000_0000);
    write_u32(DATA_OFFSET, 0xffff_ffff);
    let expected_checksum = 5 + IMMEDIATE_DATA + 0x1_0000_0000 + 0xffff_ffff;
    equal("CHECKSUM", expected_checksum, read_u64(CHECKSUM_OFFSET))?;
    equal("WRITE_COUNT", 4, read_u64(WRITE_COUNT_OFFSET))?;

    // RESET clears everything.
    write_u32(RESET_OFFSET, 0);
    equal("CHECKSUM after RESET", 0, read_u64(CHECKSUM_OFFSET))?;
    equal("WRITE_COUNT after RESET", 0, read_u64(WRITE_COUNT_OFFSET))?;
    equal("SCRATCH after RESET", 0, read_u64(SCRATCH_OFFSET))?;
    equal("COUNTER after RESET", 0, read_u64(COUNTER_OFFSET))
}
