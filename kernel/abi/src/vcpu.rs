//! The normalized VM-exit message shared by the kernel's VMX and SVM backends and the vmm-server.
//!
//! Every VM exit the kernel does not handle itself reaches the vCPU's VMM as one IPC message of
//! `u64` words ([`ExitMessage`]); the VMM answers with a [`Reply`]. Both backends produce the same
//! format, so the VMM never learns which CPU vendor it runs on.
//!
//! Exit message layout (word index: contents):
//! - 0: reason kind (bits 0..32, [`ExitReason::code`]) | format version (bits 32..48, [`FORMAT_VERSION`]) |
//!   instruction length (bits 48..56, 0 = unknown) | bits 56..64 zero
//! - 1: raw hardware exit code (VMX basic exit reason, SDM Vol. 3C Appendix C; SVM EXITCODE, APM
//!   Vol. 2 Appendix C), for reports only
//! - 2..5: reason payload (see [`ExitReason`]; unused words are zero)
//! - 5: message transfer descriptor ([`Mtd`]): which state groups follow
//! - 6..: the state groups present, in ascending bit order ([`Mtd::words`] counts them)
//!
//! Reply layout: 0: version (bits 32..48) | flags (bit 0: request an interrupt-window exit);
//! 1: event to inject ([`Event`] word, 0 = none); 2: [`Mtd`] of the state written back; 3..: groups.
//!
//! Decoding is strict: every reserved bit must be zero and the length must match the descriptor
//! exactly, so a message that decodes re-encodes to the identical words.
use core::fmt;

/// Version of the word layout carried in the header of both messages.
pub const FORMAT_VERSION: u16 = 1;
/// Words before the state groups of an exit message.
pub const EXIT_HEADER_WORDS: usize = 6;
/// Words before the state groups of a reply.
pub const REPLY_HEADER_WORDS: usize = 3;
/// Longest possible exit message (every state group present).
pub const MAX_EXIT_WORDS: usize = EXIT_HEADER_WORDS + Mtd::ALL.words();
/// Longest possible reply (every writable state group present).
pub const MAX_REPLY_WORDS: usize = REPLY_HEADER_WORDS + Mtd::ALL.words() - 1;

/// `vcpu_control` operation (argument 1) 0: run the vCPU until an exit needs the VMM.
pub const VCPU_RUN: u64 = 0;
/// `vcpu_control` operation 1: `vcpu_control(vcpu, VCPU_SET_EXIT_STATE, reason, groups)` makes
/// every later exit of `reason` (an [`ExitReason::code`], or [`ALL_EXIT_REASONS`]) carry the
/// [`Mtd`] `groups` on top of the state every exit carries (the vmm-server's required state:
/// GPRs, RSP, RIP, RFLAGS, control registers, EFER, CS/SS, interrupt state, pending event).
/// It replaces what an earlier call chose for that reason; `groups` 0 goes back to the base.
pub const VCPU_SET_EXIT_STATE: u64 = 1;
/// The `reason` of [`VCPU_SET_EXIT_STATE`] that sets every reason at once.
pub const ALL_EXIT_REASONS: u64 = 0;
/// The highest [`ExitReason::code`].
pub const MAX_EXIT_REASON_CODE: u32 = 13;

/// A guest-physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPhys(pub u64);

/// Message transfer descriptor: a bitmask of architectural state groups (NOVA's MTD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mtd(u64);

impl Mtd {
    /// RAX, RCX, RDX, RBX (4 words).
    pub const GPR_ACDB: Mtd = Mtd(1 << 0);
    /// RBP, RSI, RDI (3 words).
    pub const GPR_BSD: Mtd = Mtd(1 << 1);
    /// R8..R15 (8 words).
    pub const GPR_R8_R15: Mtd = Mtd(1 << 2);
    /// RSP (1 word).
    pub const RSP: Mtd = Mtd(1 << 3);
    /// RIP (1 word).
    pub const RIP: Mtd = Mtd(1 << 4);
    /// RFLAGS (1 word).
    pub const RFLAGS: Mtd = Mtd(1 << 5);
    /// CR0, CR2, CR3, CR4 (4 words).
    pub const CONTROL_REGISTERS: Mtd = Mtd(1 << 6);
    /// IA32_EFER (1 word).
    pub const EFER: Mtd = Mtd(1 << 7);
    /// CS, SS ([`Segment`], 2 words each).
    pub const SEGMENT_CS_SS: Mtd = Mtd(1 << 8);
    /// DS, ES (2 words each).
    pub const SEGMENT_DS_ES: Mtd = Mtd(1 << 9);
    /// FS, GS (2 words each).
    pub const SEGMENT_FS_GS: Mtd = Mtd(1 << 10);
    /// TR, LDTR (2 words each).
    pub const SEGMENT_TR_LDTR: Mtd = Mtd(1 << 11);
    /// GDTR, IDTR (limit word, base word each).
    pub const DESCRIPTOR_TABLES: Mtd = Mtd(1 << 12);
    /// Interruptibility (bits 0..32) and activity state (bits 32..64) (1 word).
    pub const INTERRUPT_STATE: Mtd = Mtd(1 << 13);
    /// Exit only: the event whose delivery the exit interrupted (VMX IDT-vectoring information,
    /// SVM EXITINTINFO), which the VMM must re-inject (1 [`Event`] word, 0 = none).
    pub const PENDING_EVENT: Mtd = Mtd(1 << 14);
    /// TSC offset (1 word).
    pub const TSC_OFFSET: Mtd = Mtd(1 << 15);
    /// Every defined group.
    pub const ALL: Mtd = Mtd((1 << 16) - 1);
    /// Number of words each group bit (by bit index) occupies.
    #[cfg(test)]
    const GROUP_WORDS: [usize; 16] = [4, 3, 8, 1, 1, 1, 4, 1, 4, 4, 4, 4, 4, 1, 1, 1];

    /// No state.
    pub const fn empty() -> Mtd {
        Mtd(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// A descriptor from raw bits, or `None` if an undefined bit is set.
    pub const fn from_bits(bits: u64) -> Option<Mtd> {
        if bits & !Mtd::ALL.0 == 0 {
            Some(Mtd(bits))
        } else {
            None
        }
    }
    /// Whether every group of `other` is in `self`.
    #[inline]
    pub const fn contains(self, other: Mtd) -> bool {
        self.0 & other.0 == other.0
    }
    /// Both sets of groups.
    pub const fn union(self, other: Mtd) -> Mtd {
        Mtd(self.0 | other.0)
    }
    /// Groups of `self` not in `other`.
    pub const fn difference(self, other: Mtd) -> Mtd {
        Mtd(self.0 & !other.0)
    }
    /// Number of state words the groups occupy: two table lookups (one per byte of the
    /// descriptor), so it costs the same with or without a POPCNT instruction.
    #[inline]
    pub const fn words(self) -> usize {
        let bits = self.0 as usize;
        (WORDS_LOW[bits & 0xff] + WORDS_HIGH[(bits >> 8) & 0xff]) as usize
    }
}

/// Words of the groups of bits 0..8 (GPR_ACDB 4, GPR_BSD 3, GPR_R8_R15 8, RSP, RIP, RFLAGS 1,
/// CONTROL_REGISTERS 4, EFER 1) for every low byte of a descriptor.
const WORDS_LOW: [u8; 256] = byte_word_table([4, 3, 8, 1, 1, 1, 4, 1]);
/// Words of the groups of bits 8..16 (four segment/table groups of 4, INTERRUPT_STATE,
/// PENDING_EVENT, TSC_OFFSET 1) for every high byte.
const WORDS_HIGH: [u8; 256] = byte_word_table([4, 4, 4, 4, 4, 1, 1, 1]);

const fn byte_word_table(sizes: [u8; 8]) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        let mut words = 0;
        while bit < 8 {
            if byte & (1 << bit) != 0 {
                words += sizes[bit];
            }
            bit += 1;
        }
        table[byte] = words;
        byte += 1;
    }
    table
}

