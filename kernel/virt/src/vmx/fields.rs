//! VMCS field encodings (SDM Vol. 3D Appendix B) as one enum whose discriminant is the
//! encoding, so every field knows its width and type (encoding bits 14:13 and 11:10, SDM Vol. 3C
//! section 25.11.2) instead of being a bare `u32`.
//!
//! Only the fields the Sluice backend reads or writes are listed. 64-bit fields are named by
//! their "full" encoding: in 64-bit mode VMREAD/VMWRITE of it moves all 64 bits.
use x86::vmx::vmcs::{control, guest, host, ro};

/// Width of a VMCS field (encoding bits 14:13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldWidth {
    /// 16-bit field.
    Bits16,
    /// 64-bit field.
    Bits64,
    /// 32-bit field.
    Bits32,
    /// Natural width: 64 bits on a 64-bit host.
    Natural,
}

impl FieldWidth {
    /// Mask of the bits a field of this width holds on a 64-bit host.
    pub const fn mask(self) -> u64 {
        match self {
            FieldWidth::Bits16 => 0xffff,
            FieldWidth::Bits32 => 0xffff_ffff,
            FieldWidth::Bits64 | FieldWidth::Natural => u64::MAX,
        }
    }
}

/// Type of a VMCS field (encoding bits 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Control field.
    Control,
    /// VM-exit information (read-only).
    ExitInformation,
    /// Guest-state area.
    GuestState,
    /// Host-state area.
    HostState,
}

