//! Shared fixtures for the vmm-core integration tests: vCPU states in each CPU mode, a fake
//! host CPUID, a recording bus device and guest RAM built from byte vectors.
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

/// A host CPUID that reports VMX, SVM and everything else set, and max leaves 0x20 / 0x8000_0021.
pub struct FakeHost;

impl HostCpuid for FakeHost {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidValues {
        match leaf {
            0 => CpuidValues {
                eax: 0x20,
                ebx: 0x756e_6547,
                ecx: 0x6c65_746e,
                edx: 0x4965_6e69,
            },
            0x8000_0000 => CpuidValues {
                eax: 0x8000_0021,
                ..CpuidValues::default()
            },
            _ => CpuidValues {
                eax: 0xffff_ffff,
                ebx: 0xffff_ffff,
                ecx: 0xffff_ffff,
                edx: 0xffff_ffff,
            },
        }
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