impl core::ops::BitOr for Mtd {
    type Output = Mtd;
    fn bitor(self, other: Mtd) -> Mtd {
        self.union(other)
    }
}

/// General-purpose registers in the x86 encoding order (SDM Vol. 2A section 2.1.5, Table 2-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// All registers in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];
}

/// The sixteen general-purpose registers, indexed by [`Gpr`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GeneralRegisters([u64; 16]);

impl GeneralRegisters {
    /// The full 64-bit value of `register`.
    #[inline]
    pub fn get(&self, register: Gpr) -> u64 {
        self.0[register as usize]
    }
    /// Sets the full 64-bit value of `register`.
    #[inline]
    pub fn set(&mut self, register: Gpr, value: u64) {
        self.0[register as usize] = value;
    }
    /// All sixteen in [`Gpr`] order (the layout the kernel's VM entry stubs load and store).
    #[inline]
    pub fn as_mut_array(&mut self) -> &mut [u64; 16] {
        &mut self.0
    }

    /// All sixteen in [`Gpr`] order, read-only.
    #[inline]
    pub fn as_array(&self) -> &[u64; 16] {
        &self.0
    }
}

/// Segment attributes in the SVM VMCB format (APM Vol. 2 section 15.5.1): type (bits 0..4), S (4),
/// DPL (5..7), P (7), AVL (8), L (9), D/B (10), G (11); plus bit 12 = unusable (VMX access rights
/// bit 16, SDM Vol. 3C section 25.4.1). The VMX backend converts: `(ar & 0xff) | ((ar >> 4) & 0xf00)
/// | (((ar >> 16) & 1) << 12)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SegmentAttributes(u16);

impl SegmentAttributes {
    const DEFINED: u16 = 0x1fff;
    /// Attributes from raw bits, or `None` if a bit above 12 is set.
    pub const fn new(bits: u16) -> Option<SegmentAttributes> {
        if bits & !Self::DEFINED == 0 {
            Some(SegmentAttributes(bits))
        } else {
            None
        }
    }
    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
    /// L: a 64-bit code segment.
    pub const fn long_mode(self) -> bool {
        self.0 & (1 << 9) != 0
    }
    /// D/B: default operand size 32 bits (code) or big stack.
    pub const fn default_big(self) -> bool {
        self.0 & (1 << 10) != 0
    }
    /// P: present.
    pub const fn present(self) -> bool {
        self.0 & (1 << 7) != 0
    }
}

/// A segment register's selector and hidden part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Visible selector.
    pub selector: u16,
    /// Attributes.
    pub attributes: SegmentAttributes,
    /// Limit in bytes (already scaled by G).
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DescriptorTable {
    /// Base linear address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// Guest interruptibility state, VMX encoding (SDM Vol. 3C section 25.4.2, Table 25-3); the SVM
/// backend maps its interrupt shadow to [`Interruptibility::BLOCKING_BY_STI`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interruptibility(u32);

impl Interruptibility {
    /// Blocking by STI (bit 0).
    pub const BLOCKING_BY_STI: u32 = 1 << 0;
    /// Blocking by MOV SS (bit 1).
    pub const BLOCKING_BY_MOV_SS: u32 = 1 << 1;
    /// Blocking by NMI (bit 3).
    pub const BLOCKING_BY_NMI: u32 = 1 << 3;
    const DEFINED: u32 = Self::BLOCKING_BY_STI | Self::BLOCKING_BY_MOV_SS | Self::BLOCKING_BY_NMI;
    /// From raw bits, or `None` if an undefined bit is set.
    pub const fn new(bits: u32) -> Option<Interruptibility> {
        if bits & !Self::DEFINED == 0 {
            Some(Interruptibility(bits))
        } else {
            None
        }
    }
    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// Guest activity state (SDM Vol. 3C section 25.4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ActivityState {
    /// Executing instructions.
    #[default]
    Active = 0,
    /// Halted.
    Hlt = 1,
    /// Shut down after a triple fault.
    Shutdown = 2,
    /// Waiting for a startup IPI.
    WaitForSipi = 3,
}

/// An exception vector, 0..=31 (SDM Vol. 3A section 6.3.1, Table 6-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExceptionVector(u8);

impl ExceptionVector {
    /// #UD.
    pub const INVALID_OPCODE: ExceptionVector = ExceptionVector(6);
    /// #DF.
    pub const DOUBLE_FAULT: ExceptionVector = ExceptionVector(8);
    /// #GP.
    pub const GENERAL_PROTECTION: ExceptionVector = ExceptionVector(13);
    /// #PF.
    pub const PAGE_FAULT: ExceptionVector = ExceptionVector(14);
    /// A vector, or `None` above 31.
    pub const fn new(vector: u8) -> Option<ExceptionVector> {
        if vector < 32 {
            Some(ExceptionVector(vector))
        } else {
            None
        }
    }
    /// The vector number.
    pub const fn number(self) -> u8 {
        self.0
    }
    /// Whether the exception can push an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
    /// #VC, #SX; SDM Vol. 3A Table 6-1, APM Vol. 2 section 8.2).
    pub const fn delivers_error_code(self) -> bool {
        matches!(self.0, 8 | 10..=14 | 17 | 21 | 29 | 30)
    }
}

/// An exception with its error code, checked so that only vectors that have one carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exception {
    vector: ExceptionVector,
    error_code: Option<u32>,
}

impl Exception {
    /// An exception; fails if `error_code` is given for a vector that never delivers one. (A
    /// vector that does may still lack one: real-mode delivery pushes none.)
    pub const fn new(
        vector: ExceptionVector,
        error_code: Option<u32>,
    ) -> Result<Self, DecodeError> {
        if error_code.is_some() && !vector.delivers_error_code() {
            return Err(DecodeError::ErrorCodeNotAllowed(vector.0));
        }
        Ok(Exception { vector, error_code })
    }
    /// The vector.
    pub const fn vector(self) -> ExceptionVector {
        self.vector
    }
    /// The error code, if any.
    pub const fn error_code(self) -> Option<u32> {
        self.error_code
    }
}

/// An event to inject, or one whose delivery an exit interrupted.
///
/// Word: vector (bits 0..8) | type (bits 8..11: 1 external interrupt, 2 NMI, 3 exception) |
/// error code valid (bit 11) | error code (bits 32..64); the word 0 means "no event".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A maskable external interrupt with this vector.
    ExternalInterrupt(u8),
    /// A non-maskable interrupt (vector 2).
    Nmi,
    /// A hardware exception.
    Exception(Exception),
}

impl Event {
    /// The event's word.
    pub fn to_word(self) -> u64 {
        match self {
            Event::ExternalInterrupt(vector) => u64::from(vector) | 1 << 8,
            Event::Nmi => 2 | 2 << 8,
            Event::Exception(exception) => {
                let base = u64::from(exception.vector.0) | 3 << 8;
                match exception.error_code {
                    Some(code) => base | 1 << 11 | u64::from(code) << 32,
                    None => base,
                }
            }
        }
    }
    /// An optional event from its word (0 = none).
    pub fn from_word(word: u64) -> Result<Option<Event>, DecodeError> {
        if word == 0 {
            return Ok(None);
        }
        let vector = (word & 0xff) as u8;
        let kind = (word >> 8 & 0x7) as u8;
        let has_error_code = word & 1 << 11 != 0;
        let error_code = (word >> 32) as u32;
        if word & 0xffff_f000 != 0 || (!has_error_code && error_code != 0) {
            return Err(DecodeError::ReservedBits("event"));
        }
        if kind != 3 && has_error_code {
            return Err(DecodeError::ErrorCodeNotAllowed(vector));
        }
        match kind {
            1 => Ok(Some(Event::ExternalInterrupt(vector))),
            2 if vector == 2 => Ok(Some(Event::Nmi)),
            2 => Err(DecodeError::BadVector(vector)),
            3 => {
                let vector = ExceptionVector::new(vector).ok_or(DecodeError::BadVector(vector))?;
                let exception = Exception::new(vector, has_error_code.then_some(error_code))?;
                Ok(Some(Event::Exception(exception)))
            }
            other => Err(DecodeError::BadEventKind(other)),
        }
    }
}