/// A VMCS field; the discriminant is its encoding (SDM Vol. 3D Appendix B, Tables B-1..B-12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)] // The names are the SDM's field names.
pub enum VmcsField {
    // 16-bit control fields (Table B-1).
    VirtualProcessorId = control::VPID,
    // 16-bit guest-state fields (Table B-2).
    GuestEsSelector = guest::ES_SELECTOR,
    GuestCsSelector = guest::CS_SELECTOR,
    GuestSsSelector = guest::SS_SELECTOR,
    GuestDsSelector = guest::DS_SELECTOR,
    GuestFsSelector = guest::FS_SELECTOR,
    GuestGsSelector = guest::GS_SELECTOR,
    GuestLdtrSelector = guest::LDTR_SELECTOR,
    GuestTrSelector = guest::TR_SELECTOR,
    // 16-bit host-state fields (Table B-3).
    HostEsSelector = host::ES_SELECTOR,
    HostCsSelector = host::CS_SELECTOR,
    HostSsSelector = host::SS_SELECTOR,
    HostDsSelector = host::DS_SELECTOR,
    HostFsSelector = host::FS_SELECTOR,
    HostGsSelector = host::GS_SELECTOR,
    HostTrSelector = host::TR_SELECTOR,
    // 64-bit control fields (Table B-4).
    IoBitmapA = control::IO_BITMAP_A_ADDR_FULL,
    IoBitmapB = control::IO_BITMAP_B_ADDR_FULL,
    MsrBitmap = control::MSR_BITMAPS_ADDR_FULL,
    ExitMsrStoreAddress = control::VMEXIT_MSR_STORE_ADDR_FULL,
    ExitMsrLoadAddress = control::VMEXIT_MSR_LOAD_ADDR_FULL,
    EntryMsrLoadAddress = control::VMENTRY_MSR_LOAD_ADDR_FULL,
    TscOffset = control::TSC_OFFSET_FULL,
    VirtualApicAddress = control::VIRT_APIC_ADDR_FULL,
    ApicAccessAddress = control::APIC_ACCESS_ADDR_FULL,
    EptPointer = control::EPTP_FULL,
    // 64-bit read-only data field (Table B-5).
    GuestPhysicalAddress = ro::GUEST_PHYSICAL_ADDR_FULL,
    // 64-bit guest-state fields (Table B-6).
    VmcsLinkPointer = guest::LINK_PTR_FULL,
    GuestDebugControl = guest::IA32_DEBUGCTL_FULL,
    GuestPat = guest::IA32_PAT_FULL,
    GuestEfer = guest::IA32_EFER_FULL,
    // 64-bit host-state fields (Table B-7).
    HostPat = host::IA32_PAT_FULL,
    HostEfer = host::IA32_EFER_FULL,
    // 32-bit control fields (Table B-8).
    PinBasedControls = control::PINBASED_EXEC_CONTROLS,
    PrimaryProcessorControls = control::PRIMARY_PROCBASED_EXEC_CONTROLS,
    ExceptionBitmap = control::EXCEPTION_BITMAP,
    PageFaultErrorCodeMask = control::PAGE_FAULT_ERR_CODE_MASK,
    PageFaultErrorCodeMatch = control::PAGE_FAULT_ERR_CODE_MATCH,
    Cr3TargetCount = control::CR3_TARGET_COUNT,
    ExitControls = control::VMEXIT_CONTROLS,
    ExitMsrStoreCount = control::VMEXIT_MSR_STORE_COUNT,
    ExitMsrLoadCount = control::VMEXIT_MSR_LOAD_COUNT,
    EntryControls = control::VMENTRY_CONTROLS,
    EntryMsrLoadCount = control::VMENTRY_MSR_LOAD_COUNT,
    EntryInterruptionInfo = control::VMENTRY_INTERRUPTION_INFO_FIELD,
    EntryExceptionErrorCode = control::VMENTRY_EXCEPTION_ERR_CODE,
    EntryInstructionLength = control::VMENTRY_INSTRUCTION_LEN,
    TprThreshold = control::TPR_THRESHOLD,
    SecondaryProcessorControls = control::SECONDARY_PROCBASED_EXEC_CONTROLS,
    // 32-bit read-only data fields (Table B-9).
    InstructionError = ro::VM_INSTRUCTION_ERROR,
    ExitReason = ro::EXIT_REASON,
    ExitInterruptionInfo = ro::VMEXIT_INTERRUPTION_INFO,
    ExitInterruptionErrorCode = ro::VMEXIT_INTERRUPTION_ERR_CODE,
    IdtVectoringInfo = ro::IDT_VECTORING_INFO,
    IdtVectoringErrorCode = ro::IDT_VECTORING_ERR_CODE,
    ExitInstructionLength = ro::VMEXIT_INSTRUCTION_LEN,
    ExitInstructionInfo = ro::VMEXIT_INSTRUCTION_INFO,
    // 32-bit guest-state fields (Table B-10).
    GuestEsLimit = guest::ES_LIMIT,
    GuestCsLimit = guest::CS_LIMIT,
    GuestSsLimit = guest::SS_LIMIT,
    GuestDsLimit = guest::DS_LIMIT,
    GuestFsLimit = guest::FS_LIMIT,
    GuestGsLimit = guest::GS_LIMIT,
    GuestLdtrLimit = guest::LDTR_LIMIT,
    GuestTrLimit = guest::TR_LIMIT,
    GuestGdtrLimit = guest::GDTR_LIMIT,
    GuestIdtrLimit = guest::IDTR_LIMIT,
    GuestEsAccessRights = guest::ES_ACCESS_RIGHTS,
    GuestCsAccessRights = guest::CS_ACCESS_RIGHTS,
    GuestSsAccessRights = guest::SS_ACCESS_RIGHTS,
    GuestDsAccessRights = guest::DS_ACCESS_RIGHTS,
    GuestFsAccessRights = guest::FS_ACCESS_RIGHTS,
    GuestGsAccessRights = guest::GS_ACCESS_RIGHTS,
    GuestLdtrAccessRights = guest::LDTR_ACCESS_RIGHTS,
    GuestTrAccessRights = guest::TR_ACCESS_RIGHTS,
    GuestInterruptibility = guest::INTERRUPTIBILITY_STATE,
    GuestActivityState = guest::ACTIVITY_STATE,
    GuestSysenterCs = guest::IA32_SYSENTER_CS,
    PreemptionTimerValue = guest::VMX_PREEMPTION_TIMER_VALUE,
    // 32-bit host-state field (Table B-11).
    HostSysenterCs = host::IA32_SYSENTER_CS,
    // Natural-width control fields (Table B-12).
    Cr0GuestHostMask = control::CR0_GUEST_HOST_MASK,
    Cr4GuestHostMask = control::CR4_GUEST_HOST_MASK,
    Cr0ReadShadow = control::CR0_READ_SHADOW,
    Cr4ReadShadow = control::CR4_READ_SHADOW,
    // Natural-width read-only data fields (Table B-13).
    ExitQualification = ro::EXIT_QUALIFICATION,
    GuestLinearAddress = ro::GUEST_LINEAR_ADDR,
    // Natural-width guest-state fields (Table B-14).
    GuestCr0 = guest::CR0,
    GuestCr3 = guest::CR3,
    GuestCr4 = guest::CR4,
    GuestEsBase = guest::ES_BASE,
    GuestCsBase = guest::CS_BASE,
    GuestSsBase = guest::SS_BASE,
    GuestDsBase = guest::DS_BASE,
    GuestFsBase = guest::FS_BASE,
    GuestGsBase = guest::GS_BASE,
    GuestLdtrBase = guest::LDTR_BASE,
    GuestTrBase = guest::TR_BASE,
    GuestGdtrBase = guest::GDTR_BASE,
    GuestIdtrBase = guest::IDTR_BASE,
    GuestDr7 = guest::DR7,
    GuestRsp = guest::RSP,
    GuestRip = guest::RIP,
    GuestRflags = guest::RFLAGS,
    GuestPendingDebugExceptions = guest::PENDING_DBG_EXCEPTIONS,
    GuestSysenterEsp = guest::IA32_SYSENTER_ESP,
    GuestSysenterEip = guest::IA32_SYSENTER_EIP,
    // Natural-width host-state fields (Table B-15).
    HostCr0 = host::CR0,
    HostCr3 = host::CR3,
    HostCr4 = host::CR4,
    HostFsBase = host::FS_BASE,
    HostGsBase = host::GS_BASE,
    HostTrBase = host::TR_BASE,
    HostGdtrBase = host::GDTR_BASE,
    HostIdtrBase = host::IDTR_BASE,
    HostSysenterEsp = host::IA32_SYSENTER_ESP,
    HostSysenterEip = host::IA32_SYSENTER_EIP,
    HostRsp = host::RSP,
    HostRip = host::RIP,
}

