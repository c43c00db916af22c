//! SVM exit decoding: EXITCODE, EXITINFO1/2, EXITINTINFO, nRIP and the state save area (APM
//! Vol. 2 section 15.6 and Appendix C) become one [`ExitMessage`].
//!
//! Reason mapping: 0x40..0x5f exception -> `Exception`, 0x60 INTR and 0x61 NMI -> `Preempted`,
//! 0x64 VINTR -> `InterruptWindow`, 0x72 -> `Cpuid`, 0x78 -> `Hlt`, 0x7b -> `Io`, 0x7c ->
//! `MsrRead` / `MsrWrite`, 0x7f -> `Shutdown`, 0x400 -> `MemoryFault`, -1 ->
//! `InvalidGuestState`, anything else -> `Unknown` with EXITINFO1.
use core::borrow::Borrow;

use sluice_abi::vcpu::{
    exit_header_words, interrupt_state_word, segment_word, ActivityState, DecodeError,
    DescriptorTable, Event, Exception, ExceptionVector, ExitMessage, ExitReason, Gpr, GuestPhys,
    InstructionLength, Interruptibility, IoDirection, IoExit, IoSize, MemoryAccess, Mtd, Segment,
    SegmentAttributes, VcpuState, EXIT_HEADER_WORDS, MAX_EXIT_WORDS,
};

use super::vmcb::{Vmcb, VmcbField, VmcbSegment, INTERRUPT_SHADOW, VMCB_SIZE};
use super::{exit_code, SvmFeatures};
use crate::error::ExitError;
use crate::state::{decode_event, ExitHeader, SavedRegisters, Vendor, Words, BASE_STATE};
use crate::vmx::exit::GPR_GROUPS;

/// IA32_EFER.SVME (APM Vol. 2 section 3.1.7): set in every guest's VMCB EFER because VMRUN
/// requires it, and hidden from the guest's view.
pub(crate) const EFER_SVME: u64 = 1 << 12;
/// CR0.PE.
const CR0_PE: u64 = 1 << 0;
/// Guest-physical addresses are below 2^52.
const GPA_LIMIT: u64 = 1 << 52;

/// Segment pairs of each state group, in message order.
pub(crate) const SEGMENT_GROUPS: [(Mtd, [VmcbSegment; 2]); 4] = [
    (Mtd::SEGMENT_CS_SS, [VmcbSegment::Cs, VmcbSegment::Ss]),
    (Mtd::SEGMENT_DS_ES, [VmcbSegment::Ds, VmcbSegment::Es]),
    (Mtd::SEGMENT_FS_GS, [VmcbSegment::Fs, VmcbSegment::Gs]),
    (Mtd::SEGMENT_TR_LDTR, [VmcbSegment::Tr, VmcbSegment::Ldtr]),
];

/// Decodes the exit recorded in `vmcb`. `saved` holds the GPRs the kernel saved after VMRUN
/// (all but RAX and RSP); `requested` adds state groups to [`BASE_STATE`].
pub fn decode_exit<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    saved: &SavedRegisters,
    requested: Mtd,
    features: SvmFeatures,
) -> Result<ExitMessage, ExitError> {
    let mut state = VcpuState::default();
    let header = decode_exit_into(vmcb, saved, requested, features, &mut state)?;
    Ok(header.into_message(state))
}

/// [`decode_exit`] without building the message: the state groups go into `state` (which
/// keeps its old values outside `state.mtd`), the rest is returned; encode both with
/// [`ExitHeader::encode`]. The kernel keeps `state` per CPU so no exit zeroes or moves it.
pub fn decode_exit_into<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    saved: &SavedRegisters,
    requested: Mtd,
    features: SvmFeatures,
    state: &mut VcpuState,
) -> Result<ExitHeader, ExitError> {
    let header = decode_header(vmcb, saved, features)?;
    read_state(vmcb, &saved.gpr, requested.union(BASE_STATE), state)?;
    Ok(header)
}

