//! One guest: its RAM (mapped into the vmm-server and into the VM), the built-in guest image
//! loaded into it, the VM and vCPU objects, and the run loop that turns each exit message from
//! the kernel into a reply with `vmm_core::Vmm`.

use alloc::string::String;
use kernel_core::elf::Executable;
use sluice_rt::abi::syscall::{MemoryRights, Selector, Status};
use sluice_rt::abi::vcpu::{
    ExitReason, GuestPhys, Mtd, Reply, Segment, SegmentAttributes, VcpuState,
};
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::{log, sys};
use vmm_core::cpuid::LEAF1_ECX_OSXSAVE;
use vmm_core::{
    decode_exit_into, empty_exit, CpuidValues, ExitAction, GuestMemory, HostCpuid, MemoryError,
    Vmm, VmmConfig,
};

/// Selectors init gives a vmm-server that runs a guest (see main.rs).
pub const GUEST_RAM: Selector = Selector(4);
pub const GUEST_IMAGE: Selector = Selector(5);
pub const SYSTEM_DESCRIPTION: Selector = Selector(6);
/// Selectors the vmm-server creates.
const VM: Selector = Selector(10);
const VCPU: Selector = Selector(11);
const SLEEP: Selector = Selector(12);
const OWN: Selector = Selector(0);

/// Where things are mapped in the vmm-server.
const RAM_WINDOW: u64 = 0x0000_1000_0000_0000;
const IMAGE_WINDOW: u64 = 0x0000_2000_0000_0000;
const DESCRIPTION_WINDOW: u64 = 0x0000_3000_0000_0000;

/// The built-in guest's start: real mode, CS = 0, IP = 0x8000; its parameter block at 0x7000
/// (userland/guests/probe/README.md).
const ENTRY: u64 = 0x8000;
const PARAMETERS: u64 = 0x7000;
const PARAMETER_MAGIC: u32 = 0x4250_4c53;
const MAX_CMDLINE: usize = 4080;

/// Why a guest could not run.
#[derive(Debug)]
pub enum GuestError {
    Kernel(&'static str, Status),
    BadDescription,
    NoSuchGuest(u64),
    BadImage(kernel_core::elf::ElfError),
    ImageTooLarge,
}

impl core::fmt::Display for GuestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuestError::Kernel(step, status) => write!(f, "{step}: {status:?} ({status})"),
            GuestError::BadDescription => write!(f, "the system description is malformed"),
            GuestError::NoSuchGuest(index) => {
                write!(f, "no guest {index} in the system description")
            }
            GuestError::BadImage(error) => write!(f, "guest image: {error}"),
            GuestError::ImageTooLarge => write!(f, "guest image does not fit the guest's RAM"),
        }
    }
}

fn kernel(step: &'static str) -> impl Fn(Status) -> GuestError {
    move |status| GuestError::Kernel(step, status)
}

/// Maps as much of `memory` as exists (up to `limit` bytes, halving on `Overflow`) read-only
/// at `window`; returns the size mapped.
fn map_readable(memory: Selector, window: u64, limit: u64) -> Result<u64, GuestError> {
    let mut size = limit;
    loop {
        match sys::map(memory, OWN, window, 0, size, MemoryRights::READ) {
            Ok(()) => return Ok(size),
            Err(Status::Overflow) if size > 4096 => size /= 2,
            Err(status) => return Err(GuestError::Kernel("map a module", status)),
        }
    }
}

fn bytes(window: u64, size: u64) -> &'static [u8] {
    // SAFETY: `window..window + size` was just mapped readable into this domain and stays
    // mapped for the program's life.
    unsafe { core::slice::from_raw_parts(window as *const u8, size as usize) }
}

/// Guest RAM as the vmm-server sees it.
struct Ram {
    size: u64,
}

impl Ram {
    fn slice(&self) -> &'static mut [u8] {
        // SAFETY: the guest's RAM is mapped read/write at RAM_WINDOW for `size` bytes; the
        // vmm-server is single-threaded and the vCPU is stopped whenever this runs.
        unsafe { core::slice::from_raw_parts_mut(RAM_WINDOW as *mut u8, self.size as usize) }
    }
}

impl GuestMemory for Ram {
    fn read_physical(&self, address: GuestPhys, buffer: &mut [u8]) -> Result<(), MemoryError> {
        let start = address.0 as usize;
        let end = start
            .checked_add(buffer.len())
            .ok_or(MemoryError::Unmapped(address))?;
        let source = self
            .slice()
            .get(start..end)
            .ok_or(MemoryError::Unmapped(address))?;
        buffer.copy_from_slice(source);
        Ok(())
    }
}

