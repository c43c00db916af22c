//! The VMCB (AMD APM Vol. 2, Appendix B): a 4 KiB page with the control area at offset 0 and
//! the state save area at 0x400, as typed fields over a byte buffer.
//!
//! Each [`VmcbField`] knows its offset, width and the VMCB clean bit (APM Vol. 2 section
//! 15.15.3) that covers it; [`Vmcb::write`] clears that clean bit so the CPU reloads the field
//! on the next VMRUN. Reads and writes are little-endian and never panic.
use core::borrow::{Borrow, BorrowMut};

use bitflags::bitflags;

/// Size of a VMCB.
pub const VMCB_SIZE: usize = 4096;
/// Offset of the state save area (APM Vol. 2 Table B-2).
pub const STATE_SAVE_AREA: u16 = 0x400;

/// Width of a VMCB field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldWidth {
    /// 1 byte.
    Bits8,
    /// 2 bytes.
    Bits16,
    /// 4 bytes.
    Bits32,
    /// 8 bytes.
    Bits64,
}

impl FieldWidth {
    /// Bytes the field occupies.
    pub const fn bytes(self) -> usize {
        match self {
            FieldWidth::Bits8 => 1,
            FieldWidth::Bits16 => 2,
            FieldWidth::Bits32 => 4,
            FieldWidth::Bits64 => 8,
        }
    }
}

bitflags! {
    /// VMCB clean bits (control area offset 0xC0; APM Vol. 2 section 15.15.3, Table 15-9): a 1
    /// tells the CPU that its cached copy of those fields is still valid.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct CleanBits: u32 {
        /// Intercept vectors, TSC offset, pause-filter count.
        const INTERCEPTS = 1 << 0;
        /// IOPM_BASE, MSRPM_BASE.
        const IOPM = 1 << 1;
        /// ASID.
        const ASID = 1 << 2;
        /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR.
        const TPR = 1 << 3;
        /// NP_ENABLE, N_CR3, G_PAT.
        const NESTED_PAGING = 1 << 4;
        /// CR0, CR3, CR4, EFER.
        const CONTROL_REGISTERS = 1 << 5;
        /// DR6, DR7.
        const DEBUG_REGISTERS = 1 << 6;
        /// GDTR, IDTR.
        const DESCRIPTOR_TABLES = 1 << 7;
        /// CS, DS, SS, ES, CPL.
        const SEGMENTS = 1 << 8;
        /// CR2.
        const CR2 = 1 << 9;
        /// DbgCtlMsr, br_from/to, lastint_from/to.
        const LAST_BRANCH_RECORD = 1 << 10;
        /// AVIC APIC_BAR, backing page, physical and logical tables.
        const AVIC = 1 << 11;
    }
}

/// A VMCB field: offset, width, covering clean bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcbField {
    offset: u16,
    width: FieldWidth,
    clean: CleanBits,
}

const fn control(offset: u16, width: FieldWidth, clean: CleanBits) -> VmcbField {
    VmcbField {
        offset,
        width,
        clean,
    }
}

const fn save(offset: u16, width: FieldWidth, clean: CleanBits) -> VmcbField {
    VmcbField {
        offset: STATE_SAVE_AREA + offset,
        width,
        clean,
    }
}

const NONE: CleanBits = CleanBits::empty();
use FieldWidth::{Bits16, Bits32, Bits64, Bits8};