/// Encodes the exit recorded in `vmcb` straight into message words, without building a
/// [`VcpuState`]: exactly the words (and the errors) of [`decode_exit`] followed by
/// `ExitMessage::to_words` (the tests compare both on random VMCBs). Returns the word count.
pub fn encode_exit<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    saved: &SavedRegisters,
    requested: Mtd,
    features: SvmFeatures,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    let header = decode_header(vmcb, saved, features)?;
    let mtd = requested.union(BASE_STATE);
    if mtd == BASE_STATE {
        return encode_base(vmcb, saved, &header, out);
    }
    *out.first_chunk_mut::<EXIT_HEADER_WORDS>()
        .unwrap_or(&mut [0; EXIT_HEADER_WORDS]) = exit_header_words(
        &header.reason,
        header.instruction_length,
        header.hardware_exit_code,
        mtd,
    );
    let mut words = Words {
        out,
        position: EXIT_HEADER_WORDS,
    };
    let gpr = &saved.gpr;
    if mtd.contains(Mtd::GPR_ACDB) {
        words.put(vmcb.read(VmcbField::RAX));
        words.put(gpr.get(Gpr::Rcx));
        words.put(gpr.get(Gpr::Rdx));
        words.put(gpr.get(Gpr::Rbx));
    }
    if mtd.contains(Mtd::GPR_BSD) {
        words.put(gpr.get(Gpr::Rbp));
        words.put(gpr.get(Gpr::Rsi));
        words.put(gpr.get(Gpr::Rdi));
    }
    if mtd.contains(Mtd::GPR_R8_R15) {
        for register in [
            Gpr::R8,
            Gpr::R9,
            Gpr::R10,
            Gpr::R11,
            Gpr::R12,
            Gpr::R13,
            Gpr::R14,
            Gpr::R15,
        ] {
            words.put(gpr.get(register));
        }
    }
    if mtd.contains(Mtd::RSP) {
        words.put(vmcb.read(VmcbField::RSP));
    }
    if mtd.contains(Mtd::RIP) {
        words.put(vmcb.read(VmcbField::RIP));
    }
    if mtd.contains(Mtd::RFLAGS) {
        words.put(vmcb.read(VmcbField::RFLAGS));
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        words.put(vmcb.read(VmcbField::CR0));
        words.put(vmcb.read(VmcbField::CR2));
        words.put(vmcb.read(VmcbField::CR3));
        words.put(vmcb.read(VmcbField::CR4));
    }
    if mtd.contains(Mtd::EFER) {
        words.put(vmcb.read(VmcbField::EFER) & !EFER_SVME);
    }
    for (group, pair) in SEGMENT_GROUPS {
        if mtd.contains(group) {
            for segment in pair {
                let segment = read_segment(vmcb, segment);
                words.put(segment_word(
                    segment.selector,
                    segment.attributes,
                    segment.limit,
                ));
                words.put(segment.base);
            }
        }
    }
    if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
        let gdtr = read_table(vmcb, VmcbSegment::Gdtr, "GDTR")?;
        let idtr = read_table(vmcb, VmcbSegment::Idtr, "IDTR")?;
        for table in [gdtr, idtr] {
            words.put(u64::from(table.limit));
            words.put(table.base);
        }
    }
    if mtd.contains(Mtd::INTERRUPT_STATE) {
        words.put(interrupt_state_word(
            interruptibility(vmcb),
            ActivityState::Active,
        ));
    }
    if mtd.contains(Mtd::PENDING_EVENT) {
        words.put(pending_event(vmcb)?.map_or(0, Event::to_word));
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        words.put(vmcb.read(VmcbField::TSC_OFFSET));
    }
    Ok(words.position)
}