fn optional_event_word(event: Option<Event>) -> u64 {
    event.map_or(0, Event::to_word)
}

/// The architectural state words a message carries; only the groups in `mtd` are meaningful.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct VcpuState {
    /// Which groups are valid.
    pub mtd: Mtd,
    pub gpr: GeneralRegisters,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr: DescriptorTable,
    pub idtr: DescriptorTable,
    pub interruptibility: Interruptibility,
    pub activity: ActivityState,
    /// Exit only ([`Mtd::PENDING_EVENT`]).
    pub pending_event: Option<Event>,
    pub tsc_offset: u64,
}

/// Length of the exiting instruction, 1..=15 bytes (SDM Vol. 2A section 2.3.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstructionLength(u8);

impl InstructionLength {
    /// A length, or `None` outside 1..=15.
    pub const fn new(length: u8) -> Option<InstructionLength> {
        if length >= 1 && length <= 15 {
            Some(InstructionLength(length))
        } else {
            None
        }
    }
    /// The length in bytes.
    pub const fn bytes(self) -> u8 {
        self.0
    }
}

/// Width of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IoSize {
    /// 8 bits.
    Byte = 1,
    /// 16 bits.
    Word = 2,
    /// 32 bits.
    Dword = 4,
}

impl IoSize {
    /// The width in bytes.
    pub const fn bytes(self) -> usize {
        self as usize
    }
}

/// Direction of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDirection {
    /// IN/INS: the guest reads the port.
    In,
    /// OUT/OUTS: the guest writes the port (data in RAX for non-string forms).
    Out,
}

/// A port I/O exit (VMX exit qualification, SDM Vol. 3C Table 28-5; SVM IOIO EXITINFO1, APM
/// Vol. 2 section 15.10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoExit {
    /// Port number.
    pub port: u16,
    /// Access width.
    pub size: IoSize,
    /// Direction.
    pub direction: IoDirection,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
}

/// Kind of access that caused a memory fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemoryAccess {
    /// Data read.
    Read = 0,
    /// Data write.
    Write = 1,
    /// Instruction fetch.
    Execute = 2,
}

/// Why the guest exited, normalized across VMX and SVM. Discriminants are the wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ExitReason {
    /// Port I/O. Payload word 2: port | size << 16 | in << 24 | string << 25 | rep << 26.
    Io(IoExit) = 1,
    /// EPT violation / nested page fault. Payload: GPA (below 2^52), access (0 read, 1 write,
    /// 2 execute).
    MemoryFault {
        /// Faulting guest-physical address.
        gpa: GuestPhys,
        /// What the guest tried.
        access: MemoryAccess,
    } = 2,
    /// CPUID; leaf and subleaf are in RAX and RCX.
    Cpuid = 3,
    /// RDMSR. Payload: MSR index.
    MsrRead {
        /// MSR index (ECX).
        msr: u32,
    } = 4,
    /// WRMSR. Payload: MSR index, value (EDX:EAX).
    MsrWrite {
        /// MSR index (ECX).
        msr: u32,
        /// Value written.
        value: u64,
    } = 5,
    /// HLT.
    Hlt = 6,
    /// The guest can now take an interrupt (requested by a reply).
    InterruptWindow = 7,
    /// An intercepted exception. Payload: vector | error-code-valid << 8, error code.
    Exception(Exception) = 8,
    /// Triple fault (VMX exit reason 2).
    TripleFault = 9,
    /// Shutdown (SVM SHUTDOWN intercept).
    Shutdown = 10,
    /// The kernel's preemption timer or host timer ended the time slice.
    Preempted = 11,
    /// VM entry failed on invalid guest state. Payload: hardware detail (VMX exit
    /// qualification, SVM EXITINFO1).
    InvalidGuestState {
        /// Hardware detail.
        detail: u64,
    } = 12,
    /// An exit the backend does not normalize. Payload: exit qualification / EXITINFO1.
    Unknown {
        /// Hardware detail.
        raw: u64,
    } = 13,
}

impl ExitReason {
    /// The wire code of this reason.
    pub const fn code(&self) -> u32 {
        match self {
            ExitReason::Io(_) => 1,
            ExitReason::MemoryFault { .. } => 2,
            ExitReason::Cpuid => 3,
            ExitReason::MsrRead { .. } => 4,
            ExitReason::MsrWrite { .. } => 5,
            ExitReason::Hlt => 6,
            ExitReason::InterruptWindow => 7,
            ExitReason::Exception(_) => 8,
            ExitReason::TripleFault => 9,
            ExitReason::Shutdown => 10,
            ExitReason::Preempted => 11,
            ExitReason::InvalidGuestState { .. } => 12,
            ExitReason::Unknown { .. } => 13,
        }
    }

    fn payload(&self) -> [u64; 3] {
        match *self {
            ExitReason::Io(io) => [
                u64::from(io.port)
                    | (io.size as u64) << 16
                    | u64::from(io.direction == IoDirection::In) << 24
                    | u64::from(io.string) << 25
                    | u64::from(io.rep) << 26,
                0,
                0,
            ],
            ExitReason::MemoryFault { gpa, access } => [gpa.0, access as u64, 0],
            ExitReason::MsrRead { msr } => [u64::from(msr), 0, 0],
            ExitReason::MsrWrite { msr, value } => [u64::from(msr), value, 0],
            ExitReason::Exception(exception) => [
                u64::from(exception.vector.0) | u64::from(exception.error_code.is_some()) << 8,
                u64::from(exception.error_code.unwrap_or(0)),
                0,
            ],
            ExitReason::InvalidGuestState { detail } => [detail, 0, 0],
            ExitReason::Unknown { raw } => [raw, 0, 0],
            ExitReason::Cpuid
            | ExitReason::Hlt
            | ExitReason::InterruptWindow
            | ExitReason::TripleFault
            | ExitReason::Shutdown
            | ExitReason::Preempted => [0, 0, 0],
        }
    }

    fn from_payload(code: u32, payload: [u64; 3]) -> Result<ExitReason, DecodeError> {
        let [first, second, third] = payload;
        let used = match code {
            1 | 2 | 5 | 8 => 2,
            4 | 12 | 13 => 1,
            3 | 6 | 7 | 9 | 10 | 11 => 0,
            other => return Err(DecodeError::UnknownReason(other)),
        };
        let unused_nonzero = match used {
            0 => first | second | third,
            1 => second | third,
            _ => third,
        };
        // Io uses one payload word only.
        if unused_nonzero != 0 || (code == 1 && second != 0) {
            return Err(DecodeError::ReservedBits("exit payload"));
        }
        Ok(match code {
            1 => ExitReason::Io(decode_io(first)?),
            2 => {
                if first >> 52 != 0 {
                    return Err(DecodeError::ReservedBits("guest-physical address"));
                }
                let access = match second {
                    0 => MemoryAccess::Read,
                    1 => MemoryAccess::Write,
                    2 => MemoryAccess::Execute,
                    other => return Err(DecodeError::BadMemoryAccess(other)),
                };
                ExitReason::MemoryFault {
                    gpa: GuestPhys(first),
                    access,
                }
            }
            3 => ExitReason::Cpuid,
            4 => ExitReason::MsrRead {
                msr: msr_index(first)?,
            },
            5 => ExitReason::MsrWrite {
                msr: msr_index(first)?,
                value: second,
            },
            6 => ExitReason::Hlt,
            7 => ExitReason::InterruptWindow,
            8 => {
                if first >> 9 != 0 || second >> 32 != 0 || (first >> 8 == 0 && second != 0) {
                    return Err(DecodeError::ReservedBits("exception payload"));
                }
                let number = (first & 0xff) as u8;
                let vector = ExceptionVector::new(number).ok_or(DecodeError::BadVector(number))?;
                let error_code = (first >> 8 != 0).then_some(second as u32);
                ExitReason::Exception(Exception::new(vector, error_code)?)
            }
            9 => ExitReason::TripleFault,
            10 => ExitReason::Shutdown,
            11 => ExitReason::Preempted,
            12 => ExitReason::InvalidGuestState { detail: first },
            _ => ExitReason::Unknown { raw: first },
        })
    }
}