#[allow(missing_docs)] // Names are the APM's (Tables B-1 and B-2).
impl VmcbField {
    // Control area (APM Vol. 2 Table B-1).
    /// CR reads (bits 15:0) and writes (31:16) intercepted.
    pub const INTERCEPT_CR: VmcbField = control(0x000, Bits32, CleanBits::INTERCEPTS);
    /// DR reads (bits 15:0) and writes (31:16) intercepted.
    pub const INTERCEPT_DR: VmcbField = control(0x004, Bits32, CleanBits::INTERCEPTS);
    /// Exception vectors intercepted (bit n = vector n).
    pub const INTERCEPT_EXCEPTIONS: VmcbField = control(0x008, Bits32, CleanBits::INTERCEPTS);
    /// [`InterceptVector3`].
    pub const INTERCEPT_VECTOR_3: VmcbField = control(0x00c, Bits32, CleanBits::INTERCEPTS);
    /// [`InterceptVector4`].
    pub const INTERCEPT_VECTOR_4: VmcbField = control(0x010, Bits32, CleanBits::INTERCEPTS);
    pub const PAUSE_FILTER_THRESHOLD: VmcbField = control(0x03c, Bits16, CleanBits::INTERCEPTS);
    pub const PAUSE_FILTER_COUNT: VmcbField = control(0x03e, Bits16, CleanBits::INTERCEPTS);
    pub const IOPM_BASE: VmcbField = control(0x040, Bits64, CleanBits::IOPM);
    pub const MSRPM_BASE: VmcbField = control(0x048, Bits64, CleanBits::IOPM);
    pub const TSC_OFFSET: VmcbField = control(0x050, Bits64, CleanBits::INTERCEPTS);
    pub const GUEST_ASID: VmcbField = control(0x058, Bits32, CleanBits::ASID);
    /// TLB_CONTROL: 0 nothing, 1 flush all ASIDs, 3 this guest's ASID, 7 its non-global.
    pub const TLB_CONTROL: VmcbField = control(0x05c, Bits8, NONE);
    /// V_TPR (7:0), V_IRQ (8), VGIF (9), V_INTR_PRIO (19:16), V_IGN_TPR (20),
    /// V_INTR_MASKING (24), V_INTR_VECTOR (39:32).
    pub const VIRTUAL_INTERRUPT: VmcbField = control(0x060, Bits64, CleanBits::TPR);
    /// INTERRUPT_SHADOW (bit 0), GUEST_INTERRUPT_MASK (bit 1).
    pub const INTERRUPT_SHADOW: VmcbField = control(0x068, Bits64, NONE);
    pub const EXITCODE: VmcbField = control(0x070, Bits64, NONE);
    pub const EXITINFO1: VmcbField = control(0x078, Bits64, NONE);
    pub const EXITINFO2: VmcbField = control(0x080, Bits64, NONE);
    pub const EXITINTINFO: VmcbField = control(0x088, Bits64, NONE);
    /// NP_ENABLE (bit 0).
    pub const NESTED_PAGING_CONTROL: VmcbField = control(0x090, Bits64, CleanBits::NESTED_PAGING);
    pub const EVENTINJ: VmcbField = control(0x0a8, Bits64, NONE);
    pub const NESTED_CR3: VmcbField = control(0x0b0, Bits64, CleanBits::NESTED_PAGING);
    /// LBR virtualization enable (bit 0).
    pub const VIRTUALIZATION_EXTENSIONS: VmcbField = control(0x0b8, Bits64, NONE);
    pub const CLEAN_BITS: VmcbField = control(0x0c0, Bits32, NONE);
    /// nRIP: the next sequential instruction pointer (with NRIP save).
    pub const NEXT_RIP: VmcbField = control(0x0c8, Bits64, NONE);
    pub const INSTRUCTION_BYTES_FETCHED: VmcbField = control(0x0d0, Bits8, NONE);

    // State save area (APM Vol. 2 Table B-2), offsets relative to 0x400.
    pub const CPL: VmcbField = save(0x0cb, Bits8, CleanBits::SEGMENTS);
    pub const EFER: VmcbField = save(0x0d0, Bits64, CleanBits::CONTROL_REGISTERS);
    pub const CR4: VmcbField = save(0x148, Bits64, CleanBits::CONTROL_REGISTERS);
    pub const CR3: VmcbField = save(0x150, Bits64, CleanBits::CONTROL_REGISTERS);
    pub const CR0: VmcbField = save(0x158, Bits64, CleanBits::CONTROL_REGISTERS);
    pub const DR7: VmcbField = save(0x160, Bits64, CleanBits::DEBUG_REGISTERS);
    pub const DR6: VmcbField = save(0x168, Bits64, CleanBits::DEBUG_REGISTERS);
    pub const RFLAGS: VmcbField = save(0x170, Bits64, NONE);
    pub const RIP: VmcbField = save(0x178, Bits64, NONE);
    pub const RSP: VmcbField = save(0x1d8, Bits64, NONE);
    pub const RAX: VmcbField = save(0x1f8, Bits64, NONE);
    pub const STAR: VmcbField = save(0x200, Bits64, NONE);
    pub const LSTAR: VmcbField = save(0x208, Bits64, NONE);
    pub const CSTAR: VmcbField = save(0x210, Bits64, NONE);
    pub const SFMASK: VmcbField = save(0x218, Bits64, NONE);
    pub const KERNEL_GS_BASE: VmcbField = save(0x220, Bits64, NONE);
    pub const SYSENTER_CS: VmcbField = save(0x228, Bits64, NONE);
    pub const SYSENTER_ESP: VmcbField = save(0x230, Bits64, NONE);
    pub const SYSENTER_EIP: VmcbField = save(0x238, Bits64, NONE);
    pub const CR2: VmcbField = save(0x240, Bits64, CleanBits::CR2);
    pub const GUEST_PAT: VmcbField = save(0x268, Bits64, CleanBits::NESTED_PAGING);
    pub const DEBUG_CONTROL: VmcbField = save(0x270, Bits64, CleanBits::LAST_BRANCH_RECORD);

