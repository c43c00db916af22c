//! The emulator boot tests `cargo xtask test` runs: which system boots on which emulator with
//! which kernel flags, the serial lines that prove it worked, and the time it may take.
//!
//! A test passes when the run ends the way it expects (clean shutdown, or a reported failure for
//! the deliberate-fault tests) and every marker appeared on the serial console.

/// Which emulator runs a test (docs/testing.md says what each proves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    /// QEMU TCG, q35, SVM+NPT, intel-iommu with interrupt remapping.
    Qemu,
    /// Bochs, VMX+EPT, no IOMMU.
    Bochs,
}

/// How a test expects the run to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `sluice: shutdown: clean`.
    CleanShutdown,
    /// A fatal report (exception or panic) and a non-zero `run` status.
    Failure,
}

/// One boot test.
#[derive(Debug, Clone, Copy)]
pub struct BootTest {
    pub name: &'static str,
    pub emulator: Emulator,
    /// A system manifest under the workspace root; `None` boots the default system.
    pub system: Option<&'static str>,
    /// Extra kernel command-line flags.
    pub cmdline: &'static str,
    pub expect: Expect,
    /// Emulated CPUs, overriding the manifest (`run --smp`).
    pub cpus: Option<u32>,
    /// Lines (substrings) that must appear on the serial console, in any order.
    pub markers: &'static [&'static str],
    pub timeout_secs: u64,
}

/// What `qemu-fpu-isolation` and `bochs-fpu-isolation` require (the same system, one CPU):
/// both guests, whose VMM threads time-share CPU 0, keep their own seeded FPU values.
const FPU_ISOLATION_MARKERS: &[&str] = &[
    "init: boot info: 1 cpus",
    "init: started vmm-server as domain vmm on cpu 0",
    "init: started vmm-server as domain vmm-1 on cpu 0",
    "[left] probe: ok fpu (",
    "[right] probe: ok fpu (",
    "[left] probe: fpu-stress passed (seed \"left\": xmm0-15, mxcsr, fcw kept across 200000 cpuid exits",
    "[right] probe: fpu-stress passed (seed \"right\": xmm0-15, mxcsr, fcw kept across 200000 cpuid exits",
    "init: guests: 2 passed, 0 failed",
];

