//! VMX replies: the VMCS writes a reply turns into, injection checks, the interrupt window,
//! and reading back what a plan wrote.
use sluice_abi::vcpu::{
    ActivityState, DescriptorTable, Event, Exception, ExceptionVector, Gpr, Interruptibility, Mtd,
    Reply, Segment, SegmentAttributes, VcpuState,
};

use super::fixtures::*;
use crate::error::ReplyError;
use crate::vmx::entry::MAX_ENTRY_WRITES;
use crate::vmx::{decode_exit, plan_entry, EntryPlan, VmcsField};

fn plan(reply: &Reply, vmcs: &FakeVmcs) -> Result<EntryPlan, ReplyError> {
    plan_entry(reply, vmcs, &saved_registers(), &policy())
}

fn apply(vmcs: &mut FakeVmcs, plan: &EntryPlan) {
    for write in &plan.writes {
        vmcs.set(write.field, write.value);
    }
}

fn general_protection(code: Option<u32>) -> Event {
    Event::Exception(Exception::new(ExceptionVector::GENERAL_PROTECTION, code).unwrap())
}

#[test]
fn a_cpuid_reply_writes_registers_and_rip_only() {
    let vmcs = long_mode_vmcs();
    let mut state = VcpuState {
        mtd: Mtd::GPR_ACDB | Mtd::RIP,
        rip: 0x10_0002,
        ..VcpuState::default()
    };
    state.gpr.set(Gpr::Rax, 0x0d);
    state.gpr.set(Gpr::Rbx, 0x756e_6547);
    let plan = plan(
        &Reply {
            state,
            inject: None,
            request_interrupt_window: false,
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(plan.writes.len(), 1);
    assert_eq!(plan.value_of(VmcsField::GuestRip), Some(0x10_0002));
    assert_eq!(plan.saved.gpr.get(Gpr::Rax), 0x0d);
    assert_eq!(plan.saved.gpr.get(Gpr::Rbx), 0x756e_6547);
    assert_eq!(
        plan.saved.gpr.get(Gpr::Rsi),
        0x1111_0006,
        "other registers untouched"
    );
    assert_eq!(plan.saved.cr2, 0xdead_0000);
}

#[test]
fn interrupt_window_is_armed_on_request_and_disarmed_after() {
    let mut vmcs = long_mode_vmcs();
    let primary = vmcs.get(VmcsField::PrimaryProcessorControls);
    let arm = plan(
        &Reply {
            request_interrupt_window: true,
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        arm.value_of(VmcsField::PrimaryProcessorControls),
        Some(primary | 1 << 2)
    );
    apply(&mut vmcs, &arm);
    // Asking again changes nothing; the reply to the window exit disarms.
    let again = plan(
        &Reply {
            request_interrupt_window: true,
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert!(again.writes.is_empty());
    let disarm = plan(&Reply::default(), &vmcs).unwrap();
    assert_eq!(
        disarm.value_of(VmcsField::PrimaryProcessorControls),
        Some(primary)
    );
}

#[test]
fn injection_writes_the_entry_interruption_information() {
    let vmcs = long_mode_vmcs();
    let timer = plan(
        &Reply {
            inject: Some(Event::ExternalInterrupt(0x20)),
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        timer.value_of(VmcsField::EntryInterruptionInfo),
        Some(0x8000_0020)
    );
    assert_eq!(timer.value_of(VmcsField::EntryExceptionErrorCode), None);
    let gp = plan(
        &Reply {
            inject: Some(general_protection(Some(0))),
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        gp.value_of(VmcsField::EntryInterruptionInfo),
        Some(0x8000_0b0d)
    );
    assert_eq!(gp.value_of(VmcsField::EntryExceptionErrorCode), Some(0));
    let nmi = plan(
        &Reply {
            inject: Some(Event::Nmi),
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        nmi.value_of(VmcsField::EntryInterruptionInfo),
        Some(0x8000_0202)
    );
}

#[test]
fn injections_the_entry_would_refuse_are_named_errors() {
    let mut vmcs = long_mode_vmcs();
    let inject = |event| Reply {
        inject: Some(event),
        ..Reply::default()
    };
    assert_eq!(
        plan(&inject(general_protection(None)), &vmcs),
        Err(ReplyError::ErrorCodeMismatch {
            vector: 13,
            required: true
        })
    );
    vmcs.set(VmcsField::GuestRflags, 0x2);
    assert_eq!(
        plan(&inject(Event::ExternalInterrupt(0x20)), &vmcs),
        Err(ReplyError::InterruptBlocked {
            interrupts_enabled: false,
            interruptibility: 0
        })
    );
    // The reply itself may set IF: then the injection is fine.
    let state = VcpuState {
        mtd: Mtd::RFLAGS,
        rflags: 0x202,
        ..VcpuState::default()
    };
    assert!(plan(
        &Reply {
            state,
            inject: Some(Event::ExternalInterrupt(0x20)),
            request_interrupt_window: false
        },
        &vmcs
    )
    .is_ok());
    vmcs.set(VmcsField::GuestRflags, 0x202);
    vmcs.set(VmcsField::GuestInterruptibility, 1);
    assert!(matches!(
        plan(&inject(Event::ExternalInterrupt(0x20)), &vmcs),
        Err(ReplyError::InterruptBlocked {
            interruptibility: 1,
            ..
        })
    ));
    vmcs.set(VmcsField::GuestInterruptibility, 8);
    assert_eq!(
        plan(&inject(Event::Nmi), &vmcs),
        Err(ReplyError::NmiBlocked {
            interruptibility: 8
        })
    );
    vmcs.set(VmcsField::GuestInterruptibility, 0);
    vmcs.set(VmcsField::GuestActivityState, 2);
    assert_eq!(
        plan(&inject(Event::Nmi), &vmcs),
        Err(ReplyError::InjectionWhileInactive(ActivityState::Shutdown))
    );
    // Real mode under unrestricted guest: no error code allowed.
    vmcs.set(VmcsField::GuestActivityState, 0);
    vmcs.set(VmcsField::GuestCr0, 0x30);
    assert_eq!(
        plan(&inject(general_protection(Some(0))), &vmcs),
        Err(ReplyError::ErrorCodeMismatch {
            vector: 13,
            required: false
        })
    );
    assert!(plan(&inject(general_protection(None)), &vmcs).is_ok());
    let error = ReplyError::ErrorCodeMismatch {
        vector: 13,
        required: false,
    };
    assert!(error.to_string().contains("without"));
}

#[test]
fn injecting_into_a_halted_guest_wakes_it() {
    let mut vmcs = long_mode_vmcs();
    vmcs.set(VmcsField::GuestActivityState, 1);
    let plan = plan(
        &Reply {
            inject: Some(Event::ExternalInterrupt(0x20)),
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(plan.value_of(VmcsField::GuestActivityState), Some(0));
}

#[test]
fn malformed_replies_are_refused_before_any_write() {
    let vmcs = long_mode_vmcs();
    for rflags in [0, 1 << 22 | 2, 1 << 3 | 2, 1 << 15 | 2] {
        let state = VcpuState {
            mtd: Mtd::RFLAGS,
            rflags,
            ..VcpuState::default()
        };
        assert_eq!(
            plan(
                &Reply {
                    state,
                    ..Reply::default()
                },
                &vmcs
            ),
            Err(ReplyError::ReservedRflags(rflags))
        );
    }
    let state = VcpuState {
        mtd: Mtd::PENDING_EVENT,
        ..VcpuState::default()
    };
    assert_eq!(
        plan(
            &Reply {
                state,
                ..Reply::default()
            },
            &vmcs
        ),
        Err(ReplyError::PendingEventNotWritable)
    );
    let mut missing = vmcs.clone();
    missing.fields.remove(&VmcsField::PrimaryProcessorControls);
    assert_eq!(
        plan(&Reply::default(), &missing),
        Err(ReplyError::FieldUnreadable(
            VmcsField::PrimaryProcessorControls
        ))
    );
}

#[test]
fn control_registers_efer_and_segments_are_converted() {
    let vmcs = long_mode_vmcs();
    let mut state = VcpuState {
        mtd: Mtd::CONTROL_REGISTERS | Mtd::EFER | Mtd::SEGMENT_CS_SS | Mtd::SEGMENT_DS_ES,
        ..VcpuState::default()
    };
    state.cr0 = 0x11; // protected mode, no paging, NE clear
    state.cr4 = 0;
    state.efer = 0x500; // LME | LMA
    state.cs = Segment {
        selector: 8,
        attributes: SegmentAttributes::new(0xa9b).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    state.ds = Segment {
        attributes: SegmentAttributes::new(0x1000).unwrap(),
        ..Segment::default()
    };
    let plan = plan(
        &Reply {
            state,
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        plan.value_of(VmcsField::GuestCr0),
        Some(0x31),
        "NE forced in the real CR0"
    );
    assert_eq!(plan.value_of(VmcsField::Cr0ReadShadow), Some(0x11));
    assert_eq!(
        plan.value_of(VmcsField::GuestCr4),
        Some(0x2000),
        "VMXE forced"
    );
    assert_eq!(plan.value_of(VmcsField::Cr4ReadShadow), Some(0));
    assert_eq!(plan.value_of(VmcsField::GuestEfer), Some(0x500));
    assert_eq!(
        plan.value_of(VmcsField::EntryControls).map(|c| c & 1 << 9),
        Some(1 << 9)
    );
    assert_eq!(plan.value_of(VmcsField::GuestCsAccessRights), Some(0xa09b));
    assert_eq!(
        plan.value_of(VmcsField::GuestDsAccessRights),
        Some(0x1_0000)
    );
    let leave_long_mode = VcpuState {
        mtd: Mtd::EFER,
        efer: 0,
        ..VcpuState::default()
    };
    let plan = super::vmx_replies::plan(
        &Reply {
            state: leave_long_mode,
            ..Reply::default()
        },
        &vmcs,
    )
    .unwrap();
    assert_eq!(
        plan.value_of(VmcsField::EntryControls).map(|c| c & 1 << 9),
        Some(0)
    );
}

/// A reply with every writable group, an injection and the window: it fits, and decoding the
/// VMCS it produces gives back the reply's state.
#[test]
fn a_reply_with_every_group_fits_and_reads_back() {
    let mut vmcs = long_mode_vmcs();
    let mut state = VcpuState {
        mtd: Mtd::ALL.difference(Mtd::PENDING_EVENT),
        ..VcpuState::default()
    };
    for (index, register) in Gpr::ALL.into_iter().enumerate() {
        state.gpr.set(register, 0x2222_0000 + index as u64);
    }
    state.rip = 0xffff_8000_0000_1000;
    state.rflags = 0x202;
    state.cr0 = GUEST_CR0;
    state.cr2 = 0x4444;
    state.cr3 = 0x3000;
    state.cr4 = GUEST_CR4;
    state.efer = GUEST_EFER;
    let code = Segment {
        selector: 8,
        attributes: SegmentAttributes::new(0xa9b).unwrap(),
        limit: 0xffff_ffff,
        base: 0,
    };
    let data = Segment {
        selector: 0x10,
        attributes: SegmentAttributes::new(0xc93).unwrap(),
        limit: 0xffff_ffff,
        base: 0x100,
    };
    let unusable = Segment {
        attributes: SegmentAttributes::new(0x1000).unwrap(),
        ..Segment::default()
    };
    state.cs = code;
    state.ss = data;
    state.ds = data;
    state.es = unusable;
    state.fs = Segment {
        base: 0x7fff_0000,
        ..data
    };
    state.gs = Segment {
        base: 0xffff_8880_0000_0000,
        ..data
    };
    state.tr = Segment {
        selector: 0x28,
        attributes: SegmentAttributes::new(0x8b).unwrap(),
        limit: 0x67,
        base: 0x9000,
    };
    state.ldtr = unusable;
    state.gdtr = DescriptorTable {
        base: 0x5000,
        limit: 0x2f,
    };
    state.idtr = DescriptorTable {
        base: 0x6000,
        limit: 0xfff,
    };
    state.interruptibility = Interruptibility::new(0).unwrap();
    state.activity = ActivityState::Active;
    state.tsc_offset = 0xffff_ffff_ffff_0000;
    let reply = Reply {
        state,
        inject: Some(Event::ExternalInterrupt(0x30)),
        request_interrupt_window: true,
    };
    let plan = plan_entry(&reply, &vmcs, &saved_registers(), &policy()).unwrap();
    assert!(
        plan.writes.len() < MAX_ENTRY_WRITES,
        "{} writes",
        plan.writes.len()
    );
    assert!(plan.writes.iter().all(|write| !write.field.is_read_only()));
    apply(&mut vmcs, &plan);
    vmcs.set(VmcsField::ExitReason, 7);
    let exit = decode_exit(&vmcs, &plan.saved, Mtd::ALL).unwrap();
    let mut expected = state;
    expected.mtd = Mtd::ALL;
    expected.pending_event = None;
    assert_eq!(exit.state, expected);
}
