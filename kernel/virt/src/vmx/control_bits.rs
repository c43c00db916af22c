//! VM-execution, VM-exit and VM-entry control bits (SDM Vol. 3C sections 25.6.1, 25.6.2, 25.7.1
//! and 25.8.1), one `bitflags` type per control field, named with the SDM's words.
use bitflags::bitflags;

bitflags! {
    /// Pin-based VM-execution controls (SDM Vol. 3C section 25.6.1, Table 25-5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PinBasedControls: u32 {
        /// External interrupts cause VM exits.
        const EXTERNAL_INTERRUPT_EXITING = 1 << 0;
        /// Non-maskable interrupts cause VM exits.
        const NMI_EXITING = 1 << 3;
        /// NMIs are never blocked and "blocking by NMI" tracks virtual-NMI blocking.
        const VIRTUAL_NMIS = 1 << 5;
        /// Activate the VMX-preemption timer.
        const ACTIVATE_PREEMPTION_TIMER = 1 << 6;
        /// Process posted interrupts.
        const PROCESS_POSTED_INTERRUPTS = 1 << 7;
    }
}

bitflags! {
    /// Primary processor-based VM-execution controls (SDM Vol. 3C section 25.6.2, Table 25-6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PrimaryProcessorControls: u32 {
        /// A VM exit at the beginning of any instruction if RFLAGS.IF = 1 and there are no
        /// other blocking of interrupts.
        const INTERRUPT_WINDOW_EXITING = 1 << 2;
        /// Use TSC offsetting.
        const USE_TSC_OFFSETTING = 1 << 3;
        /// HLT exiting.
        const HLT_EXITING = 1 << 7;
        /// INVLPG exiting.
        const INVLPG_EXITING = 1 << 9;
        /// MWAIT exiting.
        const MWAIT_EXITING = 1 << 10;
        /// RDPMC exiting.
        const RDPMC_EXITING = 1 << 11;
        /// RDTSC exiting.
        const RDTSC_EXITING = 1 << 12;
        /// CR3-load exiting.
        const CR3_LOAD_EXITING = 1 << 15;
        /// CR3-store exiting.
        const CR3_STORE_EXITING = 1 << 16;
        /// Activate tertiary controls.
        const ACTIVATE_TERTIARY_CONTROLS = 1 << 17;
        /// CR8-load exiting.
        const CR8_LOAD_EXITING = 1 << 19;
        /// CR8-store exiting.
        const CR8_STORE_EXITING = 1 << 20;
        /// Use TPR shadow.
        const USE_TPR_SHADOW = 1 << 21;
        /// NMI-window exiting.
        const NMI_WINDOW_EXITING = 1 << 22;
        /// MOV-DR exiting.
        const MOV_DR_EXITING = 1 << 23;
        /// Unconditional I/O exiting.
        const UNCONDITIONAL_IO_EXITING = 1 << 24;
        /// Use I/O bitmaps.
        const USE_IO_BITMAPS = 1 << 25;
        /// Monitor trap flag.
        const MONITOR_TRAP_FLAG = 1 << 27;
        /// Use MSR bitmaps.
        const USE_MSR_BITMAPS = 1 << 28;
        /// MONITOR exiting.
        const MONITOR_EXITING = 1 << 29;
        /// PAUSE exiting.
        const PAUSE_EXITING = 1 << 30;
        /// Activate secondary controls.
        const ACTIVATE_SECONDARY_CONTROLS = 1 << 31;
    }
}