/// Every boot test, in the order they are reported.
pub const BOOT_TESTS: &[BootTest] = &[
    BootTest {
        name: "qemu-boot-svm-iommu",
        emulator: Emulator::Qemu,
        system: None,
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: None,
        markers: &[
            "sluice: cpu AuthenticAMD svm npt",
            "sluice: iommu dmar units 1 0xfed90000",
            "sluice: pci ecam 0xb0000000",
            "init: started iommu-server as domain iommu",
            "iommu-server: hello from portal 2 (version 1)",
            "pci-server: iommu-server answered hello: version 1",
            "vmm-server: pci-server answered hello: version 1",
            "init: system up: 3 servers ready",
            "[probe] probe: ok long-mode",
            "[probe] probe: ok cpuid",
            "[probe] probe: ok mmio",
            "[probe] probe: ok msr",
            // QEMU's qemu64 CPU model has no XSAVE: only the XMM/MXCSR/FCW part runs.
            "[probe] probe: ok fpu (xmm0-15, mxcsr, fcw kept across 1000 cpuid and 100 port exits; ",
            "[probe] probe: ok timer",
            "[probe] probe: all checks passed",
            "init: guest 0 passed",
        ],
        timeout_secs: 120,
    },
    BootTest {
        name: "qemu-two-guests-one-triple-faults",
        emulator: Emulator::Qemu,
        system: Some("userland/systems/two-guests-triple-fault.toml"),
        cmdline: "",
        expect: Expect::Failure,
        cpus: None,
        markers: &[
            "sluice: smp: 2 CPUs online",
            "init: started vmm-server as domain vmm on cpu 0",
            "init: started vmm-server as domain vmm-1 on cpu 1",
            "[left] probe: all checks passed",
            "[right] probe: triple fault on purpose",
            "vmm-server: guest right stopped: shutdown (rip 0x",
            "init: guest 0 passed",
            "init: guest 1 FAILED",
            "init: guests: 1 passed, 1 failed",
            "sluice: halted: init reported failure",
        ],
        timeout_secs: 180,
    },
    BootTest {
        name: "qemu-wild-guest-contained",
        emulator: Emulator::Qemu,
        system: Some("userland/systems/wild-guest.toml"),
        cmdline: "",
        expect: Expect::Failure,
        cpus: None,
        markers: &[
            "[wild] vmm: unhandled MMIO read at 0xd0000000 (8 bytes): no device",
            "[wild] probe: read of unbacked 0xd0000000 returned 0xffffffffffffffff",
            "[wild] vmm: unhandled MMIO write at 0xd0000000",
            "[wild] probe: jumping into garbage",
            "vmm-server: guest wild stopped",
            "[calm] probe: all checks passed",
            "init: guests: 1 passed, 1 failed",
            "sluice: halted: init reported failure",
        ],
        timeout_secs: 180,
    },
    BootTest {
        name: "qemu-smp2-misbehaving-program",
        emulator: Emulator::Qemu,
        system: None,
        cmdline: "init.misbehave",
        expect: Expect::CleanShutdown,
        cpus: Some(2),
        markers: &[
            "sluice: smp: 2 CPUs online",
            "misbehave: debug_write of a kernel address: BadAddress",
            "sluice: fault: domain misbeh-2 thread",
            "sluice: fault: domain misbeh-3 thread",
            "#PF (page fault) rip=",
            "addr=0x555500000000",
            "sluice: fault: domain misbeh-4 thread",
            "#GP (general protection)",
            "misbehave: io_allow of port 0x80 accepted",
            "misbehave: wrote port 0x80; reading port 0x60, which was not granted",
            "sluice: fault: domain misbeh-5 thread",
            // Mode 7: a vCPU run, its capability changed, run again after each change; every
            // run must give what the capability then held (the kernel's per-CPU run-lookup
            // cache must never serve a stale lookup).
            "misbehave: vcpu step 1 passed: selector 11 ran twice in a row",
            "misbehave: vcpu step 2 passed: the copy without RUN (selector 12) was refused MissingRight",
            "misbehave: vcpu step 3 passed: after delete, selector 11 was refused EmptySlot twice",
            "misbehave: vcpu step 4 passed: the new vCPU at selector 11 ran from the reset vector twice",
            "misbehave: vcpu step 5 passed: with the VM's capability revoked the vCPU still ran",
            "misbehave: vcpu step 6 passed: exit state per reason",
            "init: misbehave mode 7 reported: vcpu capability lifecycle: all 6 steps passed",
            "init: misbehaving program: 4 faults reported, system still running",
            "init: system up: 3 servers ready",
            // The spinner keeps CPU 1 in user mode: teardowns on CPU 0 must wait for its flush.
            "misbehave: spinning in user mode",
            "sluice: tlb shootdown: waited for CPU 1",
        ],
        timeout_secs: 180,
    },
    BootTest {
        name: "bochs-boot-vmx-ept",
        emulator: Emulator::Bochs,
        system: None,
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: None,
        markers: &[
            "sluice: cpu GenuineIntel vmx ept vpid ug",
            "init: system up: 3 servers ready",
            "[probe] probe: ok long-mode",
            "[probe] probe: ok mmio",
            // Bochs' corei7_skylake_x has XSAVE and AVX: the guest's XSETBVs reach the kernel.
            "[probe] probe: ok fpu (xmm0-15, mxcsr, fcw kept across 1300 cpuid and 130 port exits; xsave: ",
            "xsetbv 0x1 and 0x3 accepted, 0x2, xcr1 and 2 more refused #GP(0), xcr0 restored, ymm0-15 upper halves kept)",
            "[probe] probe: ok timer",
            "[probe] probe: all checks passed",
            "init: guest 0 passed",
        ],
        timeout_secs: 240,
    },
    BootTest {
        // The vCPU paths of misbehave mode 7 (the reused run lookups, the exit state per
        // reason) on VMX: the lifecycle steps must pass there as on SVM.
        name: "bochs-vmx-vcpu-lifecycle",
        emulator: Emulator::Bochs,
        system: None,
        cmdline: "init.misbehave",
        expect: Expect::CleanShutdown,
        cpus: None,
        markers: &[
            "sluice: cpu GenuineIntel vmx ept vpid ug",
            "misbehave: vcpu step 1 passed: selector 11 ran twice in a row",
            "misbehave: vcpu step 3 passed: after delete, selector 11 was refused EmptySlot twice",
            "misbehave: vcpu step 4 passed: the new vCPU at selector 11 ran from the reset vector twice",
            "misbehave: vcpu step 6 passed: exit state per reason",
            "init: misbehave mode 7 reported: vcpu capability lifecycle: all 6 steps passed",
            "init: system up: 3 servers ready",
        ],
        timeout_secs: 240,
    },
    BootTest {
        // Two guests time-share CPU 0 (one CPU: init puts the guest of the missing CPU 1 on
        // CPU 0), each holding its own seeded XMM/MXCSR/FCW values through 200,000 CPUID exits;
        // one guest's values reaching the other fails the guest that sees them.
        name: "qemu-fpu-isolation",
        emulator: Emulator::Qemu,
        system: Some("userland/systems/fpu-isolation.toml"),
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: Some(1),
        markers: FPU_ISOLATION_MARKERS,
        timeout_secs: 120,
    },
    BootTest {
        // The same on VMX, where the guests also have XSAVE and AVX.
        name: "bochs-fpu-isolation",
        emulator: Emulator::Bochs,
        system: Some("userland/systems/fpu-isolation.toml"),
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: Some(1),
        markers: FPU_ISOLATION_MARKERS,
        timeout_secs: 240,
    },
    BootTest {
        name: "qemu-page-fault-report",
        emulator: Emulator::Qemu,
        system: None,
        cmdline: "test-fault=pf",
        expect: Expect::Failure,
        cpus: None,
        markers: &[
            "sluice: EXCEPTION #PF (page fault, vector 14) error=0x0",
            "cr2=0x00007fffdead0000",
            "  rax=",
            "sluice: halted: fatal exception",
        ],
        timeout_secs: 120,
    },
    BootTest {
        name: "qemu-invalid-opcode-report",
        emulator: Emulator::Qemu,
        system: None,
        cmdline: "test-fault=ud",
        expect: Expect::Failure,
        cpus: None,
        markers: &[
            "sluice: EXCEPTION #UD (invalid opcode, vector 6)",
            "sluice: halted: fatal exception",
        ],
        timeout_secs: 120,
    },
    BootTest {
        name: "qemu-dma-isolation",
        emulator: Emulator::Qemu,
        system: Some("userland/systems/dma-isolation.toml"),
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: None,
        markers: &[
            // VT-d up with interrupt remapping, every endpoint quarantined.
            "interrupt remapping on, quarantine domain ready, translation on",
            "pci-server: 13 endpoints in the IOMMU quarantine domain",
            // The listing: switch, PCIe-to-PCI bridge alias, multi-function slot, SR-IOV, edu.
            "pci-server: 0000:03:00.0 8086:10d3 Ethernet controller [0200] rev 00",
            "pci-server: 0000:06:01.0 8086:100e Ethernet controller [0200] rev 03",
            "pci-server:     iommu group: 9, dma aliases: 06:00.0",
            "pci-server:     reset: secondary bus reset via 05:00.0, owner: unassigned",
            "pci-server:     reset: secondary bus reset via 00:03.0, owner: unassigned",
            "pci-server:     reset: PM D3hot->D0, owner: unassigned",
            "pci-server:     header: endpoint, virtual function of 08:00.0",
            "pci-server:     reset: FLR, owner: unassigned",
            "pci-server: 0000:09:00.0 1234:11e8 Unclassified device [00ff] rev 10",
            "pci-server:     reset: secondary bus reset via 00:05.0, owner: unassigned",
            // The driver's device: claimed through quarantine and reset, then the checks.
            "pci-server: 09:00.0 assigned to owner 64: reset by secondary bus reset via 00:05.0",
            "dma-test: check 1 passed",
            "pci-server: 09:00.0 MSI programmed in remappable format",
            "dma-test: check 2 passed",
            "iommu: fault bdf=09:00.0 addr=0x200000 kind=write reason=0x05 (write not permitted)",
            "iommu-server: fault event interrupt: 1 fault record(s) read and cleared",
            "dma-test: check 3 passed",
            "the canary is unchanged",
            // INTx through interrupt remapping: routed by the pci-server (swizzle + q35/ICH9
            // table), an IRTE verifying the IOAPIC, delivered, masked until acknowledged.
            "pci-server: 09:00.0 INTA -> 00:05 INTA (1 bridge) -> PIRQF -> GSI 21 (q35/ICH9 platform table); IOAPIC pin in remappable format through IRTE",
            "level-triggered, source id ff:00.0 verified, for owner 64",
            // QEMU passes compatibility-format interrupts through despite IR, so the kernel's
            // read-back of the redirection entry is what shows the pin took the remappable one.
            "sluice: IOAPIC pin 21 in remappable format: IRTE 1, vector 0x45",
            "dma-test: check 4 passed: INTx of 09:00.0 (pin 1, via 00:05 pin 1) arrived on GSI 21",
            "stayed masked until acknowledged, and the level held meanwhile arrived on unmask; a second route was refused",
            "dma-test: all 4 checks passed",
            "init: guest 0 passed",
            "init: guests: 2 passed, 0 failed",
        ],
        timeout_secs: 120,
    },
    BootTest {
        name: "qemu-msix-remapped",
        emulator: Emulator::Qemu,
        system: Some("userland/systems/msix.toml"),
        cmdline: "",
        expect: Expect::CleanShutdown,
        cpus: None,
        markers: &[
            "interrupt remapping on, quarantine domain ready, translation on",
            "pci-server:     caps: PM(NoSoftRst-) MSI(64-bit, 1 vec) MSI-X(5 vec, table BAR3+0x0, PBA BAR3+0x2000)",
            "pci-server: 01:00.0 assigned to owner 64",
            // Every claim leaves a clean table (and so does every release).
            "pci-server: 01:00.0 MSI-X table cleared: 5 entries masked, addresses and data zeroed, MSI-X off (table at 0xfe680000 in BAR3)",
            "dma-test: 01:00.0 claimed: e1000e 8086:10d3",
            // The pci-server programs entry 2 through its own mapping of BAR3.
            "pci-server: 01:00.0 MSI-X entry 2 of 5 programmed in remappable format: address 0xfee00010 data 0x0 (IRTE 0), table at 0xfe680000 in BAR3, MSI-X on, INTx off",
            // The driver reads it back through the pci-server (MsixRead) and config space.
            "dma-test: check 1 passed: MSI-X entry 2 of 5 (BAR3+0x20) reads back address 0xfee00010 data 0x0 unmasked, the message of IRTE 0",
            "(enabled, function unmasked), MSI off, command 0x0507 (INTx disabled); the other 4 entries stay masked",
            // The table and PBA pages are never handed out: BAR3 comes in the two other pages.
            "dma-test: table and pending bits read through the pci-server (PBA dword 0 = 0x0); BAR3 comes in 2 part(s) without the table and PBA pages (part 0: 0x1000+0x1000)",
            // The NIC raises the interrupt; it arrives through the IRTE.
            "dma-test: check 2 passed: the e1000e raised cause RXQ0 (ICS), IVAR sent it to MSI-X entry 2, and the message (address 0xfee00010 data 0x0) arrived on line 25 through IRTE 0, which verifies source-id 01:00.0",
            // Forged IRTE handles: refused by the pci-server itself, logged as denied writes.
            "pci: denied MSI-X write bdf=01:00.0 entry=2 irte=100 by owner 64: IRTE 100 is not allocated and programmed",
            "pci: denied MSI-X write bdf=01:00.0 entry=2 irte=1 by owner 64: IRTE 1 is not allocated and programmed",
            "dma-test: check 3 passed: MSI-X entry 5 of a 5-entry table was refused (vector out of range); IRTE 100 (allocated by nobody) and IRTE 1 (allocated, never programmed) were refused (IRTE not the owner's for this device); entry 2 is unchanged",
            // Release and claim again: the old entry is gone, a new one works.
            "pci-server: 01:00.0 released by owner 64, back in quarantine",
            "pci-server: 01:00.0 MSI-X entry 4 of 5 programmed in remappable format: address 0xfee00030 data 0x0 (IRTE 1), table at 0xfe680000 in BAR3, MSI-X on, INTx off",
            "dma-test: check 4 passed: released and claimed again, entry 2 reads back masked and cleared (address 0x0:00000000 data 0x0 control 0x1), MSI-X off; entry 4 programmed with IRTE 1 (0xfee00030), the RXQ0 interrupt arrived on line 25 through it",
            "dma-test: all 4 checks passed",
            "init: guest 0 passed (status 0x0, 4 exits)",
            "init: guests: 1 passed, 0 failed",
        ],
        timeout_secs: 60,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_test_checks_something() {
        for (i, a) in BOOT_TESTS.iter().enumerate() {
            assert!(!a.markers.is_empty(), "{} checks no marker", a.name);
            assert!(a.timeout_secs > 0);
            assert!(
                BOOT_TESTS[i + 1..].iter().all(|b| b.name != a.name),
                "duplicate {}",
                a.name
            );
        }
    }
}
