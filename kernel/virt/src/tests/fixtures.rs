//! Shared fixtures: a fake VMCS, a long-mode guest in VMX and SVM form, Skylake-like fixed
//! bits, and the wire round trip every decoded message must survive.
use std::collections::HashMap;

use sluice_abi::vcpu::{ExitMessage, Gpr, MAX_EXIT_WORDS};

use crate::state::SavedRegisters;
use crate::svm::{Vmcb, VmcbField, VmcbSegment, VMCB_SIZE};
use crate::vmx::controls::{ControlRegisterPolicy, FixedBits};
use crate::vmx::{VmcsField, VmcsRead};

/// A VMCS as a map; absent fields fail to read like a failed VMREAD.
#[derive(Clone, Debug, Default)]
pub struct FakeVmcs {
    pub fields: HashMap<VmcsField, u64>,
}

impl VmcsRead for FakeVmcs {
    fn read(&self, field: VmcsField) -> Option<u64> {
        self.fields.get(&field).copied()
    }
}

impl FakeVmcs {
    pub fn set(&mut self, field: VmcsField, value: u64) -> &mut Self {
        self.fields.insert(field, value);
        self
    }
    pub fn get(&self, field: VmcsField) -> u64 {
        self.fields.get(&field).copied().unwrap_or(0)
    }
}

/// Skylake's IA32_VMX_CR0_FIXED0/1 and CR4_FIXED0/1.
pub const CR0_FIXED: FixedBits = FixedBits {
    fixed0: 0x8000_0021,
    fixed1: 0xffff_ffff,
};
pub const CR4_FIXED: FixedBits = FixedBits {
    fixed0: 0x2000,
    fixed1: 0x0037_27ff,
};

pub fn policy() -> ControlRegisterPolicy {
    ControlRegisterPolicy::new(CR0_FIXED, CR4_FIXED, true)
}

/// Guest CR0 as the guest set it: PG | WP | ET | PE, NE clear (VMX forces NE in the real CR0).
pub const GUEST_CR0: u64 = 0x8001_0011;
/// Guest CR4: PAE | PGE.
pub const GUEST_CR4: u64 = 0xa0;
/// SCE | LME | LMA | NXE.
pub const GUEST_EFER: u64 = 0xd01;

pub fn saved_registers() -> SavedRegisters {
    let mut saved = SavedRegisters::default();
    for (index, register) in Gpr::ALL.into_iter().enumerate() {
        saved.gpr.set(register, 0x1111_0000 + index as u64);
    }
    saved.cr2 = 0xdead_0000;
    saved
}

/// A 64-bit guest stopped at 0x10_0000 with interrupts enabled, as the VMCS holds it.
pub fn long_mode_vmcs() -> FakeVmcs {
    use VmcsField::*;
    let policy = policy();
    let mut vmcs = FakeVmcs::default();
    vmcs.set(GuestRsp, 0x7ff0)
        .set(GuestRip, 0x10_0000)
        .set(GuestRflags, 0x202)
        .set(GuestCr0, policy.guest_cr0(GUEST_CR0))
        .set(Cr0ReadShadow, GUEST_CR0)
        .set(Cr0GuestHostMask, policy.cr0_mask())
        .set(GuestCr3, 0x1000)
        .set(GuestCr4, policy.guest_cr4(GUEST_CR4))
        .set(Cr4ReadShadow, GUEST_CR4)
        .set(Cr4GuestHostMask, policy.cr4_mask())
        .set(GuestEfer, GUEST_EFER)
        .set(GuestCsSelector, 0x08)
        .set(GuestCsAccessRights, 0xa09b)
        .set(GuestCsLimit, 0xffff_ffff)
        .set(GuestCsBase, 0)
        .set(GuestSsSelector, 0x10)
        .set(GuestSsAccessRights, 0xc093)
        .set(GuestSsLimit, 0xffff_ffff)
        .set(GuestSsBase, 0)
        .set(GuestInterruptibility, 0)
        .set(GuestActivityState, 0)
        .set(IdtVectoringInfo, 0)
        .set(PrimaryProcessorControls, 0x9600_6172)
        .set(EntryControls, 0x0000_83fb)
        .set(TscOffset, 0x1234);
    for segment in [
        crate::vmx::GuestSegment::Ds,
        crate::vmx::GuestSegment::Es,
        crate::vmx::GuestSegment::Fs,
        crate::vmx::GuestSegment::Gs,
        crate::vmx::GuestSegment::Ldtr,
        crate::vmx::GuestSegment::Tr,
    ] {
        let fields = segment.fields();
        vmcs.set(fields.selector, 0)
            .set(fields.access_rights, 0x1_0000)
            .set(fields.limit, 0)
            .set(fields.base, 0);
    }
    vmcs.set(GuestGdtrBase, 0x5000)
        .set(GuestGdtrLimit, 0x27)
        .set(GuestIdtrBase, 0x6000)
        .set(GuestIdtrLimit, 0xfff);
    vmcs
}

/// The same guest as a VMCB.
pub fn long_mode_vmcb() -> Vmcb<[u8; VMCB_SIZE]> {
    let mut vmcb = Vmcb::new([0u8; VMCB_SIZE]);
    vmcb.write(VmcbField::RAX, 0x1111_0000);
    vmcb.write(VmcbField::RSP, 0x7ff0);
    vmcb.write(VmcbField::RIP, 0x10_0000);
    vmcb.write(VmcbField::RFLAGS, 0x202);
    vmcb.write(VmcbField::CR0, GUEST_CR0);
    vmcb.write(VmcbField::CR2, 0xdead_0000);
    vmcb.write(VmcbField::CR3, 0x1000);
    vmcb.write(VmcbField::CR4, GUEST_CR4);
    vmcb.write(VmcbField::EFER, GUEST_EFER | 1 << 12);
    for (segment, selector, attributes) in
        [(VmcbSegment::Cs, 8, 0xa9b), (VmcbSegment::Ss, 0x10, 0xc93)]
    {
        vmcb.write(segment.selector(), selector);
        vmcb.write(segment.attributes(), attributes);
        vmcb.write(segment.limit(), 0xffff_ffff);
    }
    vmcb.write(VmcbSegment::Gdtr.base(), 0x5000);
    vmcb.write(VmcbSegment::Gdtr.limit(), 0x27);
    vmcb.write(VmcbSegment::Idtr.base(), 0x6000);
    vmcb.write(VmcbSegment::Idtr.limit(), 0xfff);
    vmcb.write(VmcbField::TSC_OFFSET, 0x1234);
    vmcb
}

/// Encodes and decodes `exit`, asserting the wire format reproduces it exactly.
pub fn assert_round_trip(exit: &ExitMessage) {
    let mut words = [0u64; MAX_EXIT_WORDS];
    let count = exit.to_words(&mut words).expect("a decoded exit encodes");
    assert_eq!(ExitMessage::from_words(&words[..count]), Ok(*exit));
}
