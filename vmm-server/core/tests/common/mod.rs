//! Shared fixtures for the vmm-core integration tests: vCPU states in each CPU mode, a fake
//! host CPUID and XCR0, a recording bus device and guest RAM built from byte vectors.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use sluice_abi::vcpu::{Segment, SegmentAttributes, VcpuState};
use vmm_core::bus::{AccessError, BusDevice};
use vmm_core::{CpuidValues, HostCpuid, REQUIRED_STATE};

/// 64-bit code segment: type 0xb, S, P, L, G.
pub const CODE64: u16 = 0xa9b;
/// 32-bit code segment: type 0xb, S, P, D, G.
pub const CODE32: u16 = 0xc9b;
/// 16-bit code segment: type 0x3, S, P.
pub const CODE16: u16 = 0x093;

fn code_segment(attributes: u16, base: u64) -> Segment {
    Segment {
        selector: if base == 0 { 8 } else { (base >> 4) as u16 },
        attributes: SegmentAttributes::new(attributes).unwrap(),
        limit: 0xffff_ffff,
        base,
    }
}

/// Long mode with paging, IF set, RIP at `rip`.
pub fn long_mode(rip: u64) -> VcpuState {
    VcpuState {
        mtd: REQUIRED_STATE,
        rip,
        rflags: 0x202,
        cr0: 0x8000_0011,
        cr4: 0x20,
        efer: 0x500,
        cs: code_segment(CODE64, 0),
        ..VcpuState::default()
    }
}

/// 32-bit protected mode without paging.
pub fn protected_mode(rip: u64) -> VcpuState {
    VcpuState {
        cr0: 0x11,
        cr4: 0,
        efer: 0,
        cs: code_segment(CODE32, 0),
        ..long_mode(rip)
    }
}

/// Real mode with CS base `cs_base`.
pub fn real_mode(cs_base: u64, ip: u64) -> VcpuState {
    VcpuState {
        cr0: 0x10,
        cr4: 0,
        efer: 0,
        cs: code_segment(CODE16, cs_base),
        ..long_mode(ip)
    }
}

/// A host whose CPUID reports max leaves 0x20 / 0x8000_0021, a leaf 0xD modelled on a CPU with
/// AMX (Sapphire Rapids: x87, SSE, AVX, AVX-512, PKRU and AMX in XCR0; PT, CET, arch LBR and
/// HWP in IA32_XSS) and every bit of every other leaf set (VMX and SVM included), except the
/// bits that report CR4, which follow `cr4` as on a real CPU.
#[derive(Clone, Copy, Debug)]
pub struct FakeHost {
    /// The XCR0 bits the CPU supports (CPUID.(EAX=0DH,ECX=0):EDX:EAX).
    pub supported_xcr0: u64,
    /// The host's XCR0, as the kernel set it.
    pub xcr0: u64,
    /// The host's CR4, for CPUID.1:ECX.OSXSAVE and CPUID.7:ECX.OSPKE.
    pub cr4: u64,
}

/// x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), PKRU, AMX TILECFG and TILEDATA.
pub const SAPPHIRE_RAPIDS_XCR0: u64 = 0x602e7;
/// x87, SSE, AVX, AVX-512: what a kernel whose save area holds no PKRU or AMX enables.
pub const HOST_XCR0: u64 = 0xe7;
/// The IA32_XSS components of the fake: PT (8), CET user and supervisor (11, 12), arch LBR
/// (15), HWP (16).
pub const SUPERVISOR_COMPONENTS: u32 = 0x1_9900;
/// CPUID.(EAX=0DH,ECX=1):EAX of the fake: XSAVEOPT, XSAVEC, XGETBV ECX=1, XSAVES, XFD.
pub const SUBLEAF1_EAX: u32 = 0x1f;
/// CPUID.(EAX=0DH,ECX=0):ECX of the fake: the XSAVE area size for every supported component.
pub const ALL_COMPONENTS_SIZE: u32 = 0x2b00;