fn msr_index(word: u64) -> Result<u32, DecodeError> {
    u32::try_from(word).map_err(|_| DecodeError::ReservedBits("MSR index"))
}

fn decode_io(word: u64) -> Result<IoExit, DecodeError> {
    if word >> 27 != 0 {
        return Err(DecodeError::ReservedBits("I/O payload"));
    }
    let size = match (word >> 16) as u8 {
        1 => IoSize::Byte,
        2 => IoSize::Word,
        4 => IoSize::Dword,
        other => return Err(DecodeError::BadIoSize(other)),
    };
    Ok(IoExit {
        port: word as u16,
        size,
        direction: if word & 1 << 24 != 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: word & 1 << 25 != 0,
        rep: word & 1 << 26 != 0,
    })
}

/// Why a message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer words than the header and descriptor require.
    Truncated {
        /// Words required.
        needed: usize,
        /// Words given.
        available: usize,
    },
    /// More words than the descriptor describes.
    TrailingWords {
        /// Words expected.
        expected: usize,
        /// Words given.
        actual: usize,
    },
    /// The header's format version is not [`FORMAT_VERSION`].
    UnsupportedVersion(u16),
    /// The reason code is not an [`ExitReason`].
    UnknownReason(u32),
    /// A reserved bit or unused word in the named field is set.
    ReservedBits(&'static str),
    /// Instruction length above 15.
    BadInstructionLength(u8),
    /// Port access size other than 1, 2 or 4.
    BadIoSize(u8),
    /// Memory access kind other than 0, 1 or 2.
    BadMemoryAccess(u64),
    /// Vector not valid for its event type.
    BadVector(u8),
    /// An error code for a vector or event type that has none.
    ErrorCodeNotAllowed(u8),
    /// Event type other than 1, 2 or 3.
    BadEventKind(u8),
    /// Undefined descriptor bits.
    UnknownStateGroups(u64),
    /// A reply carries a group the VMM cannot write ([`Mtd::PENDING_EVENT`]).
    GroupNotWritable(u64),
    /// Undefined segment attribute bits.
    BadSegmentAttributes(u16),
    /// Undefined interruptibility bits.
    BadInterruptibility(u32),
    /// Activity state above 3.
    BadActivityState(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(f, "message truncated: {available} words, {needed} needed")
            }
            DecodeError::TrailingWords { expected, actual } => {
                write!(
                    f,
                    "message has {actual} words, descriptor describes {expected}"
                )
            }
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported message version {v}"),
            DecodeError::UnknownReason(code) => write!(f, "unknown exit reason code {code}"),
            DecodeError::ReservedBits(field) => write!(f, "reserved bits set in {field}"),
            DecodeError::BadInstructionLength(n) => write!(f, "instruction length {n} above 15"),
            DecodeError::BadIoSize(n) => write!(f, "port access size {n} is not 1, 2 or 4"),
            DecodeError::BadMemoryAccess(n) => write!(f, "memory access kind {n} is undefined"),
            DecodeError::BadVector(v) => write!(f, "vector {v} invalid for its event type"),
            DecodeError::ErrorCodeNotAllowed(v) => write!(f, "vector {v} has no error code"),
            DecodeError::BadEventKind(k) => write!(f, "event type {k} is undefined"),
            DecodeError::UnknownStateGroups(bits) => {
                write!(f, "undefined state groups {bits:#x} in descriptor")
            }
            DecodeError::GroupNotWritable(bits) => {
                write!(f, "state groups {bits:#x} cannot be written by a reply")
            }
            DecodeError::BadSegmentAttributes(bits) => {
                write!(f, "undefined segment attribute bits in {bits:#x}")
            }
            DecodeError::BadInterruptibility(bits) => {
                write!(f, "undefined interruptibility bits in {bits:#x}")
            }
            DecodeError::BadActivityState(state) => write!(f, "activity state {state} undefined"),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is shorter than the message.
    BufferTooSmall {
        /// Words required.
        needed: usize,
        /// Words available.
        available: usize,
    },
    /// A reply carries a group the VMM cannot write ([`Mtd::PENDING_EVENT`]).
    GroupNotWritable(u64),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed, available } => {
                write!(f, "buffer of {available} words, message needs {needed}")
            }
            EncodeError::GroupNotWritable(bits) => {
                write!(f, "state groups {bits:#x} cannot be written by a reply")
            }
        }
    }
}

/// Writes words into a caller's buffer whose length was checked in advance.
struct Writer<'a> {
    out: &'a mut [u64],
    position: usize,
}

impl Writer<'_> {
    #[inline]
    fn push(&mut self, word: u64) -> Result<(), EncodeError> {
        let available = self.out.len();
        let slot = self
            .out
            .get_mut(self.position)
            .ok_or(EncodeError::BufferTooSmall {
                needed: self.position + 1,
                available,
            })?;
        *slot = word;
        self.position += 1;
        Ok(())
    }
}

/// Reads words from a message whose length was checked in advance.
struct Reader<'a> {
    words: &'a [u64],
    position: usize,
}

impl Reader<'_> {
    #[inline]
    fn next(&mut self) -> Result<u64, DecodeError> {
        let word = *self
            .words
            .get(self.position)
            .ok_or(DecodeError::Truncated {
                needed: self.position + 1,
                available: self.words.len(),
            })?;
        self.position += 1;
        Ok(word)
    }
}

fn check_length(needed: usize, available: usize) -> Result<(), DecodeError> {
    if available < needed {
        Err(DecodeError::Truncated { needed, available })
    } else if available > needed {
        Err(DecodeError::TrailingWords {
            expected: needed,
            actual: available,
        })
    } else {
        Ok(())
    }
}

fn segment_words(segment: &Segment) -> [u64; 2] {
    [
        segment_word(segment.selector, segment.attributes, segment.limit),
        segment.base,
    ]
}

fn read_segment(reader: &mut Reader<'_>) -> Result<Segment, DecodeError> {
    let word = reader.next()?;
    let base = reader.next()?;
    let bits = (word >> 16) as u16;
    Ok(Segment {
        selector: word as u16,
        attributes: SegmentAttributes::new(bits).ok_or(DecodeError::BadSegmentAttributes(bits))?,
        limit: (word >> 32) as u32,
        base,
    })
}

fn read_table(reader: &mut Reader<'_>) -> Result<DescriptorTable, DecodeError> {
    let limit = reader.next()?;
    let base = reader.next()?;
    let limit = u16::try_from(limit).map_err(|_| DecodeError::ReservedBits("descriptor limit"))?;
    Ok(DescriptorTable { base, limit })
}

const GPR_GROUPS: [(Mtd, &[Gpr]); 4] = [
    (Mtd::GPR_ACDB, &[Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx]),
    (Mtd::GPR_BSD, &[Gpr::Rbp, Gpr::Rsi, Gpr::Rdi]),
    (
        Mtd::GPR_R8_R15,
        &[
            Gpr::R8,
            Gpr::R9,
            Gpr::R10,
            Gpr::R11,
            Gpr::R12,
            Gpr::R13,
            Gpr::R14,
            Gpr::R15,
        ],
    ),
    (Mtd::RSP, &[Gpr::Rsp]),
];