    /// Byte offset in the VMCB.
    #[inline]
    pub const fn offset(self) -> usize {
        self.offset as usize
    }
    /// Width.
    #[inline]
    pub const fn width(self) -> FieldWidth {
        self.width
    }
    /// The clean bit a write must clear (empty if none).
    #[inline]
    pub const fn clean_bit(self) -> CleanBits {
        self.clean
    }
}

/// Segment registers and descriptor tables in the state save area: selector (+0, 16 bits),
/// attributes (+2, 16 bits), limit (+4, 32 bits), base (+8, 64 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum VmcbSegment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
    Gdtr,
    Ldtr,
    Idtr,
    Tr,
}

impl VmcbSegment {
    const fn base_offset(self) -> u16 {
        match self {
            VmcbSegment::Es => 0x00,
            VmcbSegment::Cs => 0x10,
            VmcbSegment::Ss => 0x20,
            VmcbSegment::Ds => 0x30,
            VmcbSegment::Fs => 0x40,
            VmcbSegment::Gs => 0x50,
            VmcbSegment::Gdtr => 0x60,
            VmcbSegment::Ldtr => 0x70,
            VmcbSegment::Idtr => 0x80,
            VmcbSegment::Tr => 0x90,
        }
    }
    const fn clean(self) -> CleanBits {
        match self {
            VmcbSegment::Es | VmcbSegment::Cs | VmcbSegment::Ss | VmcbSegment::Ds => {
                CleanBits::SEGMENTS
            }
            VmcbSegment::Gdtr | VmcbSegment::Idtr => CleanBits::DESCRIPTOR_TABLES,
            _ => NONE,
        }
    }
    /// Selector field.
    pub const fn selector(self) -> VmcbField {
        save(self.base_offset(), Bits16, self.clean())
    }
    /// Attribute field (12 bits used; APM Vol. 2 section 15.5.1).
    pub const fn attributes(self) -> VmcbField {
        save(self.base_offset() + 2, Bits16, self.clean())
    }
    /// Limit field.
    pub const fn limit(self) -> VmcbField {
        save(self.base_offset() + 4, Bits32, self.clean())
    }
    /// Base field.
    pub const fn base(self) -> VmcbField {
        save(self.base_offset() + 8, Bits64, self.clean())
    }
}

