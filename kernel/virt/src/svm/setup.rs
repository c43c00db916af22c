//! The control area of a fresh Sluice VMCB: intercepts, permission maps, ASID and nested
//! paging (APM Vol. 2 sections 15.5-15.11, 15.25).
use core::borrow::{Borrow, BorrowMut};

use super::vmcb::{InterceptVector3, InterceptVector4, Vmcb, VmcbField, NP_ENABLE, VMCB_SIZE};
use crate::address::HostPhys;

/// Intercept vector 3 of every Sluice guest: physical interrupts, NMIs, SMIs and INITs return
/// to the host; CPUID, HLT, port I/O (through the IOPM), MSRs (through the MSRPM), task
/// switches, INVD and shutdown reach the kernel.
pub const INTERCEPTS_3: InterceptVector3 = InterceptVector3::INTR
    .union(InterceptVector3::NMI)
    .union(InterceptVector3::SMI)
    .union(InterceptVector3::INIT)
    .union(InterceptVector3::CPUID)
    .union(InterceptVector3::INVD)
    .union(InterceptVector3::HLT)
    .union(InterceptVector3::IOIO_PROT)
    .union(InterceptVector3::MSR_PROT)
    .union(InterceptVector3::TASK_SWITCH)
    .union(InterceptVector3::SHUTDOWN);

/// Intercept vector 4: every SVM instruction (VMRUN must be intercepted or VMRUN fails), and
/// XSETBV, which the kernel checks against the host's XCR0 (`kernel_virt::xsave`).
pub const INTERCEPTS_4: InterceptVector4 = InterceptVector4::VMRUN
    .union(InterceptVector4::XSETBV)
    .union(InterceptVector4::VMMCALL)
    .union(InterceptVector4::VMLOAD)
    .union(InterceptVector4::VMSAVE)
    .union(InterceptVector4::STGI)
    .union(InterceptVector4::CLGI)
    .union(InterceptVector4::SKINIT);

/// The power-on PAT (APM Vol. 2 section 7.8.1), the guest's PAT at reset.
pub const POWER_ON_PAT: u64 = 0x0007_0406_0007_0406;

/// Per-vCPU inputs of the control area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlSetup {
    /// I/O permission map (12 KiB, physically contiguous, 4 KiB aligned).
    pub io_permission_map: HostPhys,
    /// MSR permission map (8 KiB, physically contiguous, 4 KiB aligned).
    pub msr_permission_map: HostPhys,
    /// Guest ASID (never 0).
    pub asid: u32,
    /// N_CR3: the NPT root (`NptTables::nested_cr3`).
    pub nested_cr3: u64,
    /// Exception vectors to intercept (bit n = vector n).
    pub exceptions: u32,
}

/// Writes the control area and the guest PAT, and marks nothing clean.
pub fn configure<B: BorrowMut<[u8; VMCB_SIZE]> + Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &mut Vmcb<B>,
    setup: &ControlSetup,
) {
    vmcb.write(VmcbField::INTERCEPT_EXCEPTIONS, u64::from(setup.exceptions));
    vmcb.write(
        VmcbField::INTERCEPT_VECTOR_3,
        u64::from(INTERCEPTS_3.bits()),
    );
    vmcb.write(
        VmcbField::INTERCEPT_VECTOR_4,
        u64::from(INTERCEPTS_4.bits()),
    );
    vmcb.write(VmcbField::IOPM_BASE, setup.io_permission_map.0);
    vmcb.write(VmcbField::MSRPM_BASE, setup.msr_permission_map.0);
    vmcb.write(VmcbField::GUEST_ASID, u64::from(setup.asid));
    vmcb.write(VmcbField::NESTED_PAGING_CONTROL, NP_ENABLE);
    vmcb.write(VmcbField::NESTED_CR3, setup.nested_cr3);
    vmcb.write(VmcbField::GUEST_PAT, POWER_ON_PAT);
    vmcb.set_clean_bits(super::CleanBits::empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svm::CleanBits;

    #[test]
    fn configure_sets_intercepts_maps_asid_and_nested_paging() {
        let mut vmcb = Vmcb::new([0xffu8; VMCB_SIZE]);
        configure(
            &mut vmcb,
            &ControlSetup {
                io_permission_map: HostPhys(0x20_0000),
                msr_permission_map: HostPhys(0x20_3000),
                asid: 3,
                nested_cr3: 0x30_0000,
                exceptions: 1 << 18,
            },
        );
        let vector3 =
            InterceptVector3::from_bits_retain(vmcb.read(VmcbField::INTERCEPT_VECTOR_3) as u32);
        assert!(vector3.contains(
            InterceptVector3::CPUID | InterceptVector3::HLT | InterceptVector3::SHUTDOWN
        ));
        assert!(
            !vector3.contains(InterceptVector3::VINTR),
            "the window is armed per reply"
        );
        assert_eq!(
            vmcb.read(VmcbField::INTERCEPT_VECTOR_4) & 1,
            1,
            "VMRUN intercepted"
        );
        assert_eq!(vmcb.read(VmcbField::GUEST_ASID), 3);
        assert_eq!(vmcb.read(VmcbField::NESTED_PAGING_CONTROL), NP_ENABLE);
        assert_eq!(vmcb.read(VmcbField::NESTED_CR3), 0x30_0000);
        assert_eq!(vmcb.read(VmcbField::INTERCEPT_EXCEPTIONS), 1 << 18);
        assert_eq!(vmcb.clean_bits(), CleanBits::empty());
    }
}