/// [`encode_exit`] for exactly [`BASE_STATE`] (what the kernel asks for): the same words, each
/// at its fixed offset, so no position is computed or bounds-checked at run time.
fn encode_base<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    saved: &SavedRegisters,
    header: &ExitHeader,
    out: &mut [u64; MAX_EXIT_WORDS],
) -> Result<usize, ExitError> {
    const H: usize = EXIT_HEADER_WORDS;
    const _: () = assert!(H + BASE_STATE.words() <= MAX_EXIT_WORDS);
    // The pending event is the only group that can fail: decode it first.
    let pending = pending_event(vmcb)?.map_or(0, Event::to_word);
    let [h0, h1, h2, h3, h4, h5] = exit_header_words(
        &header.reason,
        header.instruction_length,
        header.hardware_exit_code,
        BASE_STATE,
    );
    const _: () = assert!(EXIT_HEADER_WORDS == 6);
    let gpr = &saved.gpr;
    let cs = read_segment(vmcb, VmcbSegment::Cs);
    let ss = read_segment(vmcb, VmcbSegment::Ss);
    const COUNT: usize = H + BASE_STATE.words();
    let Some(slots) = out.first_chunk_mut::<COUNT>() else {
        // Unreachable: COUNT <= MAX_EXIT_WORDS (checked above at compile time).
        return Ok(0);
    };
    slots[0] = h0;
    slots[1] = h1;
    slots[2] = h2;
    slots[3] = h3;
    slots[4] = h4;
    slots[5] = h5;
    // GPR_ACDB, GPR_BSD, GPR_R8_R15
    slots[6] = vmcb.read(VmcbField::RAX);
    slots[7] = gpr.get(Gpr::Rcx);
    slots[8] = gpr.get(Gpr::Rdx);
    slots[9] = gpr.get(Gpr::Rbx);
    slots[10] = gpr.get(Gpr::Rbp);
    slots[11] = gpr.get(Gpr::Rsi);
    slots[12] = gpr.get(Gpr::Rdi);
    slots[13] = gpr.get(Gpr::R8);
    slots[14] = gpr.get(Gpr::R9);
    slots[15] = gpr.get(Gpr::R10);
    slots[16] = gpr.get(Gpr::R11);
    slots[17] = gpr.get(Gpr::R12);
    slots[18] = gpr.get(Gpr::R13);
    slots[19] = gpr.get(Gpr::R14);
    slots[20] = gpr.get(Gpr::R15);
    // RSP, RIP, RFLAGS
    slots[21] = vmcb.read(VmcbField::RSP);
    slots[22] = vmcb.read(VmcbField::RIP);
    slots[23] = vmcb.read(VmcbField::RFLAGS);
    // CONTROL_REGISTERS
    slots[24] = vmcb.read(VmcbField::CR0);
    slots[25] = vmcb.read(VmcbField::CR2);
    slots[26] = vmcb.read(VmcbField::CR3);
    slots[27] = vmcb.read(VmcbField::CR4);
    // EFER
    slots[28] = vmcb.read(VmcbField::EFER) & !EFER_SVME;
    // SEGMENT_CS_SS
    slots[29] = segment_word(cs.selector, cs.attributes, cs.limit);
    slots[30] = cs.base;
    slots[31] = segment_word(ss.selector, ss.attributes, ss.limit);
    slots[32] = ss.base;
    // INTERRUPT_STATE, PENDING_EVENT
    slots[33] = interrupt_state_word(interruptibility(vmcb), ActivityState::Active);
    slots[34] = pending;
    const _: () = assert!(COUNT == 35);
    Ok(COUNT)
}

fn interruptibility<B: Borrow<[u8; VMCB_SIZE]>>(vmcb: &Vmcb<B>) -> Interruptibility {
    let shadow = vmcb.read(VmcbField::INTERRUPT_SHADOW) & INTERRUPT_SHADOW != 0;
    let bits = if shadow {
        Interruptibility::BLOCKING_BY_STI
    } else {
        0
    };
    Interruptibility::new(bits).unwrap_or_default()
}

fn pending_event<B: Borrow<[u8; VMCB_SIZE]>>(vmcb: &Vmcb<B>) -> Result<Option<Event>, ExitError> {
    let info = vmcb.read(VmcbField::EXITINTINFO);
    // Nothing was being delivered: the valid bit (APM Vol. 2, 15.7.2, bit 31) is clear, so the
    // rest of the field means nothing (what `decode_event` concludes too, in more steps).
    if info & (1 << 31) == 0 {
        return Ok(None);
    }
    decode_event(
        info & 0xffff_ffff,
        (info >> 32) as u32,
        "EXITINTINFO",
        Vendor::Svm,
    )
}

