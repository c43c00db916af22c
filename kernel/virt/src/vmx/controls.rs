//! VMX capability MSRs and what they allow: adjusting the controls the backend wants against
//! the allowed-0 / allowed-1 settings (SDM Vol. 3D Appendix A.3-A.5), and the CR0 / CR4 bits
//! fixed in VMX operation (Appendix A.7-A.8) with the unrestricted-guest exception for CR0.PE
//! and CR0.PG.
//!
//! The kernel reads the MSRs once per CPU through [`VmxCapabilities::read`] (its closure runs
//! RDMSR); everything else here is arithmetic on the values.
use core::fmt;

use bitflags::Flags;

use super::control_bits::{
    EntryControls, ExitControls, PinBasedControls, PrimaryProcessorControls,
    SecondaryProcessorControls,
};
use super::fields::VmcsField;

/// VMX capability MSR indices (SDM Vol. 4 Table 2-2; Vol. 3D Appendix A).
pub mod msr {
    /// IA32_VMX_BASIC.
    pub const BASIC: u32 = 0x480;
    /// IA32_VMX_PINBASED_CTLS.
    pub const PINBASED_CTLS: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub const PROCBASED_CTLS: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub const EXIT_CTLS: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub const ENTRY_CTLS: u32 = 0x484;
    /// IA32_VMX_MISC.
    pub const MISC: u32 = 0x485;
    /// IA32_VMX_CR0_FIXED0.
    pub const CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1.
    pub const CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0.
    pub const CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1.
    pub const CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2.
    pub const PROCBASED_CTLS2: u32 = 0x48b;
    /// IA32_VMX_EPT_VPID_CAP.
    pub const EPT_VPID_CAP: u32 = 0x48c;
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub const TRUE_PINBASED_CTLS: u32 = 0x48d;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub const TRUE_PROCBASED_CTLS: u32 = 0x48e;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub const TRUE_EXIT_CTLS: u32 = 0x48f;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub const TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist (SDM Vol. 3D Appendix A.1).
const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
/// CR0.PE and CR0.PG (SDM Vol. 3A section 2.5).
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;

/// Which control field a capability MSR describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlField {
    /// Pin-based VM-execution controls.
    PinBased,
    /// Primary processor-based VM-execution controls.
    PrimaryProcessor,
    /// Secondary processor-based VM-execution controls.
    SecondaryProcessor,
    /// VM-exit controls.
    Exit,
    /// VM-entry controls.
    Entry,
}

impl ControlField {
    fn name(self) -> &'static str {
        match self {
            ControlField::PinBased => "pin-based controls",
            ControlField::PrimaryProcessor => "primary processor-based controls",
            ControlField::SecondaryProcessor => "secondary processor-based controls",
            ControlField::Exit => "VM-exit controls",
            ControlField::Entry => "VM-entry controls",
        }
    }
}

/// Why the controls the backend needs cannot be used on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// Required bits whose 1-setting the CPU does not allow.
    Unsupported {
        /// The control field.
        field: ControlField,
        /// The required-but-unsupported bits.
        bits: u32,
    },
    /// The capability MSR demands a 1 where it also forbids one (a broken MSR value).
    ContradictoryCapability {
        /// The control field.
        field: ControlField,
        /// Bits required to be 1 and forbidden to be 1.
        bits: u32,
    },
    /// The requested combination breaks a VM-entry rule (SDM Vol. 3C section 27.2.1.1).
    Inconsistent(&'static str),
}

fn write_names<F: Flags<Bits = u32>>(f: &mut fmt::Formatter<'_>, bits: u32) -> fmt::Result {
    let flags = F::from_bits_retain(bits);
    let mut first = true;
    for (name, _) in flags.iter_names() {
        write!(f, "{}{name}", if first { "" } else { " | " })?;
        first = false;
    }
    let unnamed = bits & !F::all().bits();
    if unnamed != 0 {
        write!(f, "{}{unnamed:#x}", if first { "" } else { " | " })?;
    }
    Ok(())
}

