//! The test fixture: a boot-information page listing RAM, device memory and modules (a
//! compiled system description and a synthetic ELF executable per program) over a fake
//! physical memory, and helpers that script the servers and run init.

use sluice_abi::boot::{BootCapabilityKind, BootInfo, BOOT_INFO_MAGIC};
use sluice_rt::protocol::Request;
use sluice_sysdesc::{BuiltinGuest, GuestSpec, Kernel as GuestKernel, SystemSpec};
use zerocopy::FromZeros;

use crate::fake::FakeKernel;
use crate::watcher::WatcherEntry;

pub const MIB: u64 = 1 << 20;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Segments of the test programs: (virtual address, file bytes, memory bytes, flags).
pub const SEGMENTS: [(u64, u64, u64, u32); 3] = [
    (0x4000_1000, 0x1800, 0x1800, PF_R | PF_X),
    (0x4000_4000, 0x100, 0x100, PF_R),
    (0x4000_5123, 0x50, 0x3000, PF_R | PF_W),
];
pub const ENTRY: u64 = 0x4000_1010;

/// A minimal ELF64 executable; segment `i`'s file bytes are `0x10 * (i + 1) + (offset % 7)`.
pub fn elf(entry: u64, segments: &[(u64, u64, u64, u32)]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&62u16.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&64u64.to_le_bytes());
    out[54..56].copy_from_slice(&56u16.to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    let mut offset = 64 + 56 * segments.len() as u64;
    let mut data = Vec::new();
    for (index, (vaddr, filesz, memsz, flags)) in segments.iter().enumerate() {
        let mut header = vec![0u8; 56];
        header[..4].copy_from_slice(&1u32.to_le_bytes());
        header[4..8].copy_from_slice(&flags.to_le_bytes());
        header[8..16].copy_from_slice(&offset.to_le_bytes());
        header[16..24].copy_from_slice(&vaddr.to_le_bytes());
        header[32..40].copy_from_slice(&filesz.to_le_bytes());
        header[40..48].copy_from_slice(&memsz.to_le_bytes());
        out.extend_from_slice(&header);
        data.extend((0..*filesz).map(|o| 0x10 * (index as u8 + 1) + (o % 7) as u8));
        offset += filesz;
    }
    out.extend_from_slice(&data);
    out
}

/// The expected file byte at `offset` of segment `index` (see [`elf`]).
pub fn segment_byte(index: usize, offset: u64) -> u8 {
    0x10 * (index as u8 + 1) + (offset % 7) as u8
}

pub fn sysdesc() -> Vec<u8> {
    let guests = [GuestSpec {
        name: "probe",
        memory_bytes: 2 * MIB,
        cpu_mask: 0b10,
        vcpus: 1,
        kernel: GuestKernel::Builtin(BuiltinGuest::Probe),
        cmdline: "console=ttyS0",
    }];
    sysdesc_with("demo", &guests)
}