impl VcpuState {
    fn encode_groups(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        let mtd = self.mtd;
        for (group, registers) in GPR_GROUPS {
            if mtd.contains(group) {
                for &register in registers {
                    writer.push(self.gpr.get(register))?;
                }
            }
        }
        let simple: [(Mtd, &[u64]); 4] = [
            (Mtd::RIP, &[self.rip]),
            (Mtd::RFLAGS, &[self.rflags]),
            (
                Mtd::CONTROL_REGISTERS,
                &[self.cr0, self.cr2, self.cr3, self.cr4],
            ),
            (Mtd::EFER, &[self.efer]),
        ];
        let segments = [
            (Mtd::SEGMENT_CS_SS, [&self.cs, &self.ss]),
            (Mtd::SEGMENT_DS_ES, [&self.ds, &self.es]),
            (Mtd::SEGMENT_FS_GS, [&self.fs, &self.gs]),
            (Mtd::SEGMENT_TR_LDTR, [&self.tr, &self.ldtr]),
        ];
        for (group, words) in simple {
            if mtd.contains(group) {
                for &word in words {
                    writer.push(word)?;
                }
            }
        }
        for (group, pair) in segments {
            if mtd.contains(group) {
                for segment in pair {
                    for word in segment_words(segment) {
                        writer.push(word)?;
                    }
                }
            }
        }
        if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
            for table in [self.gdtr, self.idtr] {
                writer.push(u64::from(table.limit))?;
                writer.push(table.base)?;
            }
        }
        if mtd.contains(Mtd::INTERRUPT_STATE) {
            writer.push(interrupt_state_word(self.interruptibility, self.activity))?;
        }
        if mtd.contains(Mtd::PENDING_EVENT) {
            writer.push(optional_event_word(self.pending_event))?;
        }
        if mtd.contains(Mtd::TSC_OFFSET) {
            writer.push(self.tsc_offset)?;
        }
        Ok(())
    }

    /// Reads the groups of `mtd` into `state` (and sets `state.mtd`); fields of other groups
    /// keep whatever they held. On error `state` is partly written.
    fn decode_groups_into(
        state: &mut VcpuState,
        mtd: Mtd,
        reader: &mut Reader<'_>,
    ) -> Result<(), DecodeError> {
        state.mtd = mtd;
        for (group, registers) in GPR_GROUPS {
            if mtd.contains(group) {
                for &register in registers {
                    state.gpr.set(register, reader.next()?);
                }
            }
        }
        if mtd.contains(Mtd::RIP) {
            state.rip = reader.next()?;
        }
        if mtd.contains(Mtd::RFLAGS) {
            state.rflags = reader.next()?;
        }
        if mtd.contains(Mtd::CONTROL_REGISTERS) {
            for register in [
                &mut state.cr0,
                &mut state.cr2,
                &mut state.cr3,
                &mut state.cr4,
            ] {
                *register = reader.next()?;
            }
        }
        if mtd.contains(Mtd::EFER) {
            state.efer = reader.next()?;
        }
        let segments = [
            (Mtd::SEGMENT_CS_SS, [&mut state.cs, &mut state.ss]),
            (Mtd::SEGMENT_DS_ES, [&mut state.ds, &mut state.es]),
            (Mtd::SEGMENT_FS_GS, [&mut state.fs, &mut state.gs]),
            (Mtd::SEGMENT_TR_LDTR, [&mut state.tr, &mut state.ldtr]),
        ];
        for (group, pair) in segments {
            if mtd.contains(group) {
                for segment in pair {
                    *segment = read_segment(reader)?;
                }
            }
        }
        if mtd.contains(Mtd::DESCRIPTOR_TABLES) {
            state.gdtr = read_table(reader)?;
            state.idtr = read_table(reader)?;
        }
        if mtd.contains(Mtd::INTERRUPT_STATE) {
            let word = reader.next()?;
            let bits = word as u32;
            state.interruptibility =
                Interruptibility::new(bits).ok_or(DecodeError::BadInterruptibility(bits))?;
            state.activity = match (word >> 32) as u32 {
                0 => ActivityState::Active,
                1 => ActivityState::Hlt,
                2 => ActivityState::Shutdown,
                3 => ActivityState::WaitForSipi,
                other => return Err(DecodeError::BadActivityState(other)),
            };
        }
        if mtd.contains(Mtd::PENDING_EVENT) {
            state.pending_event = Event::from_word(reader.next()?)?;
        }
        if mtd.contains(Mtd::TSC_OFFSET) {
            state.tsc_offset = reader.next()?;
        }
        Ok(())
    }
}

fn version_of(word: u64) -> Result<(), DecodeError> {
    let version = (word >> 32) as u16;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(())
}

fn mtd_of(word: u64) -> Result<Mtd, DecodeError> {
    Mtd::from_bits(word).ok_or(DecodeError::UnknownStateGroups(word & !Mtd::ALL.0))
}

/// One VM exit as delivered to the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitMessage {
    /// Why the guest exited.
    pub reason: ExitReason,
    /// Length of the exiting instruction when the hardware reported it (VMX VM-exit instruction
    /// length for instruction exits, SDM Vol. 3C section 28.2.5; SVM nRIP - RIP with NRIP save).
    pub instruction_length: Option<InstructionLength>,
    /// Raw hardware exit code, for reports.
    pub hardware_exit_code: u64,
    /// The state words the kernel transferred (`state.mtd` says which).
    pub state: VcpuState,
}

impl ExitMessage {
    /// Number of words [`ExitMessage::to_words`] writes.
    pub fn word_count(&self) -> usize {
        EXIT_HEADER_WORDS + self.state.mtd.words()
    }

    /// Encodes into `out`, returning the number of words written.
    pub fn to_words(&self, out: &mut [u64]) -> Result<usize, EncodeError> {
        encode_exit(
            &self.reason,
            self.instruction_length,
            self.hardware_exit_code,
            &self.state,
            out,
        )
    }

    /// Decodes a message, rejecting any malformed one.
    pub fn from_words(words: &[u64]) -> Result<ExitMessage, DecodeError> {
        let mut reader = Reader { words, position: 0 };
        if words.len() < EXIT_HEADER_WORDS {
            return Err(DecodeError::Truncated {
                needed: EXIT_HEADER_WORDS,
                available: words.len(),
            });
        }
        let head = reader.next()?;
        version_of(head)?;
        if head >> 56 != 0 {
            return Err(DecodeError::ReservedBits("exit header"));
        }
        let length = (head >> 48) as u8;
        let instruction_length = match length {
            0 => None,
            n => Some(InstructionLength::new(n).ok_or(DecodeError::BadInstructionLength(n))?),
        };
        let hardware_exit_code = reader.next()?;
        let payload = [reader.next()?, reader.next()?, reader.next()?];
        let mtd = mtd_of(reader.next()?)?;
        check_length(EXIT_HEADER_WORDS + mtd.words(), words.len())?;
        let reason = ExitReason::from_payload(head as u32, payload)?;
        let mut state = VcpuState::default();
        VcpuState::decode_groups_into(&mut state, mtd, &mut reader)?;
        Ok(ExitMessage {
            reason,
            instruction_length,
            hardware_exit_code,
            state,
        })
    }