bitflags! {
    /// Intercept vector 3 (control area offset 0x0C; APM Vol. 2 Table B-1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct InterceptVector3: u32 {
        /// Physical INTR.
        const INTR = 1 << 0;
        /// Physical NMI.
        const NMI = 1 << 1;
        /// Physical SMI.
        const SMI = 1 << 2;
        /// Physical INIT.
        const INIT = 1 << 3;
        /// Virtual INTR: the guest is ready to take the pending virtual interrupt.
        const VINTR = 1 << 4;
        /// Writes of CR0 that change bits other than TS or MP.
        const CR0_SELECTIVE_WRITE = 1 << 5;
        const IDTR_READ = 1 << 6;
        const GDTR_READ = 1 << 7;
        const LDTR_READ = 1 << 8;
        const TR_READ = 1 << 9;
        const IDTR_WRITE = 1 << 10;
        const GDTR_WRITE = 1 << 11;
        const LDTR_WRITE = 1 << 12;
        const TR_WRITE = 1 << 13;
        const RDTSC = 1 << 14;
        const RDPMC = 1 << 15;
        const PUSHF = 1 << 16;
        const POPF = 1 << 17;
        const CPUID = 1 << 18;
        const RSM = 1 << 19;
        const IRET = 1 << 20;
        /// Software interrupt INTn.
        const INTN = 1 << 21;
        const INVD = 1 << 22;
        const PAUSE = 1 << 23;
        const HLT = 1 << 24;
        const INVLPG = 1 << 25;
        const INVLPGA = 1 << 26;
        /// IN/OUT accesses selected by the I/O permission map.
        const IOIO_PROT = 1 << 27;
        /// RDMSR/WRMSR accesses selected by the MSR permission map.
        const MSR_PROT = 1 << 28;
        const TASK_SWITCH = 1 << 29;
        const FERR_FREEZE = 1 << 30;
        /// Shutdown events (triple fault).
        const SHUTDOWN = 1 << 31;
    }
}

bitflags! {
    /// Intercept vector 4 (control area offset 0x10; APM Vol. 2 Table B-1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[allow(missing_docs)]
    pub struct InterceptVector4: u32 {
        /// VMRUN: must be set or VMRUN fails (APM Vol. 2 section 15.5.1).
        const VMRUN = 1 << 0;
        const VMMCALL = 1 << 1;
        const VMLOAD = 1 << 2;
        const VMSAVE = 1 << 3;
        const STGI = 1 << 4;
        const CLGI = 1 << 5;
        const SKINIT = 1 << 6;
        const RDTSCP = 1 << 7;
        const ICEBP = 1 << 8;
        const WBINVD = 1 << 9;
        const MONITOR = 1 << 10;
        const MWAIT = 1 << 11;
        const MWAIT_ARMED = 1 << 12;
        const XSETBV = 1 << 13;
        const RDPRU = 1 << 14;
        const EFER_WRITE_TRAP = 1 << 15;
    }
}

/// V_IRQ, V_INTR_PRIO and V_IGN_TPR in the virtual-interrupt field (APM Vol. 2 Table B-1).
pub const V_IRQ: u64 = 1 << 8;
/// V_INTR_PRIO (bits 19:16).
pub const V_INTR_PRIO_MASK: u64 = 0xf << 16;
/// V_IGN_TPR.
pub const V_IGN_TPR: u64 = 1 << 20;
/// V_INTR_VECTOR (bits 39:32).
pub const V_INTR_VECTOR_MASK: u64 = 0xff << 32;
/// INTERRUPT_SHADOW (bit 0 of control offset 0x68).
pub const INTERRUPT_SHADOW: u64 = 1 << 0;
/// NP_ENABLE (bit 0 of control offset 0x90).
pub const NP_ENABLE: u64 = 1 << 0;

/// A VMCB over any byte storage of the right size (the kernel's page, a test array).
#[derive(Clone, Debug)]
pub struct Vmcb<B> {
    bytes: B,
}

impl<B: Borrow<[u8; VMCB_SIZE]>> Vmcb<B> {
    /// Wraps a VMCB page.
    pub fn new(bytes: B) -> Self {
        Vmcb { bytes }
    }

    /// The underlying storage.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    /// The field's value, zero-extended.
    #[inline]
    pub fn read(&self, field: VmcbField) -> u64 {
        // One fixed-size load per width (no variable-length copy), so a read of a constant
        // field compiles to a single load.
        let bytes = self.bytes.borrow();
        let offset = field.offset();
        match field.width() {
            FieldWidth::Bits8 => load::<1>(bytes, offset),
            FieldWidth::Bits16 => load::<2>(bytes, offset),
            FieldWidth::Bits32 => load::<4>(bytes, offset),
            FieldWidth::Bits64 => load::<8>(bytes, offset),
        }
    }

    /// The clean bits currently set.
    #[inline]
    pub fn clean_bits(&self) -> CleanBits {
        CleanBits::from_bits_retain(self.read(VmcbField::CLEAN_BITS) as u32)
    }
}