impl VmcsField {
    /// The encoding VMREAD / VMWRITE take.
    pub const fn encoding(self) -> u32 {
        self as u32
    }

    /// The field's width (encoding bits 14:13).
    pub const fn width(self) -> FieldWidth {
        match (self.encoding() >> 13) & 3 {
            0 => FieldWidth::Bits16,
            1 => FieldWidth::Bits64,
            2 => FieldWidth::Bits32,
            _ => FieldWidth::Natural,
        }
    }

    /// The field's type (encoding bits 11:10).
    pub const fn kind(self) -> FieldKind {
        match (self.encoding() >> 10) & 3 {
            0 => FieldKind::Control,
            1 => FieldKind::ExitInformation,
            2 => FieldKind::GuestState,
            _ => FieldKind::HostState,
        }
    }

    /// Whether VMWRITE to the field fails (exit-information fields, unless the CPU sets
    /// IA32_VMX_MISC bit 29).
    pub const fn is_read_only(self) -> bool {
        matches!(self.kind(), FieldKind::ExitInformation)
    }

    /// `value` cut to the field's width, as VMREAD returns and VMWRITE stores it.
    pub const fn truncate(self, value: u64) -> u64 {
        value & self.width().mask()
    }
}

/// A segment register's four guest-state fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFields {
    /// Selector (16-bit).
    pub selector: VmcsField,
    /// Base (natural width).
    pub base: VmcsField,
    /// Limit (32-bit).
    pub limit: VmcsField,
    /// Access rights (32-bit, SDM Vol. 3C Table 25-2).
    pub access_rights: VmcsField,
}

/// Guest segment registers in the order of their VMCS encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum GuestSegment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
    Ldtr,
    Tr,
}