    /// Decodes a message into `self` without building a new one (no zeroing or moving of the
    /// whole state), for a VMM that keeps one exit across its run loop: the same checks as
    /// [`ExitMessage::from_words`], and on success `reason`, `instruction_length`,
    /// `hardware_exit_code`, `state.mtd` and the groups `mtd` names are what `from_words`
    /// returns; fields of groups not in `mtd` keep their old values (a consumer must read only
    /// the groups `state.mtd` names). On error `self` is partly written and must not be used.
    pub fn decode_into(&mut self, words: &[u64]) -> Result<(), DecodeError> {
        let Some(&[head, hardware_exit_code, first, second, third, mtd]) =
            words.first_chunk::<EXIT_HEADER_WORDS>()
        else {
            return Err(DecodeError::Truncated {
                needed: EXIT_HEADER_WORDS,
                available: words.len(),
            });
        };
        version_of(head)?;
        if head >> 56 != 0 {
            return Err(DecodeError::ReservedBits("exit header"));
        }
        let length = (head >> 48) as u8;
        let instruction_length = match length {
            0 => None,
            n => Some(InstructionLength::new(n).ok_or(DecodeError::BadInstructionLength(n))?),
        };
        let mtd = mtd_of(mtd)?;
        check_length(EXIT_HEADER_WORDS + mtd.words(), words.len())?;
        self.reason = ExitReason::from_payload(head as u32, [first, second, third])?;
        self.instruction_length = instruction_length;
        self.hardware_exit_code = hardware_exit_code;
        let mut reader = Reader {
            words,
            position: EXIT_HEADER_WORDS,
        };
        VcpuState::decode_groups_into(&mut self.state, mtd, &mut reader)
    }
}

/// Encodes the exit message made of these parts into `out`, returning the number of words
/// written: exactly the words [`ExitMessage::to_words`] writes for the same fields (which calls
/// this), for callers that keep the state outside an [`ExitMessage`] to avoid moving it.
pub fn encode_exit(
    reason: &ExitReason,
    instruction_length: Option<InstructionLength>,
    hardware_exit_code: u64,
    state: &VcpuState,
    out: &mut [u64],
) -> Result<usize, EncodeError> {
    let needed = EXIT_HEADER_WORDS + state.mtd.words();
    if out.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    }
    let header = exit_header_words(reason, instruction_length, hardware_exit_code, state.mtd);
    let mut writer = Writer { out, position: 0 };
    for word in header {
        writer.push(word)?;
    }
    state.encode_groups(&mut writer)?;
    Ok(writer.position)
}

/// The [`EXIT_HEADER_WORDS`] words that start an exit message with these fields and state
/// groups `mtd` (the state words follow, as [`ExitMessage::to_words`] writes them).
#[inline]
pub fn exit_header_words(
    reason: &ExitReason,
    instruction_length: Option<InstructionLength>,
    hardware_exit_code: u64,
    mtd: Mtd,
) -> [u64; EXIT_HEADER_WORDS] {
    let length = instruction_length.map_or(0, InstructionLength::bytes);
    let [first, second, third] = reason.payload();
    [
        u64::from(reason.code()) | u64::from(FORMAT_VERSION) << 32 | u64::from(length) << 48,
        hardware_exit_code,
        first,
        second,
        third,
        mtd.bits(),
    ]
}

/// The message word of a segment (selector | attributes << 16 | limit << 32; the base is the
/// next word).
#[inline]
pub fn segment_word(selector: u16, attributes: SegmentAttributes, limit: u32) -> u64 {
    u64::from(selector) | u64::from(attributes.0) << 16 | u64::from(limit) << 32
}

/// The message word of the interrupt-state group.
#[inline]
pub fn interrupt_state_word(interruptibility: Interruptibility, activity: ActivityState) -> u64 {
    u64::from(interruptibility.0) | (activity as u64) << 32
}

/// The VMM's answer to an exit: state to write back, an event to inject, window request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reply {
    /// State written back into the vCPU (`state.mtd` says which groups; never
    /// [`Mtd::PENDING_EVENT`]).
    pub state: VcpuState,
    /// Event to inject at the next entry.
    pub inject: Option<Event>,
    /// Ask for an [`ExitReason::InterruptWindow`] exit once the guest can take an interrupt.
    pub request_interrupt_window: bool,
}

impl Reply {
    /// Number of words [`Reply::to_words`] writes.
    pub fn word_count(&self) -> usize {
        REPLY_HEADER_WORDS + self.state.mtd.words()
    }

    /// Encodes into `out`, returning the number of words written.
    pub fn to_words(&self, out: &mut [u64]) -> Result<usize, EncodeError> {
        if self.state.mtd.contains(Mtd::PENDING_EVENT) {
            return Err(EncodeError::GroupNotWritable(Mtd::PENDING_EVENT.bits()));
        }
        let needed = self.word_count();
        if out.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let mut writer = Writer { out, position: 0 };
        writer.push(u64::from(FORMAT_VERSION) << 32 | u64::from(self.request_interrupt_window))?;
        writer.push(optional_event_word(self.inject))?;
        writer.push(self.state.mtd.bits())?;
        self.state.encode_groups(&mut writer)?;
        Ok(writer.position)
    }

    /// Decodes a reply, rejecting any malformed one.
    pub fn from_words(words: &[u64]) -> Result<Reply, DecodeError> {
        let mut reply = Reply::default();
        reply.decode_into(words)?;
        Ok(reply)
    }

    /// Decodes a reply into `self` without building a new one (no zeroing or moving of the
    /// whole state): the same checks as [`Reply::from_words`], and on success `self.inject`,
    /// `self.request_interrupt_window`, `self.state.mtd` and the groups `mtd` names are what
    /// `from_words` returns; fields of groups not in `mtd` keep their old values, which every
    /// consumer ignores (they are outside `mtd`). On error `self` is partly written and must
    /// not be applied.
    pub fn decode_into(&mut self, words: &[u64]) -> Result<(), DecodeError> {
        let header = ReplyHeader::decode(words)?;
        let mut reader = Reader {
            words,
            position: REPLY_HEADER_WORDS,
        };
        VcpuState::decode_groups_into(&mut self.state, header.mtd, &mut reader)?;
        self.inject = header.inject;
        self.request_interrupt_window = header.request_interrupt_window;
        Ok(())
    }
}

/// The header of a reply, checked against the whole message: every check of
/// [`Reply::from_words`] except those inside the state groups (segment attributes, descriptor
/// limits, interrupt state), which a caller that reads the group words itself must make (or
/// it must only accept groups without such checks: GPRs, RSP, RIP, RFLAGS, control registers,
/// EFER, TSC offset). The state words are `words[REPLY_HEADER_WORDS..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The state groups that follow.
    pub mtd: Mtd,
    /// Event to inject.
    pub inject: Option<Event>,
    /// Interrupt-window request.
    pub request_interrupt_window: bool,
}