fn write_bits(f: &mut fmt::Formatter<'_>, field: ControlField, bits: u32) -> fmt::Result {
    match field {
        ControlField::PinBased => write_names::<PinBasedControls>(f, bits),
        ControlField::PrimaryProcessor => write_names::<PrimaryProcessorControls>(f, bits),
        ControlField::SecondaryProcessor => write_names::<SecondaryProcessorControls>(f, bits),
        ControlField::Exit => write_names::<ExitControls>(f, bits),
        ControlField::Entry => write_names::<EntryControls>(f, bits),
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ControlError::Unsupported { field, bits } => {
                write!(
                    f,
                    "{}: required but unsupported by this CPU: ",
                    field.name()
                )?;
                write_bits(f, field, bits)
            }
            ControlError::ContradictoryCapability { field, bits } => {
                write!(f, "{}: capability MSR requires and forbids ", field.name())?;
                write_bits(f, field, bits)
            }
            ControlError::Inconsistent(rule) => write!(f, "inconsistent VMX controls: {rule}"),
        }
    }
}

/// One allowed-0 / allowed-1 capability MSR: bits 31:0 are the controls that must be 1, bits
/// 63:32 the controls that may be 1 (SDM Vol. 3D Appendix A.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowedSettings(pub u64);

impl AllowedSettings {
    /// Controls that must be 1 (allowed 0-settings: a 1 bit means 0 is not allowed).
    pub const fn must_be_one(self) -> u32 {
        self.0 as u32
    }
    /// Controls that may be 1 (allowed 1-settings).
    pub const fn may_be_one(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The value to write: every `required` bit (or an error naming those the CPU cannot set),
    /// the `optional` bits it can set, and the bits it forces to 1.
    pub fn adjust(
        self,
        field: ControlField,
        required: u32,
        optional: u32,
    ) -> Result<u32, ControlError> {
        let contradictory = self.must_be_one() & !self.may_be_one();
        if contradictory != 0 {
            return Err(ControlError::ContradictoryCapability {
                field,
                bits: contradictory,
            });
        }
        let unsupported = required & !self.may_be_one();
        if unsupported != 0 {
            return Err(ControlError::Unsupported {
                field,
                bits: unsupported,
            });
        }
        Ok(required | (optional & self.may_be_one()) | self.must_be_one())
    }
    /// Whether the CPU allows `bits` to be 1.
    pub const fn allows(self, bits: u32) -> bool {
        bits & !self.may_be_one() == 0
    }
}

/// CR0 or CR4 bits fixed in VMX operation: a bit set in FIXED0 must be 1, a bit clear in FIXED1
/// must be 0 (SDM Vol. 3D Appendix A.7, A.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedBits {
    /// IA32_VMX_CRx_FIXED0.
    pub fixed0: u64,
    /// IA32_VMX_CRx_FIXED1.
    pub fixed1: u64,
}

impl FixedBits {
    /// `value` with the fixed bits forced.
    pub const fn apply(self, value: u64) -> u64 {
        (value | self.fixed0) & self.fixed1
    }
    /// Bits of `value` that break the rule (0 = allowed).
    pub const fn violations(self, value: u64) -> u64 {
        (self.fixed0 & !value) | (value & !self.fixed1)
    }
    /// Bits the host must own through the guest/host mask: every fixed bit.
    pub const fn fixed(self) -> u64 {
        self.fixed0 | !self.fixed1
    }
}

/// How the guest's CR0 and CR4 are virtualized: the value the hardware runs with has the fixed
/// bits forced; the guest reads its own value from the read shadow for the bits the guest/host
/// mask gives to the host (SDM Vol. 3C section 26.3, 25.6.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRegisterPolicy {
    /// CR0 fixed bits, with PE and PG released under unrestricted guest.
    pub cr0: FixedBits,
    /// CR4 fixed bits (CR4.VMXE is among them).
    pub cr4: FixedBits,
    /// Unrestricted guest is in use.
    pub unrestricted_guest: bool,
}

