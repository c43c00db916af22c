//! The FPU, SSE and AVX registers from the guest's side: enabling them (CR0, CR4), loading and
//! storing them around a run of VM exits in one assembly block, and XCR0 (XGETBV, XSETBV).
//!
//! The crate is built soft-float: compiled Rust never touches XMM, MXCSR or the x87 unit, so the
//! values an assembly block leaves there are only ever read by the probe's own assembly. The
//! register images are `guest_probe::fpu`'s, which the host tests check.
use core::arch::asm;

use guest_probe::fpu::{SseState, YmmUpper, FCW_OFFSET, MXCSR_OFFSET};
use guest_probe::layout::UART_BASE;

use crate::interrupts::{expect_general_protection, Fault};

/// CR0.MP (bit 1), EM (bit 2), TS (bit 3) (SDM Vol. 3A section 2.5).
const CR0_MONITOR_COPROCESSOR: u64 = 1 << 1;
const CR0_EMULATION: u64 = 1 << 2;
const CR0_TASK_SWITCHED: u64 = 1 << 3;
/// CR4.OSFXSR (bit 9), OSXMMEXCPT (bit 10), OSXSAVE (bit 18) (SDM Vol. 3A section 2.5).
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// XSETBV is `0F 01 D1` (SDM Vol. 2C, XSETBV).
const XSETBV_BYTES: u64 = 3;
/// The UART's scratch register (offset 7): port I/O the VMM handles and that has no effect.
const SCRATCH_OFFSET: u16 = 7;

/// CR4.
pub fn cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