/// The reason, instruction length and exit code of the exit recorded in `vmcb` (inlined into the
/// kernel's fast encoder, which the general decoder's second use would otherwise prevent).
#[inline(always)]
fn decode_header<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    saved: &SavedRegisters,
    features: SvmFeatures,
) -> Result<ExitHeader, ExitError> {
    let code = vmcb.read(VmcbField::EXITCODE);
    let info1 = vmcb.read(VmcbField::EXITINFO1);
    let info2 = vmcb.read(VmcbField::EXITINFO2);
    let gpr = &saved.gpr;
    let reason = match code {
        exit_code::EXCEPTION_BASE..=exit_code::EXCEPTION_LAST => {
            let vector = (code - exit_code::EXCEPTION_BASE) as u8;
            let bad = |error| ExitError::BadEvent {
                source: "exception intercept",
                error,
            };
            let number = ExceptionVector::new(vector).ok_or(bad(DecodeError::BadVector(vector)))?;
            // EXITINFO1 holds the error code of exceptions that push one; real mode pushes none.
            let protected = vmcb.read(VmcbField::CR0) & CR0_PE != 0;
            let error_code = (protected && number.delivers_error_code()).then_some(info1 as u32);
            ExitReason::Exception(Exception::new(number, error_code).map_err(bad)?)
        }
        exit_code::INTR | exit_code::NMI => ExitReason::Preempted,
        exit_code::VINTR => ExitReason::InterruptWindow,
        exit_code::CPUID => ExitReason::Cpuid,
        exit_code::HLT => ExitReason::Hlt,
        exit_code::IOIO => ExitReason::Io(io_exit(info1)?),
        exit_code::MSR => match info1 {
            0 => ExitReason::MsrRead {
                msr: gpr.get(Gpr::Rcx) as u32,
            },
            1 => ExitReason::MsrWrite {
                msr: gpr.get(Gpr::Rcx) as u32,
                value: (gpr.get(Gpr::Rdx) & 0xffff_ffff) << 32
                    | (vmcb.read(VmcbField::RAX) & 0xffff_ffff),
            },
            other => return Err(ExitError::BadMsrAccess(other)),
        },
        exit_code::SHUTDOWN => ExitReason::Shutdown,
        exit_code::NPF => {
            if info2 >= GPA_LIMIT {
                return Err(ExitError::GuestPhysicalAddressTooWide(info2));
            }
            // EXITINFO1 is a #PF-style error code: bit 1 write, bit 4 instruction fetch.
            let access = if info1 & (1 << 4) != 0 {
                MemoryAccess::Execute
            } else if info1 & (1 << 1) != 0 {
                MemoryAccess::Write
            } else {
                MemoryAccess::Read
            };
            ExitReason::MemoryFault {
                gpa: GuestPhys(info2),
                access,
            }
        }
        exit_code::INVALID => ExitReason::InvalidGuestState { detail: info1 },
        _ => ExitReason::Unknown { raw: info1 },
    };
    let instruction_length = match code {
        exit_code::CPUID | exit_code::HLT | exit_code::IOIO | exit_code::MSR
            if features.nrip_save =>
        {
            let length = vmcb
                .read(VmcbField::NEXT_RIP)
                .wrapping_sub(vmcb.read(VmcbField::RIP));
            Some(
                u8::try_from(length)
                    .ok()
                    .and_then(InstructionLength::new)
                    .ok_or(ExitError::BadInstructionLength {
                        exit_code: code,
                        length,
                    })?,
            )
        }
        _ => None,
    };
    Ok(ExitHeader {
        reason,
        instruction_length,
        hardware_exit_code: code,
    })
}

/// IOIO EXITINFO1 (APM Vol. 2 section 15.10.2, Figure 15-2): TYPE (bit 0, 1 = IN), STR (2),
/// REP (3), SZ8/SZ16/SZ32 (4..6, exactly one set), port (31:16).
fn io_exit(info1: u64) -> Result<IoExit, ExitError> {
    let size = match (info1 >> 4) & 0x7 {
        0b001 => IoSize::Byte,
        0b010 => IoSize::Word,
        0b100 => IoSize::Dword,
        _ => return Err(ExitError::BadIoSize(info1)),
    };
    Ok(IoExit {
        port: (info1 >> 16) as u16,
        size,
        direction: if info1 & 1 != 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: info1 & (1 << 2) != 0,
        rep: info1 & (1 << 3) != 0,
    })
}

