//! Per-CPU allocation of TLB tags, SVM ASIDs and VMX VPIDs, with generation-based flushing.
//!
//! Each CPU hands out tags from its own range in increasing order. When the range runs out it
//! starts a new generation: every tag is flushed at once (SVM TLB_CONTROL = 1, VMX INVVPID
//! all-contexts) and handed out afresh. A vCPU keeps its tag while it stays on the same CPU, in
//! the same generation, and its VM's flush epoch has not moved; otherwise it gets a fresh tag,
//! which has no stale translations by construction. The very first entry on a CPU flushes
//! everything, since earlier software may have used any tag.
//!
//! The VM's flush epoch is bumped after an unmap (nested_paging::PendingFlush). On SVM a
//! fresh ASID is the whole flush. On VMX a fresh VPID does not drop EPT-derived
//! guest-physical mappings: [`TlbAction::flush_guest_physical`] says the CPU must also run
//! INVEPT (single-context) for the VM's EPTP before entry.
use core::fmt;

/// Why a tag allocator cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagError {
    /// Fewer than one usable ASID (nASID from CPUID Fn8000_000A_EBX must be at least 2,
    /// ASID 0 being the host's).
    NoUsableAsids(u32),
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::NoUsableAsids(count) => {
                write!(
                    f,
                    "CPUID reports {count} ASIDs; at least 2 are needed (0 is the host's)"
                )
            }
        }
    }
}

/// The TLB maintenance the kernel performs before this VM entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbAction {
    /// Flush every tag on this CPU: SVM TLB_CONTROL = 1 for this VMRUN; VMX INVVPID type 2.
    pub flush_all_tags: bool,
    /// The VM's mappings changed since this vCPU last ran here: VMX runs INVEPT single-context
    /// for the VM's EPTP (SVM needs nothing beyond the fresh ASID).
    pub flush_guest_physical: bool,
}

/// The tag to run with and what to flush first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryTag {
    /// ASID for the VMCB / VPID for the VMCS.
    pub tag: u32,
    /// Whether the tag changed since the last entry (SVM: write GUEST_ASID and clear the ASID
    /// clean bit; VMX: VMWRITE the VPID field).
    pub changed: bool,
    /// Flushes to perform.
    pub tlb: TlbAction,
}

impl EntryTag {
    /// The SVM TLB_CONTROL value for this entry (APM Vol. 2 section 15.16.1).
    pub const fn svm_tlb_control(&self) -> u8 {
        if self.tlb.flush_all_tags {
            1
        } else {
            0
        }
    }
}

/// What a vCPU remembers about its tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTag {
    cpu: Option<u32>,
    tag: u32,
    generation: u64,
    epoch: u64,
}

impl VcpuTag {
    /// A vCPU that has never run.
    pub const fn new() -> Self {
        VcpuTag {
            cpu: None,
            tag: 0,
            generation: 0,
            epoch: 0,
        }
    }
    /// The tag last assigned (0 before the first entry).
    pub const fn tag(&self) -> u32 {
        self.tag
    }
}

/// One CPU's tag allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagAllocator {
    cpu: u32,
    first: u32,
    last: u32,
    next: u32,
    generation: u64,
    flushed_once: bool,
}

impl TagAllocator {
    /// ASIDs 1..nasid-1 for `cpu` (nASID from CPUID Fn8000_000A_EBX; QEMU TCG reports 16).
    pub fn svm(cpu: u32, nasid: u32) -> Result<Self, TagError> {
        if nasid < 2 {
            return Err(TagError::NoUsableAsids(nasid));
        }
        Ok(Self::range(cpu, 1, nasid - 1))
    }

    /// VPIDs 1..=0xffff for `cpu` (VPID 0 is the host's; SDM Vol. 3C section 29.1).
    pub const fn vpid(cpu: u32) -> Self {
        Self::range(cpu, 1, 0xffff)
    }

    const fn range(cpu: u32, first: u32, last: u32) -> Self {
        TagAllocator {
            cpu,
            first,
            last,
            next: first,
            generation: 1,
            flushed_once: false,
        }
    }