impl<B: BorrowMut<[u8; VMCB_SIZE]> + Borrow<[u8; VMCB_SIZE]>> Vmcb<B> {
    /// Writes the low bytes of `value` and clears the field's clean bit.
    #[inline]
    pub fn write(&mut self, field: VmcbField, value: u64) {
        self.store(field, value);
        let clean = field.clean_bit();
        if !clean.is_empty() {
            let bits = self.clean_bits().difference(clean);
            self.store(VmcbField::CLEAN_BITS, u64::from(bits.bits()));
        }
    }

    /// Sets the clean bits (the kernel marks everything clean after a VMRUN on the same CPU,
    /// and nothing clean after moving the VMCB to another CPU or changing its ASID).
    pub fn set_clean_bits(&mut self, bits: CleanBits) {
        self.store(VmcbField::CLEAN_BITS, u64::from(bits.bits()));
    }

    #[inline]
    fn store(&mut self, field: VmcbField, value: u64) {
        let bytes = self.bytes.borrow_mut();
        let offset = field.offset();
        match field.width() {
            FieldWidth::Bits8 => store::<1>(bytes, offset, value),
            FieldWidth::Bits16 => store::<2>(bytes, offset, value),
            FieldWidth::Bits32 => store::<4>(bytes, offset, value),
            FieldWidth::Bits64 => store::<8>(bytes, offset, value),
        }
    }
}

/// The `N` little-endian bytes at `offset`, zero-extended (0 if they lie outside the VMCB).
#[inline]
fn load<const N: usize>(bytes: &[u8; VMCB_SIZE], offset: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let (Some(source), Some(target)) = (bytes.get(offset..offset + N), raw.get_mut(..N)) {
        target.copy_from_slice(source);
    }
    u64::from_le_bytes(raw)
}

/// Writes the low `N` bytes of `value` at `offset` (nothing if they lie outside the VMCB).
#[inline]
fn store<const N: usize>(bytes: &mut [u8; VMCB_SIZE], offset: usize, value: u64) {
    let raw = value.to_le_bytes();
    if let (Some(target), Some(source)) = (bytes.get_mut(offset..offset + N), raw.get(..N)) {
        target.copy_from_slice(source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_apm_tables() {
        assert_eq!(VmcbField::EXITCODE.offset(), 0x70);
        assert_eq!(VmcbField::EVENTINJ.offset(), 0xa8);
        assert_eq!(VmcbField::NEXT_RIP.offset(), 0xc8);
        assert_eq!(VmcbField::RIP.offset(), 0x578);
        assert_eq!(VmcbField::RAX.offset(), 0x5f8);
        assert_eq!(VmcbField::CR2.offset(), 0x640);
        assert_eq!(VmcbSegment::Cs.attributes().offset(), 0x412);
        assert_eq!(VmcbSegment::Tr.base().offset(), 0x498);
        assert_eq!(VmcbSegment::Idtr.limit().offset(), 0x484);
    }

    #[test]
    fn writes_are_little_endian_truncated_and_clear_clean_bits() {
        let mut vmcb = Vmcb::new([0u8; VMCB_SIZE]);
        vmcb.set_clean_bits(CleanBits::all());
        vmcb.write(VmcbField::CR0, 0x8000_0011);
        assert_eq!(vmcb.read(VmcbField::CR0), 0x8000_0011);
        assert!(!vmcb.clean_bits().contains(CleanBits::CONTROL_REGISTERS));
        assert!(vmcb.clean_bits().contains(CleanBits::SEGMENTS));
        vmcb.write(VmcbSegment::Cs.selector(), 0x1_0008);
        assert_eq!(vmcb.read(VmcbSegment::Cs.selector()), 8);
        assert_eq!(
            vmcb.read(VmcbSegment::Cs.attributes()),
            0,
            "no spill into the next field"
        );
        assert!(!vmcb.clean_bits().contains(CleanBits::SEGMENTS));
        vmcb.write(VmcbField::TLB_CONTROL, 0x1ff);
        assert_eq!(vmcb.read(VmcbField::TLB_CONTROL), 0xff);
        let bytes = vmcb.into_inner();
        assert_eq!(bytes[0x5c], 0xff);
        assert_eq!(bytes[0x5d], 0);
        assert_eq!(bytes[0x558], 0x11);
        assert_eq!(bytes[0x55b], 0x80);
    }
}