fn read_segment<B: Borrow<[u8; VMCB_SIZE]>>(vmcb: &Vmcb<B>, segment: VmcbSegment) -> Segment {
    // The VMCB attribute field uses 12 bits; the rest are reserved and dropped.
    let attributes = (vmcb.read(segment.attributes()) & 0xfff) as u16;
    Segment {
        selector: vmcb.read(segment.selector()) as u16,
        attributes: SegmentAttributes::new(attributes).unwrap_or_default(),
        limit: vmcb.read(segment.limit()) as u32,
        base: vmcb.read(segment.base()),
    }
}

fn read_table<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    table: VmcbSegment,
    name: &'static str,
) -> Result<DescriptorTable, ExitError> {
    let limit = vmcb.read(table.limit());
    Ok(DescriptorTable {
        base: vmcb.read(table.base()),
        limit: u16::try_from(limit)
            .map_err(|_| ExitError::DescriptorLimitTooLarge { table: name, limit })?,
    })
}

fn read_state<B: Borrow<[u8; VMCB_SIZE]>>(
    vmcb: &Vmcb<B>,
    gpr: &sluice_abi::vcpu::GeneralRegisters,
    mtd: Mtd,
    state: &mut VcpuState,
) -> Result<(), ExitError> {
    state.mtd = mtd;
    for (group, registers) in GPR_GROUPS {
        if mtd.contains(group) {
            for &register in registers {
                state.gpr.set(register, gpr.get(register));
            }
        }
    }
    if mtd.contains(Mtd::GPR_ACDB) {
        // RAX lives in the VMCB; the saved slot is stale.
        state.gpr.set(Gpr::Rax, vmcb.read(VmcbField::RAX));
    }
    if mtd.contains(Mtd::RSP) {
        state.gpr.set(Gpr::Rsp, vmcb.read(VmcbField::RSP));
    }
    if mtd.contains(Mtd::RIP) {
        state.rip = vmcb.read(VmcbField::RIP);
    }
    if mtd.contains(Mtd::RFLAGS) {
        state.rflags = vmcb.read(VmcbField::RFLAGS);
    }
    if mtd.contains(Mtd::CONTROL_REGISTERS) {
        state.cr0 = vmcb.read(VmcbField::CR0);
        state.cr2 = vmcb.read(VmcbField::CR2);
        state.cr3 = vmcb.read(VmcbField::CR3);
        state.cr4 = vmcb.read(VmcbField::CR4);
    }
    if mtd.contains(Mtd::EFER) {
        state.efer = vmcb.read(VmcbField::EFER) & !EFER_SVME;
    }
    for (group, [first, second]) in SEGMENT_GROUPS {
        if mtd.contains(group) {
            let (a, b) = (read_segment(vmcb, first), read_segment(vmcb, second));
            let (slot_a, slot_b) = match first {
                VmcbSegment::Cs => (&mut state.cs, &mut state.ss),
                VmcbSegment::Ds => (&mut state.ds, &mut state.es),
                VmcbSegment::Fs => (&mut state.fs, &mut state.gs),
                _ => (&mut state.tr, &mut state.ldtr),
            };
            *slot_a = a;
            *slot_b = b;
        }
    }
    if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
        state.gdtr = read_table(vmcb, VmcbSegment::Gdtr, "GDTR")?;
        state.idtr = read_table(vmcb, VmcbSegment::Idtr, "IDTR")?;
    }
    if mtd.contains(Mtd::INTERRUPT_STATE) {
        state.interruptibility = interruptibility(vmcb);
        // HLT is intercepted; an SVM guest is always active when it exits.
        state.activity = ActivityState::Active;
    }
    if mtd.contains(Mtd::PENDING_EVENT) {
        state.pending_event = pending_event(vmcb)?;
    }
    if mtd.contains(Mtd::TSC_OFFSET) {
        state.tsc_offset = vmcb.read(VmcbField::TSC_OFFSET);
    }
    Ok(())
}