impl ControlRegisterPolicy {
    /// The policy for these MSR values.
    pub const fn new(cr0: FixedBits, cr4: FixedBits, unrestricted_guest: bool) -> Self {
        let cr0 = if unrestricted_guest {
            // SDM Vol. 3C section 27.3.1.1: with unrestricted guest, PE and PG may be 0.
            FixedBits {
                fixed0: cr0.fixed0 & !(CR0_PE | CR0_PG),
                fixed1: cr0.fixed1 | CR0_PE | CR0_PG,
            }
        } else {
            cr0
        };
        ControlRegisterPolicy {
            cr0,
            cr4,
            unrestricted_guest,
        }
    }
    /// The CR0 the hardware runs with for the guest value `visible` (GUEST_CR0).
    pub const fn guest_cr0(&self, visible: u64) -> u64 {
        self.cr0.apply(visible)
    }
    /// The CR4 the hardware runs with for the guest value `visible` (GUEST_CR4).
    pub const fn guest_cr4(&self, visible: u64) -> u64 {
        self.cr4.apply(visible)
    }
    /// CR0 guest/host mask: the fixed bits.
    pub const fn cr0_mask(&self) -> u64 {
        self.cr0.fixed()
    }
    /// CR4 guest/host mask: the fixed bits.
    pub const fn cr4_mask(&self) -> u64 {
        self.cr4.fixed()
    }
    /// The value the guest sees: host-owned bits from the read shadow, the rest from the real
    /// register (SDM Vol. 3C section 26.3).
    pub const fn visible(actual: u64, shadow: u64, mask: u64) -> u64 {
        (actual & !mask) | (shadow & mask)
    }
}

/// Controls the backend wants: `required` bits must be supported, `optional` ones are used
/// when the CPU allows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DesiredControls {
    pub pin_required: PinBasedControls,
    pub pin_optional: PinBasedControls,
    pub primary_required: PrimaryProcessorControls,
    pub primary_optional: PrimaryProcessorControls,
    pub secondary_required: SecondaryProcessorControls,
    pub secondary_optional: SecondaryProcessorControls,
    pub exit_required: ExitControls,
    pub exit_optional: ExitControls,
    pub entry_required: EntryControls,
    pub entry_optional: EntryControls,
}

impl DesiredControls {
    /// What the Sluice VMX backend uses: external interrupts and NMIs exit (acknowledged on
    /// exit), HLT exits, I/O and MSR bitmaps, EPT with unrestricted guest, EFER switched on
    /// entry and exit, a 64-bit host; VPID, the preemption timer, TSC offsetting, RDTSCP,
    /// INVPCID, XSAVES and PAT switching when available. CR3 accesses do not exit (EPT).
    pub const fn sluice() -> Self {
        use EntryControls as En;
        use ExitControls as Ex;
        use PinBasedControls as Pin;
        use PrimaryProcessorControls as Pri;
        use SecondaryProcessorControls as Sec;
        DesiredControls {
            pin_required: Pin::EXTERNAL_INTERRUPT_EXITING.union(Pin::NMI_EXITING),
            pin_optional: Pin::ACTIVATE_PREEMPTION_TIMER,
            primary_required: Pri::HLT_EXITING
                .union(Pri::USE_IO_BITMAPS)
                .union(Pri::USE_MSR_BITMAPS)
                .union(Pri::ACTIVATE_SECONDARY_CONTROLS),
            primary_optional: Pri::USE_TSC_OFFSETTING,
            secondary_required: Sec::ENABLE_EPT.union(Sec::UNRESTRICTED_GUEST),
            secondary_optional: Sec::ENABLE_VPID
                .union(Sec::ENABLE_RDTSCP)
                .union(Sec::ENABLE_INVPCID)
                .union(Sec::ENABLE_XSAVES_XRSTORS),
            exit_required: Ex::HOST_ADDRESS_SPACE_SIZE
                .union(Ex::ACKNOWLEDGE_INTERRUPT_ON_EXIT)
                .union(Ex::SAVE_IA32_EFER)
                .union(Ex::LOAD_IA32_EFER),
            // The preemption timer is a backstop that starts from the same value at every entry,
            // so its value is not saved on exit (the field keeps what the kernel wrote once).
            exit_optional: Ex::SAVE_IA32_PAT.union(Ex::LOAD_IA32_PAT),
            entry_required: En::LOAD_IA32_EFER,
            entry_optional: En::LOAD_IA32_PAT,
        }
    }
}

/// Adjusted controls, ready to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Controls {
    pub pin_based: PinBasedControls,
    pub primary: PrimaryProcessorControls,
    pub secondary: SecondaryProcessorControls,
    pub exit: ExitControls,
    pub entry: EntryControls,
}