    /// The current generation.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The tag for `vcpu` entering on this CPU, whose VM's flush epoch is `vm_epoch`.
    pub fn prepare_entry(&mut self, vcpu: &mut VcpuTag, vm_epoch: u64) -> EntryTag {
        let mut tlb = TlbAction::default();
        if !self.flushed_once {
            self.flushed_once = true;
            tlb.flush_all_tags = true;
        }
        let same_cpu = vcpu.cpu == Some(self.cpu);
        if same_cpu && vcpu.generation == self.generation && vcpu.epoch == vm_epoch {
            return EntryTag {
                tag: vcpu.tag,
                changed: false,
                tlb,
            };
        }
        tlb.flush_guest_physical = !same_cpu || vcpu.epoch != vm_epoch;
        if self.next > self.last {
            self.generation = self.generation.wrapping_add(1);
            self.next = self.first;
            tlb.flush_all_tags = true;
        }
        let tag = self.next;
        self.next = self.next.saturating_add(1);
        let changed = tag != vcpu.tag || !same_cpu;
        *vcpu = VcpuTag {
            cpu: Some(self.cpu),
            tag,
            generation: self.generation,
            epoch: vm_epoch,
        };
        EntryTag { tag, changed, tlb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_nasid_16_gives_15_asids_then_a_new_generation() {
        let mut cpu = TagAllocator::svm(0, 16).unwrap();
        let mut vcpus = [VcpuTag::new(); 16];
        let first = cpu.prepare_entry(&mut vcpus[0], 0);
        assert_eq!(first.tag, 1);
        assert!(first.tlb.flush_all_tags, "first entry on a CPU flushes all");
        assert_eq!(first.svm_tlb_control(), 1);
        for (index, vcpu) in vcpus.iter_mut().enumerate().take(15).skip(1) {
            let entry = cpu.prepare_entry(vcpu, 0);
            assert_eq!(entry.tag, index as u32 + 1);
            assert!(!entry.tlb.flush_all_tags);
        }
        // Same vCPU, same CPU, same generation: keeps its ASID, nothing flushed.
        let again = cpu.prepare_entry(&mut vcpus[3], 0);
        assert_eq!(
            (again.tag, again.changed, again.tlb),
            (4, false, TlbAction::default())
        );
        // The 16th vCPU exhausts ASIDs 1..=15.
        let wrapped = cpu.prepare_entry(&mut vcpus[15], 0);
        assert_eq!(wrapped.tag, 1);
        assert!(wrapped.tlb.flush_all_tags);
        assert_eq!(cpu.generation(), 2);
        // A vCPU of the old generation gets a new ASID without another full flush.
        let old = cpu.prepare_entry(&mut vcpus[0], 0);
        assert_eq!(old.tag, 2);
        assert!(old.changed);
        assert!(!old.tlb.flush_all_tags);
    }

    #[test]
    fn epoch_change_and_migration_force_a_fresh_tag() {
        let mut cpu0 = TagAllocator::vpid(0);
        let mut cpu1 = TagAllocator::vpid(1);
        let mut vcpu = VcpuTag::new();
        assert_eq!(cpu0.prepare_entry(&mut vcpu, 7).tag, 1);
        let unmapped = cpu0.prepare_entry(&mut vcpu, 8);
        assert_eq!(unmapped.tag, 2);
        assert!(unmapped.tlb.flush_guest_physical);
        let moved = cpu1.prepare_entry(&mut vcpu, 8);
        assert_eq!(moved.tag, 1);
        assert!(moved.changed);
        assert!(
            moved.tlb.flush_guest_physical,
            "EPT translations of another CPU's era"
        );
        assert!(moved.tlb.flush_all_tags, "first entry on CPU 1");
        assert_eq!(vcpu.tag(), 1);
    }

    #[test]
    fn too_few_asids_is_an_error() {
        assert_eq!(TagAllocator::svm(0, 1), Err(TagError::NoUsableAsids(1)));
        assert_eq!(TagAllocator::svm(0, 0), Err(TagError::NoUsableAsids(0)));
        let mut one = TagAllocator::svm(0, 2).unwrap();
        let (mut a, mut b) = (VcpuTag::new(), VcpuTag::new());
        assert_eq!(one.prepare_entry(&mut a, 0).tag, 1);
        let second = one.prepare_entry(&mut b, 0);
        assert_eq!(second.tag, 1);
        assert!(second.tlb.flush_all_tags);
        assert!(!TagError::NoUsableAsids(1).to_string().is_empty());
    }
}