/// CPUID and XCR0 of the host CPU (ring 3 may execute CPUID, and XGETBV once the kernel has set
/// CR4.OSXSAVE).
struct HostCpu;

/// XCR0 with only x87 state enabled, its value at reset (SDM Vol. 1 section 13.3).
const XCR0_X87_ONLY: u64 = 1;

impl HostCpuid for HostCpu {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidValues {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidValues {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }

    fn xcr0(&self) -> u64 {
        // XGETBV raises #UD while CR4.OSXSAVE is clear (SDM Vol. 2B XGETBV).
        if self.cpuid(1, 0).ecx & LEAF1_ECX_OSXSAVE == 0 {
            return XCR0_X87_ONLY;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE reports CR4.OSXSAVE set on this CPU, which implies the
        // XSAVE feature `_xgetbv` is compiled for, so XGETBV with ECX = 0 (XCR0) executes in
        // ring 3 without #UD or #GP (SDM Vol. 2B XGETBV); it only reads a register.
        unsafe { core::arch::x86_64::_xgetbv(0) }
    }
}

/// What the guest's run ended with.
pub struct Outcome {
    pub status: u64,
    pub exits: u64,
}

/// Loads and runs guest `index`; returns its outcome.
pub fn run(index: u64, buffer: &mut MessageBuffer) -> Result<Outcome, GuestError> {
    let mapped = map_readable(SYSTEM_DESCRIPTION, DESCRIPTION_WINDOW, 64 * 1024)?;
    let mapped_bytes = bytes(DESCRIPTION_WINDOW, mapped);
    // The module is padded to pages; the header's total length (bytes 16..20) says how much of
    // it is the description.
    let total = mapped_bytes
        .get(16..20)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(GuestError::BadDescription)? as usize;
    let exact = mapped_bytes
        .get(..total)
        .ok_or(GuestError::BadDescription)?;
    let description = sluice_sysdesc::parse(exact).map_err(|_| GuestError::BadDescription)?;
    let guest = description
        .guest(index as usize)
        .ok_or(GuestError::NoSuchGuest(index))?;
    let name = String::from(guest.name);
    let memory = guest.memory_bytes;
    log!(
        "vmm-server: guest {name}: {} MiB, loading the built-in test guest",
        memory >> 20
    );

    let rwx = MemoryRights::READ | MemoryRights::WRITE | MemoryRights::EXECUTE;
    sys::map(
        GUEST_RAM,
        OWN,
        RAM_WINDOW,
        0,
        memory,
        MemoryRights::READ | MemoryRights::WRITE,
    )
    .map_err(kernel("map guest RAM"))?;
    let ram = Ram { size: memory };
    ram.slice().fill(0);
    let image_size = map_readable(GUEST_IMAGE, IMAGE_WINDOW, 4 << 20)?;
    let image = bytes(IMAGE_WINDOW, image_size);
    let executable = Executable::parse(image, 0x1000, memory).map_err(GuestError::BadImage)?;
    for segment in &executable.segments {
        let start = segment.virtual_address as usize;
        let file = image
            .get(segment.file_offset as usize..(segment.file_offset + segment.file_size) as usize)
            .ok_or(GuestError::ImageTooLarge)?;
        ram.slice()
            .get_mut(start..start + file.len())
            .ok_or(GuestError::ImageTooLarge)?
            .copy_from_slice(file);
    }
    write_parameters(&ram, guest.cmdline);

    sys::create_vm(VM).map_err(kernel("create_vm"))?;
    sys::vm_map(GUEST_RAM, VM, 0, 0, memory, rwx).map_err(kernel("vm_map guest RAM"))?;
    sys::create_vcpu(VM, VCPU).map_err(kernel("create_vcpu"))?;
    sys::create_notification(SLEEP).map_err(kernel("create_notification"))?;
    let mut vmm =
        Vmm::new(VmmConfig::standard(&name), HostCpu).map_err(|_| GuestError::BadDescription)?;
    log!(
        "vmm-server: guest {name}: starting at {ENTRY:#x} (cmdline \"{}\")",
        guest.cmdline
    );

    let mut exits = 0u64;
    // With the guest's benchmark mode: the VMM's own instructions per CPUID exit (from the
    // `syscall` of one vcpu_run returning to the next `syscall`, so its system-call wrapper and
    // the reply's encoding included), so `cargo xtask bench` can show the kernel's share.
    let benchmark = guest
        .cmdline
        .split_whitespace()
        .any(|word| word == "probe.mode=bench");
    let (mut cpuid_exits, mut vmm_instructions) = (0u64, 0u64);
    // When the last exit was a CPUID exit: the time-stamp count right after its `syscall`.
    let mut measuring: Option<u64> = None;
    // One exit message for the whole run, decoded in place from the UTCB each time.
    let mut exit = empty_exit();
    send(buffer, &start_state());
    loop {
        let (result, entered, returned) = sys::vcpu_run_timed(VCPU);
        if let Some(previous) = measuring.take() {
            cpuid_exits += 1;
            vmm_instructions += entered.wrapping_sub(previous);
        }
        result.map_err(kernel("vcpu_run"))?;
        buffer
            .read_words(|_, words| decode_exit_into(words, &mut exit))
            .map_err(kernel("read the exit message"))?
            .map_err(|_| GuestError::Kernel("decode the exit message", Status::InvalidArgument))?;
        exits += 1;
        if exit.reason == ExitReason::Preempted {
            vmm.tick(1);
        }
        let mut action = vmm.handle_exit(&exit, &ram);
        while action == ExitAction::WaitForInterrupt {
            let _ = sys::wait(SLEEP, 1);
            vmm.tick(1);
            if let Some(next) = vmm.wake() {
                action = next;
            }
        }
        for line in vmm.take_console_lines() {
            log!("{line}");
        }
        if benchmark && exit.reason == ExitReason::Cpuid {
            measuring = Some(returned);
        }
        match &action {
            ExitAction::Resume(next) => send(buffer, next),
            // Not reached (the loop above waits until the action changes); resumes unchanged.
            ExitAction::WaitForInterrupt => send(buffer, &Reply::default()),
            ExitAction::Stop(report) => {
                log!("vmm-server: guest {name} stopped: {} (rip {:#x}, last exit {:?}, {exits} exits)", report.reason, report.rip, report.last_exit);
                if benchmark && cpuid_exits > 0 {
                    log!(
                        "bench: vm-exit-vmm-share iterations={cpuid_exits} total={vmm_instructions} per={} unit=instructions",
                        vmm_instructions / cpuid_exits
                    );
                }
                let status = match report.reason {
                    vmm_core::StopReason::DebugExit { status } => u64::from(status),
                    _ => 0x1_0000,
                };
                return Ok(Outcome { status, exits });
            }
        }
    }
}

/// Puts `reply` in the UTCB as the input of the next `vcpu_run`, encoded in place. A reply that
/// cannot be encoded (it never happens: vmm-core writes no pending-event group and 64 words
/// hold every reply) goes as an empty message, which changes nothing.
fn send(buffer: &mut MessageBuffer, reply: &Reply) {
    let _ = buffer.write_words(0, |words| reply.to_words(words));
}

/// The parameter block the probe reads at 0x7000 (magic, version, cmdline length, cmdline).
fn write_parameters(ram: &Ram, cmdline: &str) {
    let cmdline = cmdline.as_bytes();
    let length = cmdline.len().min(MAX_CMDLINE);
    let block = &mut ram.slice()[PARAMETERS as usize..PARAMETERS as usize + 16 + length];
    block[0..4].copy_from_slice(&PARAMETER_MAGIC.to_le_bytes());
    block[4..8].copy_from_slice(&1u32.to_le_bytes());
    block[8..12].copy_from_slice(&(length as u32).to_le_bytes());
    block[12..16].copy_from_slice(&0u32.to_le_bytes());
    block[16..16 + length].copy_from_slice(&cmdline[..length]);
}

/// The first reply: real mode at 0000:8000 with flat 64 KiB segments (the rest of the reset
/// state the kernel set when it created the vCPU stays).
fn start_state() -> Reply {
    let code = Segment {
        selector: 0,
        attributes: SegmentAttributes::new(0x9b).unwrap_or_default(),
        limit: 0xffff,
        base: 0,
    };
    let data = Segment {
        selector: 0,
        attributes: SegmentAttributes::new(0x93).unwrap_or_default(),
        limit: 0xffff,
        base: 0,
    };
    let state = VcpuState {
        mtd: Mtd::RIP.union(Mtd::RFLAGS).union(Mtd::SEGMENT_CS_SS),
        rip: ENTRY,
        rflags: 0x2,
        cs: code,
        ss: data,
        ..VcpuState::default()
    };
    Reply {
        state,
        inject: None,
        request_interrupt_window: false,
    }
}