/// A compiled description of system `name` with `guests` and no devices on a 2-CPU,
/// 512 MiB machine.
pub fn sysdesc_with(name: &str, guests: &[GuestSpec<'_>]) -> Vec<u8> {
    let spec = SystemSpec {
        name,
        machine_memory: 512 * MIB,
        machine_cpus: 2,
        flags: 0,
        guests,
        devices: &[],
    };
    let mut out = vec![0u8; 4096];
    let length = sluice_sysdesc::write(&spec, &mut out).unwrap();
    out.truncate(length);
    out
}

/// The boot: modules, RAM and device memory, as the kernel would list them.
pub struct Fixture {
    pub boot: Box<BootInfo>,
    pub physical: Vec<u8>,
    next_module: u64,
}

pub const RAM: [(u32, u64, u64); 2] = [(30, 8 * MIB, 4 * MIB), (31, 16 * MIB, 8 * MIB)];
pub const DMAR: u64 = 0xfed9_0000;
pub const ECAM: u64 = 0xb000_0000;

impl Fixture {
    pub fn new() -> Fixture {
        let mut boot = Box::new(BootInfo::new_zeroed());
        boot.magic = BOOT_INFO_MAGIC;
        boot.cpus = 2;
        boot.ecam_base = ECAM;
        boot.ecam_start_bus = 0;
        boot.ecam_end_bus = 255;
        boot.dmar_unit = DMAR;
        let mut fixture = Fixture {
            boot,
            physical: vec![0u8; 24 * MIB as usize],
            next_module: MIB,
        };
        for (selector, base, size) in RAM {
            fixture.list(selector, BootCapabilityKind::Ram, base, size, "");
        }
        fixture.list(
            32,
            BootCapabilityKind::DeviceMmio,
            0xa000_0000,
            0x2000_0000,
            "",
        );
        fixture.list(
            33,
            BootCapabilityKind::DeviceMmio,
            0xfec0_0000,
            0x140_0000,
            "",
        );
        fixture.module("sysdesc demo", &sysdesc());
        let program = elf(ENTRY, &SEGMENTS);
        for name in ["iommu-server", "pci-server", "vmm-server", "misbehave"] {
            fixture.module(name, &program);
        }
        fixture
    }

    fn list(&mut self, selector: u32, kind: BootCapabilityKind, base: u64, size: u64, name: &str) {
        let index = self.boot.capability_count as usize;
        let entry = &mut self.boot.capabilities[index];
        entry.selector = selector;
        entry.kind = kind as u32;
        entry.base = base;
        entry.size = size;
        entry.length = size;
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        self.boot.capability_count += 1;
    }

    /// Lists a module (at the next free physical MiB) holding `bytes`.
    pub fn module(&mut self, name: &str, bytes: &[u8]) {
        let base = self.next_module;
        self.next_module += MIB;
        let selector = 16 + self.boot.capability_count;
        let size = (bytes.len() as u64).next_multiple_of(4096).max(4096);
        self.list(selector, BootCapabilityKind::Module, base, size, name);
        let index = self.boot.capability_count as usize - 1;
        self.boot.capabilities[index].length = bytes.len() as u64;
        self.physical[base as usize..base as usize + bytes.len()].copy_from_slice(bytes);
    }

    /// Replaces the bytes of an existing module.
    pub fn replace_module(&mut self, name: &str, bytes: &[u8]) {
        let index = self
            .boot
            .listed()
            .iter()
            .position(|c| c.name().split_whitespace().next() == Some(name))
            .unwrap();
        let entry = &mut self.boot.capabilities[index];
        entry.length = bytes.len() as u64;
        entry.size = (bytes.len() as u64).next_multiple_of(4096).max(4096);
        let base = entry.base as usize;
        self.physical[base..base + bytes.len()].copy_from_slice(bytes);
    }

    pub fn set_cmdline(&mut self, text: &str) {
        self.boot.kernel_cmdline[..text.len()].copy_from_slice(text.as_bytes());
    }

    pub fn kernel(&self) -> FakeKernel {
        FakeKernel::new(&self.boot, self.physical.clone())
    }
}

pub const WATCHER: WatcherEntry = WatcherEntry {
    trampoline: 0x4000_2000,
    function: 0x4000_2100,
};

/// Scripts the three servers' `READY`, then the vmm-server's report that guest 0 passed.
pub fn servers_ready(kernel: &mut FakeKernel) {
    for number in 1..=3 {
        kernel.push_request(number, Request::Ready.encode());
    }
    let done = Request::GuestDone {
        guest: 0,
        status: 0,
        exits: 1,
    };
    kernel.push_request(3, done.encode());
}

/// Runs init on `kernel`; returns the exit code and the log.
pub fn run(kernel: &mut FakeKernel, fixture: &Fixture) -> (u32, String) {
    sluice_rt::host::reset();
    let code = crate::run(kernel, &fixture.boot, WATCHER);
    (code, sluice_rt::host::take_output())
}