bitflags! {
    /// Secondary processor-based VM-execution controls (SDM Vol. 3C section 25.6.2,
    /// Table 25-7).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SecondaryProcessorControls: u32 {
        /// Virtualize APIC accesses.
        const VIRTUALIZE_APIC_ACCESSES = 1 << 0;
        /// Enable EPT.
        const ENABLE_EPT = 1 << 1;
        /// Descriptor-table exiting.
        const DESCRIPTOR_TABLE_EXITING = 1 << 2;
        /// Enable RDTSCP.
        const ENABLE_RDTSCP = 1 << 3;
        /// Virtualize x2APIC mode.
        const VIRTUALIZE_X2APIC_MODE = 1 << 4;
        /// Enable VPID.
        const ENABLE_VPID = 1 << 5;
        /// WBINVD exiting.
        const WBINVD_EXITING = 1 << 6;
        /// Unrestricted guest: the guest may run in unpaged protected mode or real mode.
        const UNRESTRICTED_GUEST = 1 << 7;
        /// APIC-register virtualization.
        const APIC_REGISTER_VIRTUALIZATION = 1 << 8;
        /// Virtual-interrupt delivery.
        const VIRTUAL_INTERRUPT_DELIVERY = 1 << 9;
        /// PAUSE-loop exiting.
        const PAUSE_LOOP_EXITING = 1 << 10;
        /// RDRAND exiting.
        const RDRAND_EXITING = 1 << 11;
        /// Enable INVPCID.
        const ENABLE_INVPCID = 1 << 12;
        /// Enable VM functions.
        const ENABLE_VM_FUNCTIONS = 1 << 13;
        /// VMCS shadowing.
        const VMCS_SHADOWING = 1 << 14;
        /// Enable ENCLS exiting.
        const ENABLE_ENCLS_EXITING = 1 << 15;
        /// RDSEED exiting.
        const RDSEED_EXITING = 1 << 16;
        /// Enable PML.
        const ENABLE_PML = 1 << 17;
        /// EPT-violation #VE.
        const EPT_VIOLATION_VE = 1 << 18;
        /// Conceal VMX from PT.
        const CONCEAL_VMX_FROM_PT = 1 << 19;
        /// Enable XSAVES/XRSTORS.
        const ENABLE_XSAVES_XRSTORS = 1 << 20;
        /// Mode-based execute control for EPT.
        const MODE_BASED_EXECUTE_CONTROL = 1 << 22;
        /// Sub-page write permissions for EPT.
        const SUB_PAGE_WRITE_PERMISSIONS = 1 << 23;
        /// Intel PT uses guest physical addresses.
        const PT_USES_GUEST_PHYSICAL_ADDRESSES = 1 << 24;
        /// Use TSC scaling.
        const USE_TSC_SCALING = 1 << 25;
        /// Enable user wait and pause.
        const ENABLE_USER_WAIT_AND_PAUSE = 1 << 26;
        /// Enable ENCLV exiting.
        const ENABLE_ENCLV_EXITING = 1 << 28;
    }
}

bitflags! {
    /// Primary VM-exit controls (SDM Vol. 3C section 25.7.1, Table 25-13).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExitControls: u32 {
        /// Save debug controls.
        const SAVE_DEBUG_CONTROLS = 1 << 2;
        /// Host address-space size: the host runs in 64-bit mode after the exit.
        const HOST_ADDRESS_SPACE_SIZE = 1 << 9;
        /// Load IA32_PERF_GLOBAL_CTRL.
        const LOAD_IA32_PERF_GLOBAL_CTRL = 1 << 12;
        /// Acknowledge interrupt on exit.
        const ACKNOWLEDGE_INTERRUPT_ON_EXIT = 1 << 15;
        /// Save IA32_PAT.
        const SAVE_IA32_PAT = 1 << 18;
        /// Load IA32_PAT.
        const LOAD_IA32_PAT = 1 << 19;
        /// Save IA32_EFER.
        const SAVE_IA32_EFER = 1 << 20;
        /// Load IA32_EFER.
        const LOAD_IA32_EFER = 1 << 21;
        /// Save VMX-preemption timer value.
        const SAVE_PREEMPTION_TIMER_VALUE = 1 << 22;
        /// Clear IA32_BNDCFGS.
        const CLEAR_IA32_BNDCFGS = 1 << 23;
        /// Conceal VMX from PT.
        const CONCEAL_VMX_FROM_PT = 1 << 24;
    }
}

bitflags! {
    /// VM-entry controls (SDM Vol. 3C section 25.8.1, Table 25-15).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct EntryControls: u32 {
        /// Load debug controls.
        const LOAD_DEBUG_CONTROLS = 1 << 2;
        /// IA-32e mode guest: must equal the guest's IA32_EFER.LMA.
        const IA32E_MODE_GUEST = 1 << 9;
        /// Entry to SMM.
        const ENTRY_TO_SMM = 1 << 10;
        /// Deactivate dual-monitor treatment.
        const DEACTIVATE_DUAL_MONITOR_TREATMENT = 1 << 11;
        /// Load IA32_PERF_GLOBAL_CTRL.
        const LOAD_IA32_PERF_GLOBAL_CTRL = 1 << 13;
        /// Load IA32_PAT.
        const LOAD_IA32_PAT = 1 << 14;
        /// Load IA32_EFER.
        const LOAD_IA32_EFER = 1 << 15;
        /// Load IA32_BNDCFGS.
        const LOAD_IA32_BNDCFGS = 1 << 16;
        /// Conceal VMX from PT.
        const CONCEAL_VMX_FROM_PT = 1 << 17;
    }
}