impl Controls {
    /// The five VMWRITEs that install these controls.
    pub fn vmcs_writes(&self) -> [(VmcsField, u64); 5] {
        [
            (
                VmcsField::PinBasedControls,
                u64::from(self.pin_based.bits()),
            ),
            (
                VmcsField::PrimaryProcessorControls,
                u64::from(self.primary.bits()),
            ),
            (
                VmcsField::SecondaryProcessorControls,
                u64::from(self.secondary.bits()),
            ),
            (VmcsField::ExitControls, u64::from(self.exit.bits())),
            (VmcsField::EntryControls, u64::from(self.entry.bits())),
        ]
    }
}

/// The VMX capability MSRs of one CPU, with the TRUE_* variants already chosen where they exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct VmxCapabilities {
    pub basic: u64,
    pub pin_based: AllowedSettings,
    pub primary: AllowedSettings,
    /// Zero when the CPU has no secondary controls.
    pub secondary: AllowedSettings,
    pub exit: AllowedSettings,
    pub entry: AllowedSettings,
    pub misc: u64,
    pub cr0: FixedBits,
    pub cr4: FixedBits,
    /// Zero when the CPU supports neither EPT nor VPID.
    pub ept_vpid: u64,
}

impl VmxCapabilities {
    /// Reads the MSRs through `rdmsr`, touching only MSRs that exist: the TRUE_* ones when
    /// IA32_VMX_BASIC bit 55 says so, PROCBASED_CTLS2 only when secondary controls can be
    /// activated, EPT_VPID_CAP only when EPT or VPID can be enabled (SDM Vol. 3D Appendix A).
    pub fn read(mut rdmsr: impl FnMut(u32) -> u64) -> Self {
        let basic = rdmsr(msr::BASIC);
        let use_true = basic & BASIC_TRUE_CONTROLS != 0;
        let pick = |plain: u32, true_msr: u32| if use_true { true_msr } else { plain };
        let pin_based = AllowedSettings(rdmsr(pick(msr::PINBASED_CTLS, msr::TRUE_PINBASED_CTLS)));
        let primary = AllowedSettings(rdmsr(pick(msr::PROCBASED_CTLS, msr::TRUE_PROCBASED_CTLS)));
        let exit = AllowedSettings(rdmsr(pick(msr::EXIT_CTLS, msr::TRUE_EXIT_CTLS)));
        let entry = AllowedSettings(rdmsr(pick(msr::ENTRY_CTLS, msr::TRUE_ENTRY_CTLS)));
        let misc = rdmsr(msr::MISC);
        let cr0 = FixedBits {
            fixed0: rdmsr(msr::CR0_FIXED0),
            fixed1: rdmsr(msr::CR0_FIXED1),
        };
        let cr4 = FixedBits {
            fixed0: rdmsr(msr::CR4_FIXED0),
            fixed1: rdmsr(msr::CR4_FIXED1),
        };
        let secondary_bit = PrimaryProcessorControls::ACTIVATE_SECONDARY_CONTROLS.bits();
        let secondary = if primary.allows(secondary_bit) {
            AllowedSettings(rdmsr(msr::PROCBASED_CTLS2))
        } else {
            AllowedSettings(0)
        };
        let ept_or_vpid = SecondaryProcessorControls::ENABLE_EPT.bits()
            | SecondaryProcessorControls::ENABLE_VPID.bits();
        let ept_vpid = if secondary.may_be_one() & ept_or_vpid != 0 {
            rdmsr(msr::EPT_VPID_CAP)
        } else {
            0
        };
        VmxCapabilities {
            basic,
            pin_based,
            primary,
            secondary,
            exit,
            entry,
            misc,
            cr0,
            cr4,
            ept_vpid,
        }
    }