impl GuestSegment {
    /// The register's guest-state fields.
    pub const fn fields(self) -> SegmentFields {
        use VmcsField::*;
        let (selector, base, limit, access_rights) = match self {
            GuestSegment::Es => (
                GuestEsSelector,
                GuestEsBase,
                GuestEsLimit,
                GuestEsAccessRights,
            ),
            GuestSegment::Cs => (
                GuestCsSelector,
                GuestCsBase,
                GuestCsLimit,
                GuestCsAccessRights,
            ),
            GuestSegment::Ss => (
                GuestSsSelector,
                GuestSsBase,
                GuestSsLimit,
                GuestSsAccessRights,
            ),
            GuestSegment::Ds => (
                GuestDsSelector,
                GuestDsBase,
                GuestDsLimit,
                GuestDsAccessRights,
            ),
            GuestSegment::Fs => (
                GuestFsSelector,
                GuestFsBase,
                GuestFsLimit,
                GuestFsAccessRights,
            ),
            GuestSegment::Gs => (
                GuestGsSelector,
                GuestGsBase,
                GuestGsLimit,
                GuestGsAccessRights,
            ),
            GuestSegment::Ldtr => (
                GuestLdtrSelector,
                GuestLdtrBase,
                GuestLdtrLimit,
                GuestLdtrAccessRights,
            ),
            GuestSegment::Tr => (
                GuestTrSelector,
                GuestTrBase,
                GuestTrLimit,
                GuestTrAccessRights,
            ),
        };
        SegmentFields {
            selector,
            base,
            limit,
            access_rights,
        }
    }
}

/// Basic exit reasons (bits 15:0 of the exit-reason field; SDM Vol. 3D Appendix C, Table C-1).
pub mod exit_reason {
    /// Exception or non-maskable interrupt (NMI).
    pub const EXCEPTION_OR_NMI: u16 = 0;
    /// External interrupt.
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    /// Triple fault.
    pub const TRIPLE_FAULT: u16 = 2;
    /// INIT signal.
    pub const INIT_SIGNAL: u16 = 3;
    /// Start-up IPI (SIPI).
    pub const STARTUP_IPI: u16 = 4;
    /// Interrupt window.
    pub const INTERRUPT_WINDOW: u16 = 7;
    /// NMI window.
    pub const NMI_WINDOW: u16 = 8;
    /// Task switch.
    pub const TASK_SWITCH: u16 = 9;
    /// CPUID.
    pub const CPUID: u16 = 10;
    /// HLT.
    pub const HLT: u16 = 12;
    /// VMCALL.
    pub const VMCALL: u16 = 18;
    /// Control-register accesses.
    pub const CONTROL_REGISTER_ACCESS: u16 = 28;
    /// I/O instruction.
    pub const IO_INSTRUCTION: u16 = 30;
    /// RDMSR.
    pub const RDMSR: u16 = 31;
    /// WRMSR.
    pub const WRMSR: u16 = 32;
    /// VM-entry failure due to invalid guest state.
    pub const INVALID_GUEST_STATE: u16 = 33;
    /// VM-entry failure due to MSR loading.
    pub const MSR_LOADING: u16 = 34;
    /// EPT violation.
    pub const EPT_VIOLATION: u16 = 48;
    /// EPT misconfiguration.
    pub const EPT_MISCONFIGURATION: u16 = 49;
    /// VMX-preemption timer expired.
    pub const PREEMPTION_TIMER: u16 = 52;
    /// XSETBV.
    pub const XSETBV: u16 = 55;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_kinds_follow_the_encoding() {
        assert_eq!(VmcsField::VirtualProcessorId.width(), FieldWidth::Bits16);
        assert_eq!(VmcsField::EptPointer.encoding(), 0x201a);
        assert_eq!(VmcsField::EptPointer.width(), FieldWidth::Bits64);
        assert_eq!(VmcsField::ExitReason.width(), FieldWidth::Bits32);
        assert!(VmcsField::ExitReason.is_read_only());
        assert_eq!(VmcsField::GuestRip.width(), FieldWidth::Natural);
        assert_eq!(VmcsField::GuestRip.kind(), FieldKind::GuestState);
        assert_eq!(VmcsField::HostRip.kind(), FieldKind::HostState);
        assert_eq!(VmcsField::Cr0ReadShadow.kind(), FieldKind::Control);
        assert_eq!(VmcsField::GuestCsSelector.truncate(0x1_0008), 8);
        assert_eq!(
            VmcsField::GuestCsAccessRights.truncate(u64::MAX),
            0xffff_ffff
        );
        assert!(!VmcsField::GuestRip.is_read_only());
        assert_eq!(GuestSegment::Tr.fields().base, VmcsField::GuestTrBase);
    }
}