impl ReplyHeader {
    /// Checks the header words and the message length.
    #[inline]
    pub fn decode(words: &[u64]) -> Result<ReplyHeader, DecodeError> {
        let Some(&[head, event, mtd]) = words.first_chunk::<REPLY_HEADER_WORDS>() else {
            return Err(DecodeError::Truncated {
                needed: REPLY_HEADER_WORDS,
                available: words.len(),
            });
        };
        version_of(head)?;
        if head & 0xffff_0000_ffff_fffe != 0 {
            return Err(DecodeError::ReservedBits("reply header"));
        }
        let inject = Event::from_word(event)?;
        let mtd = mtd_of(mtd)?;
        if mtd.contains(Mtd::PENDING_EVENT) {
            return Err(DecodeError::GroupNotWritable(Mtd::PENDING_EVENT.bits()));
        }
        check_length(REPLY_HEADER_WORDS + mtd.words(), words.len())?;
        Ok(ReplyHeader {
            mtd,
            inject,
            request_interrupt_window: head & 1 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_state() -> VcpuState {
        let mut state = VcpuState {
            mtd: Mtd::ALL,
            ..VcpuState::default()
        };
        for (index, register) in Gpr::ALL.into_iter().enumerate() {
            state.gpr.set(register, 0x1111_0000 + index as u64);
        }
        state.rip = 0xffff_8000_0000_1000;
        state.cr3 = 0x1000;
        state.cs = Segment {
            selector: 8,
            attributes: SegmentAttributes::new(0x29b).unwrap(),
            limit: 0xffff_ffff,
            base: 0,
        };
        state.gdtr = DescriptorTable {
            base: 0x5000,
            limit: 0x27,
        };
        state.interruptibility = Interruptibility::new(Interruptibility::BLOCKING_BY_STI).unwrap();
        state.activity = ActivityState::Hlt;
        state.pending_event = Some(Event::Exception(
            Exception::new(ExceptionVector::PAGE_FAULT, Some(2)).unwrap(),
        ));
        state
    }

    fn sample_exit() -> ExitMessage {
        ExitMessage {
            reason: ExitReason::Io(IoExit {
                port: 0x3f8,
                size: IoSize::Byte,
                direction: IoDirection::Out,
                string: false,
                rep: false,
            }),
            instruction_length: InstructionLength::new(1),
            hardware_exit_code: 30,
            state: sample_state(),
        }
    }

    #[test]
    fn word_counts_match_group_table() {
        for bits in 0..=Mtd::ALL.bits() {
            let expected: usize = (0..16)
                .filter(|bit| bits & (1 << bit) != 0)
                .map(|bit| Mtd::GROUP_WORDS[bit])
                .sum();
            assert_eq!(Mtd(bits).words(), expected, "bits {bits:#x}");
        }
    }

    #[test]
    fn decode_into_a_used_reply_matches_from_words() {
        // Replies decoded into a scratch reply that already holds another decoded reply (with
        // every group set) must re-encode to the same words as a fresh `from_words`, and
        // malformed ones must fail the same way.
        let mut full = Reply {
            state: sample_state(),
            inject: None,
            request_interrupt_window: true,
        };
        full.state.mtd = Mtd::ALL.difference(Mtd::PENDING_EVENT);
        full.state.pending_event = None;
        let mut seed = 0x1234_5678_9abc_def0u64;
        for round in 0..20_000 {
            let mut scratch = full;
            let mtd = Mtd(next_random(&mut seed) & Mtd::ALL.bits() & !Mtd::PENDING_EVENT.bits());
            let mut words = [0u64; MAX_REPLY_WORDS + 1];
            words[0] = u64::from(FORMAT_VERSION) << 32 | (next_random(&mut seed) & 1);
            words[1] = if round % 3 == 0 { 0x20 | 1 << 8 } else { 0 };
            words[2] = mtd.bits();
            let mut length = REPLY_HEADER_WORDS + mtd.words();
            for word in &mut words[3..length] {
                *word = next_random(&mut seed) & 0x0000_ffff_0fff_ffff;
            }
            // Sometimes corrupt one word or the length.
            match round % 7 {
                0 => {
                    let index = (next_random(&mut seed) as usize) % length;
                    words[index] ^= 1 << (next_random(&mut seed) % 64);
                }
                1 => length = length.saturating_sub(1),
                2 => length += 1,
                _ => {}
            }
            let words = &words[..length];
            let fresh = Reply::from_words(words);
            let reused = scratch.decode_into(words);
            match fresh {
                Ok(fresh) => {
                    assert_eq!(reused, Ok(()), "words {words:x?}");
                    let (mut a, mut b) = ([0u64; MAX_REPLY_WORDS], [0u64; MAX_REPLY_WORDS]);
                    assert_eq!(fresh.to_words(&mut a), scratch.to_words(&mut b));
                    assert_eq!(a, b);
                    assert_eq!(fresh.inject, scratch.inject);
                    assert_eq!(
                        fresh.request_interrupt_window,
                        scratch.request_interrupt_window
                    );
                }
                Err(error) => assert_eq!(reused, Err(error), "words {words:x?}"),
            }
        }
    }

    #[test]
    fn decode_into_a_used_exit_matches_from_words() {
        // Exits decoded into one that already holds another decoded exit (with every group
        // set) must re-encode to the same words as a fresh `from_words`, and malformed ones must
        // fail with the same error (vmm-core adds proptest cases over arbitrary words).
        let full = sample_exit();
        let mut seed = 0x0fed_cba9_8765_4321u64;
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut scratch = full;
            let mtd = Mtd(next_random(&mut seed) & Mtd::ALL.bits());
            let mut words = [0u64; MAX_EXIT_WORDS + 1];
            let (code, payload) = match round % 5 {
                0 => (3, [0, 0, 0]),
                1 => (1, [0x3f8 | 1 << 16 | 1 << 24, 0, 0]),
                2 => (2, [0xfe00_0000, 1, 0]),
                3 => (8, [14 | 1 << 8, 2, 0]),
                _ => (5, [0x10, 7, 0]),
            };
            let length_byte = next_random(&mut seed) % 3;
            words[0] = code | u64::from(FORMAT_VERSION) << 32 | length_byte << 48;
            words[1] = next_random(&mut seed);
            words[2..5].copy_from_slice(&payload);
            words[5] = mtd.bits();
            let mut length = EXIT_HEADER_WORDS + mtd.words();
            for word in &mut words[EXIT_HEADER_WORDS..length] {
                *word = next_random(&mut seed) & 0x0000_0000_0fff_0003;
            }
            // Sometimes corrupt one word or the length.
            match round % 7 {
                0 => {
                    let index = (next_random(&mut seed) as usize) % length;
                    words[index] ^= 1 << (next_random(&mut seed) % 64);
                }
                1 => length = length.saturating_sub(1),
                2 => length += 1,
                _ => {}
            }
            let words = &words[..length];
            match ExitMessage::from_words(words) {
                Ok(fresh) => {
                    accepted += 1;
                    assert_eq!(scratch.decode_into(words), Ok(()), "words {words:x?}");
                    let (mut a, mut b) = ([0u64; MAX_EXIT_WORDS], [0u64; MAX_EXIT_WORDS]);
                    assert_eq!(fresh.to_words(&mut a), scratch.to_words(&mut b));
                    assert_eq!(a, b);
                    assert_eq!(fresh.reason, scratch.reason);
                    assert_eq!(fresh.instruction_length, scratch.instruction_length);
                    assert_eq!(fresh.hardware_exit_code, scratch.hardware_exit_code);
                    assert_eq!(fresh.state.mtd, scratch.state.mtd);
                }
                Err(error) => assert_eq!(scratch.decode_into(words), Err(error)),
            }
        }
        assert!(accepted > 1000, "only {accepted} accepted");
    }

    #[test]
    fn exit_round_trips_with_every_group() {
        let exit = sample_exit();
        let mut words = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut words).unwrap();
        assert_eq!(count, MAX_EXIT_WORDS);
        assert_eq!(words[0], 1 | 1 << 32 | 1 << 48);
        assert_eq!(words[2], 0x3f8 | 1 << 16);
        assert_eq!(ExitMessage::from_words(&words[..count]), Ok(exit));
    }

    #[test]
    fn groups_are_optional_and_ordered() {
        let mut exit = sample_exit();
        exit.state = VcpuState {
            mtd: Mtd::GPR_ACDB | Mtd::RIP,
            ..sample_state()
        };
        let mut words = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut words).unwrap();
        assert_eq!(count, EXIT_HEADER_WORDS + 5);
        assert_eq!(
            &words[6..11],
            &[
                0x1111_0000,
                0x1111_0001,
                0x1111_0002,
                0x1111_0003,
                exit.state.rip
            ]
        );
        let decoded = ExitMessage::from_words(&words[..count]).unwrap();
        assert_eq!(decoded.state.gpr.get(Gpr::Rbx), 0x1111_0003);
        assert_eq!(
            decoded.state.gpr.get(Gpr::Rsi),
            0,
            "absent groups read as zero"
        );
    }