    /// VMCS revision identifier to write into the VMXON region and each VMCS (bits 30:0).
    pub const fn vmcs_revision(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// Bytes the VMXON region and a VMCS need (bits 44:32).
    pub const fn vmcs_region_size(&self) -> u32 {
        ((self.basic >> 32) & 0x1fff) as u32
    }

    /// The VMX-preemption timer counts down once every 2^rate TSC ticks (IA32_VMX_MISC 4:0).
    pub const fn preemption_timer_rate(&self) -> u8 {
        (self.misc & 0x1f) as u8
    }

    /// VM exits store IA32_EFER.LMA into the "IA-32e mode guest" VM-entry control
    /// (IA32_VMX_MISC bit 5, SDM Vol. 3D Appendix A.6; set wherever unrestricted guest is).
    pub const fn exits_store_lma(&self) -> bool {
        self.misc & (1 << 5) != 0
    }

    /// EPT supports a page-walk length of 4 (IA32_VMX_EPT_VPID_CAP bit 6).
    pub const fn ept_four_level_walk(&self) -> bool {
        self.ept_vpid & (1 << 6) != 0
    }
    /// EPT paging structures may be write-back (bit 14).
    pub const fn ept_write_back(&self) -> bool {
        self.ept_vpid & (1 << 14) != 0
    }
    /// EPT 2-MByte pages (bit 16).
    pub const fn ept_2m_pages(&self) -> bool {
        self.ept_vpid & (1 << 16) != 0
    }
    /// EPT 1-GByte pages (bit 17).
    pub const fn ept_1g_pages(&self) -> bool {
        self.ept_vpid & (1 << 17) != 0
    }
    /// INVEPT single-context type (bit 25).
    pub const fn invept_single_context(&self) -> bool {
        self.ept_vpid & (1 << 25) != 0
    }
    /// INVVPID all-context type (bit 42).
    pub const fn invvpid_all_context(&self) -> bool {
        self.ept_vpid & (1 << 42) != 0
    }

    /// Adjusts `desired` against the MSRs, enforcing the VM-entry rules between controls.
    pub fn adjust(&self, desired: &DesiredControls) -> Result<Controls, ControlError> {
        use SecondaryProcessorControls as Sec;
        let mut primary_required = desired.primary_required;
        if !desired.secondary_required.is_empty() {
            primary_required |= PrimaryProcessorControls::ACTIVATE_SECONDARY_CONTROLS;
        }
        let pin = self.pin_based.adjust(
            ControlField::PinBased,
            desired.pin_required.bits(),
            desired.pin_optional.bits(),
        )?;
        let primary = self.primary.adjust(
            ControlField::PrimaryProcessor,
            primary_required.bits(),
            desired.primary_optional.bits(),
        )?;
        let secondary =
            if primary & PrimaryProcessorControls::ACTIVATE_SECONDARY_CONTROLS.bits() != 0 {
                self.secondary.adjust(
                    ControlField::SecondaryProcessor,
                    desired.secondary_required.bits(),
                    desired.secondary_optional.bits(),
                )?
            } else {
                0
            };
        let mut exit = self.exit.adjust(
            ControlField::Exit,
            desired.exit_required.bits(),
            desired.exit_optional.bits(),
        )?;
        let entry = self.entry.adjust(
            ControlField::Entry,
            desired.entry_required.bits(),
            desired.entry_optional.bits(),
        )?;
        let secondary = Sec::from_bits_retain(secondary);
        let pin = PinBasedControls::from_bits_retain(pin);
        // SDM Vol. 3C section 27.2.1.1 (checks on VM-execution and VM-exit control fields).
        if secondary.contains(Sec::UNRESTRICTED_GUEST) && !secondary.contains(Sec::ENABLE_EPT) {
            return Err(ControlError::Inconsistent(
                "unrestricted guest requires EPT",
            ));
        }
        if pin.contains(PinBasedControls::VIRTUAL_NMIS)
            && !pin.contains(PinBasedControls::NMI_EXITING)
        {
            return Err(ControlError::Inconsistent(
                "virtual NMIs require NMI exiting",
            ));
        }
        if !pin.contains(PinBasedControls::ACTIVATE_PREEMPTION_TIMER) {
            let save = ExitControls::SAVE_PREEMPTION_TIMER_VALUE.bits();
            if desired.exit_required.bits() & save != 0 {
                return Err(ControlError::Inconsistent(
                    "saving the preemption timer requires activating it",
                ));
            }
            exit &= !save;
        }
        Ok(Controls {
            pin_based: pin,
            primary: PrimaryProcessorControls::from_bits_retain(primary),
            secondary,
            exit: ExitControls::from_bits_retain(exit),
            entry: EntryControls::from_bits_retain(entry),
        })
    }

    /// The CR0 / CR4 policy for guests on this CPU.
    pub const fn control_register_policy(&self, unrestricted_guest: bool) -> ControlRegisterPolicy {
        ControlRegisterPolicy::new(self.cr0, self.cr4, unrestricted_guest)
    }
}