fn set_cr4(value: u64) {
    // SAFETY: callers only add OSFXSR, OSXMMEXCPT or OSXSAVE (the latter where CPUID reports
    // XSAVE), which change no mapping and no code the probe runs.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// Enables SSE as SDM Vol. 3A section 13.1.3 says (CR0.EM = 0, CR0.MP = 1, CR0.TS = 0,
/// CR4.OSFXSR = CR4.OSXMMEXCPT = 1) and puts the x87 unit in its initial state (FNINIT).
pub fn enable() {
    let mut cr0: u64;
    // SAFETY: reading CR0 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    cr0 = (cr0 | CR0_MONITOR_COPROCESSOR) & !(CR0_EMULATION | CR0_TASK_SWITCHED);
    // SAFETY: MP, EM and TS only decide whether x87/SSE instructions fault; paging and
    // protection stay as they are.
    unsafe { asm!("mov cr0, {}", in(reg) cr0, options(nostack, preserves_flags)) };
    set_cr4(cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
    // SAFETY: the x87 unit is enabled (CR0.EM = 0); FNINIT only resets its own registers.
    unsafe { asm!("fninit", options(nomem, nostack, preserves_flags)) };
}

/// Sets CR4.OSXSAVE (only where CPUID.1:ECX.XSAVE is set).
pub fn enable_xsave() {
    set_cr4(cr4() | CR4_OSXSAVE);
}

/// What a run of exits left in the registers.
pub struct Held {
    /// XMM0..15, MXCSR, FCW at the end.
    pub registers: SseState,
    /// The upper halves of YMM0..15 at the end (when they were loaded).
    pub upper: YmmUpper,
    /// The UART scratch register read after the port writes (0 when there were none).
    pub scratch: u8,
}

/// The value the last of `port_exits` (> 0) scratch writes leaves: the writes count down to 1,
/// each writing its count's low byte XOR `tag`.
pub const fn last_scratch_write(tag: u8) -> u8 {
    1 ^ tag
}

/// Loads `expected` into XMM0..15, MXCSR and FCW (and `upper` into the upper halves of
/// YMM0..15 when given: AVX must then be enabled in CR4 and XCR0), executes `cpuid_exits`
/// CPUIDs and then `port_exits` OUTs to the UART scratch register (each a VM exit) and one IN
/// from it, and stores what the registers hold then. All in one assembly block, so nothing
/// else runs on the vCPU in between except interrupt handlers, which touch none of these
/// registers.
pub fn hold_through_exits(
    expected: &SseState,
    upper: Option<&YmmUpper>,
    cpuid_exits: u64,
    port_exits: u64,
    tag: u8,
) -> Held {
    let mut held = Held {
        registers: SseState::INITIAL,
        upper: YmmUpper([[0; 2]; 16]),
        scratch: 0,
    };
    let upper_in = upper.map_or(core::ptr::null(), |upper| upper as *const YmmUpper);
    let scratch: u64;
    // SAFETY: `expected`, `upper_in` (read only when it is not null) and the two outputs are
    // 16-byte-aligned images of the layout the offsets name (`guest_probe::fpu`, checked by
    // its tests). SSE is enabled (`enable`); the VEX instructions run only when the caller
    // passed YMM values, having enabled AVX. CPUID writes EAX..EDX only; RBX, which LLVM
    // reserves, is kept in a scratch register around it. The OUT/IN pair targets the UART's
    // scratch register, which the probe owns. XMM0..15, MXCSR and FCW are not declared: the
    // crate is soft-float, so compiled code keeps nothing in them (module documentation).
    unsafe {
        asm!(
            ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            "movdqu xmm\\n, xmmword ptr [{expected} + \\n*16]",
            ".endr",
            "ldmxcsr dword ptr [{expected} + {mxcsr}]",
            "fldcw word ptr [{expected} + {fcw}]",
            "test {upper_in}, {upper_in}",
            "jz 2f",
            ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            "vinsertf128 ymm\\n, ymm\\n, xmmword ptr [{upper_in} + \\n*16], 1",
            ".endr",
            "2:",
            "test {cpuids}, {cpuids}",
            "jz 4f",
            "3:",
            "xor eax, eax",
            "xor ecx, ecx",
            "mov {saved}, rbx",
            "cpuid",
            "mov rbx, {saved}",
            "dec {cpuids}",
            "jnz 3b",
            "4:",
            "xor eax, eax",
            "test {ports}, {ports}",
            "jz 6f",
            "mov edx, {port}",
            "5:",
            "mov eax, {ports:e}",
            "xor al, {tag}",
            "out dx, al",
            "dec {ports}",
            "jnz 5b",
            "in al, dx",
            "movzx eax, al",
            "6:",
            ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            "movdqu xmmword ptr [{observed} + \\n*16], xmm\\n",
            ".endr",
            "stmxcsr dword ptr [{observed} + {mxcsr}]",
            "fnstcw word ptr [{observed} + {fcw}]",
            "test {upper_in}, {upper_in}",
            "jz 7f",
            ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
            "vextractf128 xmmword ptr [{upper_out} + \\n*16], ymm\\n, 1",
            ".endr",
            "7:",
            expected = in(reg) expected as *const SseState,
            upper_in = in(reg) upper_in,
            observed = in(reg) &raw mut held.registers,
            upper_out = in(reg) &raw mut held.upper,
            cpuids = inout(reg) cpuid_exits => _,
            ports = inout(reg) port_exits => _,
            port = const UART_BASE.0 + SCRATCH_OFFSET,
            tag = in(reg_byte) tag,
            saved = out(reg) _,
            mxcsr = const MXCSR_OFFSET,
            fcw = const FCW_OFFSET,
            out("eax") scratch,
            out("ecx") _,
            out("edx") _,
            options(nostack),
        );
    }
    held.scratch = scratch as u8;
    held
}

/// XGETBV: XCR `register` (CR4.OSXSAVE must be set).
pub fn xgetbv(register: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: callers set CR4.OSXSAVE first; XGETBV(0) reads XCR0, no memory.
    unsafe {
        asm!("xgetbv", in("ecx") register, out("eax") low, out("edx") high,
            options(nomem, nostack, preserves_flags));
    }
    u64::from(high) << 32 | u64::from(low)
}

/// XSETBV of `value` into XCR `register`, with the #GP handler armed to record a fault and
/// skip the instruction. Returns the instruction's address and the #GP, if one arrived.
pub fn xsetbv(register: u32, value: u64) -> (u64, Option<Fault>) {
    expect_general_protection(XSETBV_BYTES, || {
        let address: u64;
        // SAFETY: CR4.OSXSAVE is set (callers), so XSETBV either exits to the kernel, which
        // checks the value, or raises #GP, which the armed handler records and skips. A value
        // the kernel takes changes only which state components the guest may use; the probe
        // keeps no values in them.
        unsafe {
            asm!(
                "lea {address}, [rip + 2f]",
                "2:",
                "xsetbv",
                address = out(reg) address,
                in("ecx") register,
                in("eax") value as u32,
                in("edx") (value >> 32) as u32,
                options(nostack),
            );
        }
        address
    })
}