    #[test]
    fn decoder_rejects_malformed_messages() {
        let exit = sample_exit();
        let mut words = [0u64; MAX_EXIT_WORDS];
        let count = exit.to_words(&mut words).unwrap();
        let good = &words[..count];
        let decode_with = |index: usize, value: u64| {
            let mut copy = [0u64; MAX_EXIT_WORDS];
            copy.copy_from_slice(good);
            copy[index] = value;
            ExitMessage::from_words(&copy)
        };
        assert_eq!(
            ExitMessage::from_words(&good[..count - 1]),
            Err(DecodeError::Truncated {
                needed: count,
                available: count - 1
            })
        );
        assert_eq!(
            ExitMessage::from_words(&[]).unwrap_err(),
            DecodeError::Truncated {
                needed: 6,
                available: 0
            }
        );
        assert_eq!(
            decode_with(0, 1 | 2 << 32),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            decode_with(0, 99 | 1 << 32),
            Err(DecodeError::UnknownReason(99))
        );
        assert_eq!(
            decode_with(0, 1 | 1 << 32 | 16 << 48),
            Err(DecodeError::BadInstructionLength(16))
        );
        assert_eq!(
            decode_with(2, 0x3f8 | 3 << 16),
            Err(DecodeError::BadIoSize(3))
        );
        assert_eq!(
            decode_with(3, 1),
            Err(DecodeError::ReservedBits("exit payload"))
        );
        assert_eq!(
            decode_with(5, 1 << 20),
            Err(DecodeError::UnknownStateGroups(1 << 20))
        );
        assert!(matches!(
            decode_with(5, 1),
            Err(DecodeError::TrailingWords { .. })
        ));
        // Segment CS attributes with bit 13 set.
        let cs_index = EXIT_HEADER_WORDS + 4 + 3 + 8 + 1 + 1 + 1 + 4 + 1;
        assert_eq!(
            decode_with(cs_index, 1 << (16 + 13)),
            Err(DecodeError::BadSegmentAttributes(1 << 13))
        );
        // Pending event: #UD with an error code.
        let event_index = count - 2;
        assert_eq!(
            decode_with(event_index, 6 | 3 << 8 | 1 << 11),
            Err(DecodeError::ErrorCodeNotAllowed(6))
        );
        assert_eq!(
            decode_with(event_index, 5 | 2 << 8),
            Err(DecodeError::BadVector(5))
        );
        assert_eq!(
            decode_with(event_index, 7 << 8),
            Err(DecodeError::BadEventKind(7))
        );
        assert_eq!(
            decode_with(count - 3, 9 << 32),
            Err(DecodeError::BadActivityState(9))
        );
    }

    #[test]
    fn reason_payloads_decode() {
        let reasons = [
            ExitReason::MemoryFault {
                gpa: GuestPhys(0xfee0_0000),
                access: MemoryAccess::Write,
            },
            ExitReason::Cpuid,
            ExitReason::MsrRead { msr: 0xc000_0080 },
            ExitReason::MsrWrite {
                msr: 0x10,
                value: u64::MAX,
            },
            ExitReason::Exception(
                Exception::new(ExceptionVector::GENERAL_PROTECTION, Some(0)).unwrap(),
            ),
            ExitReason::Exception(Exception::new(ExceptionVector::INVALID_OPCODE, None).unwrap()),
            ExitReason::TripleFault,
            ExitReason::Unknown { raw: 77 },
        ];
        for reason in reasons {
            let exit = ExitMessage {
                reason,
                instruction_length: None,
                hardware_exit_code: 0,
                state: VcpuState::default(),
            };
            let mut words = [0u64; EXIT_HEADER_WORDS];
            assert_eq!(exit.to_words(&mut words), Ok(EXIT_HEADER_WORDS));
            assert_eq!(ExitMessage::from_words(&words), Ok(exit));
        }
        let mut words = [0u64; EXIT_HEADER_WORDS];
        words[0] = 2 | 1 << 32;
        words[2] = 1 << 52;
        assert_eq!(
            ExitMessage::from_words(&words),
            Err(DecodeError::ReservedBits("guest-physical address"))
        );
        words[2] = 0x1000;
        words[3] = 3;
        assert_eq!(
            ExitMessage::from_words(&words),
            Err(DecodeError::BadMemoryAccess(3))
        );
    }

    #[test]
    fn reply_round_trips_and_rejects_pending_event_group() {
        let reply = Reply {
            state: VcpuState {
                mtd: Mtd::GPR_ACDB | Mtd::RIP,
                rip: 0x1234,
                ..VcpuState::default()
            },
            inject: Some(Event::ExternalInterrupt(0x20)),
            request_interrupt_window: true,
        };
        let mut words = [0u64; MAX_REPLY_WORDS];
        let count = reply.to_words(&mut words).unwrap();
        assert_eq!(count, REPLY_HEADER_WORDS + 5);
        assert_eq!(words[1], 0x20 | 1 << 8);
        assert_eq!(Reply::from_words(&words[..count]), Ok(reply));
        let mut small = [0u64; 4];
        assert_eq!(
            reply.to_words(&mut small),
            Err(EncodeError::BufferTooSmall {
                needed: 8,
                available: 4
            })
        );
        let bad = Reply {
            state: VcpuState {
                mtd: Mtd::PENDING_EVENT,
                ..VcpuState::default()
            },
            ..reply
        };
        assert_eq!(
            bad.to_words(&mut words),
            Err(EncodeError::GroupNotWritable(Mtd::PENDING_EVENT.bits()))
        );
        let forged = [1u64 << 32, 0, Mtd::PENDING_EVENT.bits(), 0];
        assert_eq!(
            Reply::from_words(&forged),
            Err(DecodeError::GroupNotWritable(Mtd::PENDING_EVENT.bits()))
        );
        assert_eq!(
            Reply::from_words(&[1 << 32 | 2, 0, 0]),
            Err(DecodeError::ReservedBits("reply header"))
        );
    }

    #[test]
    fn exception_rejects_error_code_on_vectors_without_one() {
        assert!(Exception::new(ExceptionVector::new(3).unwrap(), Some(1)).is_err());
        assert!(Exception::new(ExceptionVector::DOUBLE_FAULT, Some(0)).is_ok());
        assert!(ExceptionVector::new(32).is_none());
        assert_eq!(MAX_EXIT_WORDS, 52);
        const { assert!(MAX_EXIT_WORDS <= crate::ipc::MAX_UNTYPED_WORDS) };
    }

    /// Deterministic xorshift generator: this crate has no property-test dependency, so the
    /// never-panic check runs over a fixed pseudo-random corpus (vmm-core adds proptest cases).
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_words_never_panic_and_accepted_messages_are_canonical() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut accepted = 0;
        for round in 0..20_000u64 {
            let mut length = (next_random(&mut seed) % 60) as usize;
            let mut words = [0u64; 64];
            for word in words.iter_mut() {
                // Mostly small values so that some messages get past validation.
                let raw = next_random(&mut seed);
                *word = if raw.is_multiple_of(3) { raw } else { raw % 4 };
            }
            if round.is_multiple_of(2) {
                // A plausible header of the right length, with zero payload words.
                let mtd = next_random(&mut seed) & Mtd::ALL.bits() & !(1 << 8);
                length = EXIT_HEADER_WORDS + Mtd(mtd).words();
                words[0] = (next_random(&mut seed) % 14) | 1 << 32;
                words[1..5].fill(0);
                words[5] = mtd;
            }
            let words = &words[..length];
            if let Ok(exit) = ExitMessage::from_words(words) {
                accepted += 1;
                let mut out = [0u64; MAX_EXIT_WORDS];
                let count = exit.to_words(&mut out).unwrap();
                assert_eq!(&out[..count], words);
            }
            if let Ok(reply) = Reply::from_words(words) {
                let mut out = [0u64; MAX_REPLY_WORDS];
                let count = reply.to_words(&mut out).unwrap();
                assert_eq!(&out[..count], words);
            }
        }
        assert!(
            accepted > 0,
            "the corpus must exercise the accepting path too"
        );
    }
}
