//! MMIO instruction emulation of real machine code in 64-, 32- and 16-bit modes: register
//! results with x86 width rules, bus traffic, RIP advance, and named errors.
mod common;

use common::{long_mode, protected_mode, real_mode, Recorder, Traffic};
use iced_x86::Mnemonic;
use sluice_abi::vcpu::{Gpr, GuestPhys, MemoryAccess, Mtd, VcpuState};
use vmm_core::mmio::{emulate_mmio, EmulationError};
use vmm_core::{Bus, BusKind};

const DEVICE: u64 = 0xfe00_0000;

fn bus() -> (Bus, Recorder) {
    let recorder = Recorder::default();
    let mut bus = Bus::new(BusKind::Mmio);
    bus.register(DEVICE, 0x1000, Box::new(recorder.clone()))
        .unwrap();
    (bus, recorder)
}

fn run(
    code: &[u8],
    state: &mut VcpuState,
    offset: u64,
    access: MemoryAccess,
) -> (
    Result<vmm_core::mmio::Emulated, EmulationError>,
    Vec<Traffic>,
) {
    let (mut bus, recorder) = bus();
    let result = emulate_mmio(code, state, GuestPhys(DEVICE + offset), access, &mut bus);
    let traffic = recorder.0.borrow().clone();
    (result, traffic)
}

#[test]
fn mov_eax_from_rbx_zero_extends_and_advances() {
    let mut state = long_mode(0x40_0000);
    state.gpr.set(Gpr::Rax, 0xffff_ffff_ffff_ffff);
    state.gpr.set(Gpr::Rbx, DEVICE + 0x10);
    let (result, traffic) = run(&[0x8b, 0x03], &mut state, 0x10, MemoryAccess::Read);
    let emulated = result.unwrap();
    assert_eq!(emulated.length, 2);
    assert_eq!(emulated.changed, Mtd::GPR_ACDB | Mtd::RIP);
    assert_eq!(
        state.gpr.get(Gpr::Rax),
        0x8483_8281,
        "32-bit load clears bits 63:32"
    );
    assert_eq!(state.rip, 0x40_0002);
    assert_eq!(
        traffic,
        [Traffic::Read {
            offset: 0x10,
            width: 4
        }]
    );
}

#[test]
fn mov_to_rdi_plus_8_from_rcx_stores_eight_bytes() {
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rcx, 0x1122_3344_5566_7788);
    let (result, traffic) = run(
        &[0x48, 0x89, 0x4f, 0x08],
        &mut state,
        0x8,
        MemoryAccess::Write,
    );
    assert_eq!(result.unwrap().changed, Mtd::RIP);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 8,
            data: vec![0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        }]
    );
    assert_eq!(state.rip, 0x1004);
}

#[test]
fn immediate_stores_use_the_operand_size() {
    let mut state = long_mode(0x1000);
    let (result, traffic) = run(&[0xc6, 0x00, 0x5a], &mut state, 0, MemoryAccess::Write);
    assert_eq!(result.unwrap().length, 3);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 0,
            data: vec![0x5a]
        }]
    );
    // mov qword [rax], -1: imm32 sign-extended to 64 bits.
    let code = [0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff];
    let (result, traffic) = run(&code, &mut state, 0, MemoryAccess::Write);
    assert_eq!(result.unwrap().length, 7);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 0,
            data: vec![0xff; 8]
        }]
    );
}