/// CPUID.(EAX=0DH,ECX=n) of the fake's components: (n, size, non-compacted offset, ECX).
const COMPONENTS: [(u32, u32, u32, u32); 12] = [
    (2, 256, 576, 0),
    (5, 64, 1088, 0),
    (6, 512, 1152, 0),
    (7, 1024, 1664, 0),
    (8, 128, 0, 1),
    (9, 8, 2688, 0),
    (11, 16, 0, 1),
    (12, 24, 0, 1),
    (15, 808, 0, 1),
    (16, 8, 0, 1),
    (17, 64, 2752, 2),
    (18, 8192, 2816, 6),
];

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost {
            supported_xcr0: SAPPHIRE_RAPIDS_XCR0,
            xcr0: HOST_XCR0,
            cr4: (1 << 18) | (1 << 22),
        }
    }
}

impl FakeHost {
    /// CPUID.(EAX=0DH,ECX=`subleaf`): a supported component missing from [`COMPONENTS`] gets
    /// 64 bytes at 0x3000.
    fn extended_state(&self, subleaf: u32) -> CpuidValues {
        let component = |n: u32| COMPONENTS.iter().find(|c| c.0 == n).copied();
        match subleaf {
            0 => {
                // EBX: the end of the last component enabled in XCR0 (SDM Vol. 1 section 13.4.1).
                let enabled_end = (2..64)
                    .filter(|n| self.xcr0 & self.supported_xcr0 & (1u64 << n) != 0)
                    .map(|n| component(n).map_or(0x3040, |(_, size, offset, _)| offset + size))
                    .max()
                    .unwrap_or(576);
                CpuidValues {
                    eax: self.supported_xcr0 as u32,
                    ebx: enabled_end,
                    ecx: ALL_COMPONENTS_SIZE,
                    edx: (self.supported_xcr0 >> 32) as u32,
                }
            }
            1 => CpuidValues {
                eax: SUBLEAF1_EAX,
                ebx: 0x2a00,
                ecx: SUPERVISOR_COMPONENTS,
                edx: 0,
            },
            2..=63 => {
                let supported = self.supported_xcr0 | u64::from(SUPERVISOR_COMPONENTS);
                if supported & (1u64 << subleaf) == 0 {
                    return CpuidValues::default();
                }
                let (_, eax, ebx, ecx) = component(subleaf).unwrap_or((subleaf, 64, 0x3000, 0));
                CpuidValues {
                    eax,
                    ebx,
                    ecx,
                    edx: 0,
                }
            }
            _ => CpuidValues::default(),
        }
    }
}

impl HostCpuid for FakeHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidValues {
        let all = CpuidValues {
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0xffff_ffff,
            edx: 0xffff_ffff,
        };
        // Set where `cr4` has `cr4_bit`, else clear: the CPUID bits that report CR4.
        let reflect = |ecx: u32, bit: u32, cr4_bit: u64| {
            if self.cr4 & cr4_bit != 0 {
                ecx | bit
            } else {
                ecx & !bit
            }
        };
        match leaf {
            0 => CpuidValues {
                eax: 0x20,
                ebx: 0x756e_6547,
                ecx: 0x6c65_746e,
                edx: 0x4965_6e69,
            },
            1 => CpuidValues {
                ecx: reflect(all.ecx, 1 << 27, 1 << 18),
                ..all
            },
            7 if subleaf == 0 => CpuidValues {
                ecx: reflect(all.ecx, 1 << 4, 1 << 22),
                ..all
            },
            0xd => self.extended_state(subleaf),
            0x8000_0000 => CpuidValues {
                eax: 0x8000_0021,
                ..CpuidValues::default()
            },
            _ => all,
        }
    }

    fn xcr0(&self) -> u64 {
        self.xcr0
    }
}

/// One access seen by a [`Recorder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traffic {
    Read { offset: u64, width: usize },
    Write { offset: u64, data: Vec<u8> },
}

/// A bus device that answers reads with bytes 0x81, 0x82, ... and records every access.
#[derive(Clone, Default)]
pub struct Recorder(pub Rc<RefCell<Vec<Traffic>>>);

impl BusDevice for Recorder {
    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), AccessError> {
        for (index, byte) in data.iter_mut().enumerate() {
            *byte = 0x81 + index as u8;
        }
        self.0.borrow_mut().push(Traffic::Read {
            offset,
            width: data.len(),
        });
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), AccessError> {
        self.0.borrow_mut().push(Traffic::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

/// Guest RAM of `size` bytes at guest-physical 0 with `code` placed at `at`.
pub fn ram_with(size: usize, at: usize, code: &[u8]) -> Vec<u8> {
    let mut ram = vec![0u8; size];
    ram[at..at + code.len()].copy_from_slice(code);
    ram
}