#[test]
fn movzx_movsx_and_movsxd_extend_correctly() {
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rax, u64::MAX);
    // movzx eax, word [rsi]
    let (result, traffic) = run(&[0x0f, 0xb7, 0x06], &mut state, 0, MemoryAccess::Read);
    result.unwrap();
    assert_eq!(state.gpr.get(Gpr::Rax), 0x8281);
    assert_eq!(
        traffic,
        [Traffic::Read {
            offset: 0,
            width: 2
        }]
    );
    // movsx rax, byte [rsi]: 0x81 is negative.
    run(&[0x48, 0x0f, 0xbe, 0x06], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap();
    assert_eq!(state.gpr.get(Gpr::Rax), 0xffff_ffff_ffff_ff81);
    // movsxd rdx, dword [rsi]
    run(&[0x48, 0x63, 0x16], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap();
    assert_eq!(state.gpr.get(Gpr::Rdx), 0xffff_ffff_8483_8281);
    // movsx cx, byte [rsi] keeps bits 63:16 of RCX.
    state.gpr.set(Gpr::Rcx, 0xaaaa_aaaa_aaaa_aaaa);
    run(&[0x66, 0x0f, 0xbe, 0x0e], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap();
    assert_eq!(state.gpr.get(Gpr::Rcx), 0xaaaa_aaaa_aaaa_ff81);
}

#[test]
fn byte_and_word_loads_merge_into_the_register() {
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rax, 0x1111_1111_1111_1111);
    run(&[0x8a, 0x23], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap(); // mov ah, [rbx]
    assert_eq!(state.gpr.get(Gpr::Rax), 0x1111_1111_1111_8111);
    run(&[0x66, 0x8b, 0x03], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap(); // mov ax, [rbx]
    assert_eq!(state.gpr.get(Gpr::Rax), 0x1111_1111_1111_8281);
    state.gpr.set(Gpr::R9, u64::MAX);
    let emulated = run(&[0x45, 0x8b, 0x08], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap(); // mov r9d, [r8]
    assert_eq!(state.gpr.get(Gpr::R9), 0x8483_8281);
    assert_eq!(emulated.changed, Mtd::GPR_R8_R15 | Mtd::RIP);
}

#[test]
fn stos_stores_and_steps_rdi_by_direction_flag() {
    let mut state = long_mode(0x1000);
    state.gpr.set(Gpr::Rax, 0xdead_beef);
    state.gpr.set(Gpr::Rdi, DEVICE);
    let (result, traffic) = run(&[0xab], &mut state, 0, MemoryAccess::Write);
    assert_eq!(result.unwrap().changed, Mtd::GPR_BSD | Mtd::RIP);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 0,
            data: vec![0xef, 0xbe, 0xad, 0xde]
        }]
    );
    assert_eq!(state.gpr.get(Gpr::Rdi), DEVICE + 4);
    state.rflags |= 1 << 10;
    run(&[0xaa], &mut state, 4, MemoryAccess::Write).0.unwrap();
    assert_eq!(state.gpr.get(Gpr::Rdi), DEVICE + 3);
    let before = state;
    let (result, traffic) = run(&[0xf3, 0xab], &mut state, 0, MemoryAccess::Write);
    assert_eq!(
        result,
        Err(EmulationError::UnsupportedOperands(Mnemonic::Stosd))
    );
    assert!(traffic.is_empty());
    assert_eq!(state, before);
}

#[test]
fn real_mode_and_protected_mode_forms() {
    // mov al, [bx] at CS:IP = 0x1000:0xfffe: IP wraps to 0.
    let mut state = real_mode(0x10000, 0xfffe);
    run(&[0x8a, 0x07], &mut state, 0, MemoryAccess::Read)
        .0
        .unwrap();
    assert_eq!(state.gpr.get(Gpr::Rax) & 0xff, 0x81);
    assert_eq!(state.rip, 0);
    // mov word [bx+2], 0x1234
    let (result, traffic) = run(
        &[0xc7, 0x47, 0x02, 0x34, 0x12],
        &mut state,
        2,
        MemoryAccess::Write,
    );
    assert_eq!(result.unwrap().length, 5);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 2,
            data: vec![0x34, 0x12]
        }]
    );
    // mov [si], ax
    state.gpr.set(Gpr::Rax, 0xbeef);
    let (_, traffic) = run(&[0x89, 0x04], &mut state, 0, MemoryAccess::Write);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 0,
            data: vec![0xef, 0xbe]
        }]
    );
    // 66 8b 07: mov eax, [bx] with operand-size override.
    state.gpr.set(Gpr::Rax, u64::MAX);
    let (result, traffic) = run(&[0x66, 0x8b, 0x07], &mut state, 0, MemoryAccess::Read);
    assert_eq!(result.unwrap().length, 3);
    assert_eq!(
        traffic,
        [Traffic::Read {
            offset: 0,
            width: 4
        }]
    );
    assert_eq!(state.gpr.get(Gpr::Rax), 0x8483_8281);
    // 32-bit: mov [edi], cl; 8b 03 is mov eax, [ebx] here too.
    let mut state = protected_mode(0x7c00);
    state.gpr.set(Gpr::Rcx, 0x77);
    let (_, traffic) = run(&[0x88, 0x0f], &mut state, 0, MemoryAccess::Write);
    assert_eq!(
        traffic,
        [Traffic::Write {
            offset: 0,
            data: vec![0x77]
        }]
    );
    assert_eq!(state.rip, 0x7c02);
}

#[test]
fn unsupported_and_malformed_instructions_are_named_errors_without_effects() {
    let cases: [(&[u8], MemoryAccess, EmulationError); 7] = [
        (
            &[0x01, 0x00],
            MemoryAccess::Write,
            EmulationError::Unsupported(Mnemonic::Add),
        ),
        (
            &[0x0f, 0x0b],
            MemoryAccess::Read,
            EmulationError::Unsupported(Mnemonic::Ud2),
        ),
        (
            &[0x06, 0x90, 0x90],
            MemoryAccess::Read,
            EmulationError::InvalidInstruction,
        ),
        (&[0x8b], MemoryAccess::Read, EmulationError::Truncated),
        (&[], MemoryAccess::Read, EmulationError::Truncated),
        // mov [rax], es: a segment register source.
        (
            &[0x8c, 0x00],
            MemoryAccess::Write,
            EmulationError::UnsupportedOperands(Mnemonic::Mov),
        ),
        (
            &[0x8b, 0x03],
            MemoryAccess::Write,
            EmulationError::AccessMismatch {
                instruction: MemoryAccess::Read,
                fault: MemoryAccess::Write,
            },
        ),
    ];
    for (code, access, expected) in cases {
        let mut state = long_mode(0x1000);
        let before = state;
        let (result, traffic) = run(code, &mut state, 0, access);
        assert_eq!(result, Err(expected), "bytes {code:02x?}");
        assert!(traffic.is_empty());
        assert_eq!(state, before, "a refused instruction changes nothing");
    }
    let mut state = long_mode(0x1000);
    assert_eq!(
        run(&[0x8b, 0x03], &mut state, 0, MemoryAccess::Execute).0,
        Err(EmulationError::ExecuteFromMmio(GuestPhys(DEVICE)))
    );
    state.mtd = Mtd::RIP;
    assert!(matches!(
        run(&[0x8b, 0x03], &mut state, 0, MemoryAccess::Read).0,
        Err(EmulationError::MissingState(_))
    ));
}
