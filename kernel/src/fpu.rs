//! FPU, SSE and AVX state: guests' registers kept apart from everything else.
//!
//! The kernel and the userland are built soft-float and never use these registers; guests do.
//! Every CPU enables FXSAVE/SSE (CR4.OSFXSR, OSXMMEXCPT) and, where the CPU has XSAVE, CR4.OSXSAVE
//! with the host's XCR0: the components whose state fits one 4 KiB save area
//! (`kernel_virt::xsave::host_xcr0`). Each vCPU has such an area ([`GuestFpu`]).
//!
//! - When a `vcpu_control(run)` returns to the VMM, the guest's registers are saved into its area
//!   (and the host's XCR0 put back if the guest set its own), but stay in the CPU: the VMM's
//!   domain owns that guest anyway. The CPU records which vCPU's values it holds.
//! - The next run of the same vCPU on the same CPU finds its values still there and loads
//!   nothing; any other run loads the vCPU's area.
//! - Before a thread of another domain runs on the CPU (the address-space switch,
//!   `Kernel::load_space`), the registers are reset to their initial state ([`release`]), so no
//!   other domain or guest ever sees a guest's values.
//!
//! A guest's XCR0 (set by its XSETBV, which always exits and is checked against the host's) is
//! loaded for each of its entries.

use crate::frames;
use crate::paging::phys_to_virt;
use crate::percpu::MAX_CPUS;
use core::arch::x86_64::{__cpuid_count, CpuidResult};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_virt::xsave;
use sluice_abi::syscall::Status;

/// CR4.OSFXSR (bit 9), OSXMMEXCPT (bit 10), OSXSAVE (bit 18) (SDM Vol. 3A section 2.5).
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// CPUID.1:ECX.XSAVE (bit 26).
const CPUID_XSAVE: u32 = 1 << 26;
/// One save area: one frame.
const AREA_LIMIT: u32 = 4096;
/// Offsets in the legacy region: FCW (0), MXCSR (24) (SDM Vol. 1 Table 10-2).
const FCW_OFFSET: usize = 0;
const MXCSR_OFFSET: usize = 24;
/// The initial FCW and MXCSR (SDM Vol. 1 sections 8.1.5 and 10.2.3.1).
const FCW_INITIAL: u16 = 0x037f;
const MXCSR_INITIAL: u32 = 0x1f80;

/// Whether XSAVE is in use (else FXSAVE).
static XSAVE: AtomicBool = AtomicBool::new(false);
/// The host's XCR0 (1 without XSAVE).
static HOST_XCR0: AtomicU64 = AtomicU64::new(1);

/// The initial state as an area: FCW and MXCSR set, everything else zero (an XSAVE header with
/// XSTATE_BV = 0 makes XRSTOR load every component's initial state).
#[repr(C, align(64))]
struct InitialArea([u8; AREA_LIMIT as usize]);

static INITIAL: InitialArea = {
    let mut bytes = [0u8; AREA_LIMIT as usize];
    let fcw = FCW_INITIAL.to_le_bytes();
    bytes[FCW_OFFSET] = fcw[0];
    bytes[FCW_OFFSET + 1] = fcw[1];
    let mxcsr = MXCSR_INITIAL.to_le_bytes();
    let mut index = 0;
    while index < 4 {
        bytes[MXCSR_OFFSET + index] = mxcsr[index];
        index += 1;
    }
    InitialArea(bytes)
};

fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    __cpuid_count(leaf, subleaf)
}

/// Enables the FPU state on this CPU; the boot CPU also chooses the host's XCR0, which the
/// others copy. Called once per CPU before it runs anything else.
pub fn init_this_cpu(boot_cpu: bool) {
    let has_xsave = cpuid(1, 0).ecx & CPUID_XSAVE != 0;
    let mut cr4: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack)) };
    cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
    if has_xsave {
        cr4 |= CR4_OSXSAVE;
    }
    // SAFETY: OSFXSR/OSXMMEXCPT are valid on every x86-64 CPU and OSXSAVE where CPUID reports
    // XSAVE; they only enable instructions the kernel itself does not execute outside this
    // module.
    unsafe { core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack)) };
    if !has_xsave {
        if boot_cpu {
            kprintln!("sluice: fpu: fxsave (no xsave): guests' x87 and SSE state kept per vCPU");
        }
        return;
    }
    if boot_cpu {
        let leaf = cpuid(0xd, 0);
        let supported = u64::from(leaf.eax) | u64::from(leaf.edx) << 32;
        let end = |bit: u32| {
            let component = cpuid(0xd, bit);
            (component.eax != 0).then(|| component.ebx.saturating_add(component.eax))
        };
        let xcr0 = xsave::host_xcr0(supported, end, AREA_LIMIT);
        HOST_XCR0.store(xcr0, Ordering::Relaxed);
        XSAVE.store(true, Ordering::Relaxed);
        kprintln!(
            "sluice: fpu: xsave, xcr0 {xcr0:#x} of supported {supported:#x}: guests' state kept per vCPU"
        );
    }
    set_xcr0(HOST_XCR0.load(Ordering::Relaxed));
}

/// The host's XCR0 (what a guest's XCR0 may hold at most).
pub fn host_xcr0() -> u64 {
    HOST_XCR0.load(Ordering::Relaxed)
}

fn set_xcr0(value: u64) {
    // SAFETY: only called with CR4.OSXSAVE set and with the host's XCR0 or a value
    // `xsave::check_guest_xcr0` accepted against it, which XSETBV accepts too.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

/// Which vCPU's guest values each CPU's registers hold (its [`GuestFpu`] id; 0: the initial
/// state). Slot `i` is read and written only by CPU `i`.
static HOLDER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Ids of vCPUs' FPU states (never reused).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Puts this CPU's registers back to their initial state if they hold a guest's values: before
/// a thread of another domain runs here.
#[inline]
pub fn release(cpu: usize) {
    let holder = &HOLDER[cpu % MAX_CPUS];
    if holder.load(Ordering::Relaxed) == 0 {
        return;
    }
    holder.store(0, Ordering::Relaxed);
    let initial = INITIAL.0.as_ptr();
    if XSAVE.load(Ordering::Relaxed) {
        // SAFETY: the static initial image, 64-byte aligned and 4 KiB; the host's XCR0 is in
        // effect (runs put it back before they return); XSTATE_BV 0 loads every component's
        // initial state.
        unsafe {
            core::arch::asm!("xrstor64 [{}]", in(reg) initial, in("eax") u32::MAX,
                in("edx") u32::MAX, options(nostack, readonly))
        };
    } else {
        // SAFETY: as above, an FXSAVE image.
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) initial, options(nostack, readonly)) };
    }
}

/// One vCPU's FPU state: its save area (one frame), its guest's XCR0, and where it last ran.
pub struct GuestFpu {
    frame: u64,
    area: *mut u8,
    id: u64,
    xcr0: u64,
    /// The guest's XCR0 differs from the host's (set for each entry, the host's put back).
    own_xcr0: bool,
    last_cpu: usize,
}

// SAFETY: the area pointer is the direct-map address of the vCPU's own frame; the vCPU (and
// so this value) is used only under its lock.
unsafe impl Send for GuestFpu {}

impl GuestFpu {
    /// The initial state (SDM Vol. 3A Table 10-1: FCW 0x37F, MXCSR 0x1F80, registers zero),
    /// with the host's XCR0 until the guest sets its own.
    pub fn new() -> Result<GuestFpu, Status> {
        let frame = frames::allocate().ok_or(Status::OutOfKernelMemory)?;
        let area = phys_to_virt(frame);
        // SAFETY: a frame just allocated for this area, in the direct map; nothing else uses it.
        unsafe { core::ptr::copy_nonoverlapping(INITIAL.0.as_ptr(), area, AREA_LIMIT as usize) };
        Ok(GuestFpu {
            frame,
            area,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            xcr0: host_xcr0(),
            own_xcr0: false,
            last_cpu: usize::MAX,
        })
    }

    /// Returns the area's frame. A CPU still recorded as holding its values keeps them in its
    /// registers until the next [`release`] there or another vCPU's load (the id is never
    /// reused, so no later vCPU mistakes them for its own).
    pub fn free(self) {
        frames::free(self.frame);
    }

    /// Makes the guest's registers and XCR0 this CPU's until the returned guard is dropped.
    #[inline]
    pub fn load(&mut self, cpu: usize) -> Loaded {
        let xsave = XSAVE.load(Ordering::Relaxed);
        let holder = &HOLDER[cpu % MAX_CPUS];
        if holder.load(Ordering::Relaxed) != self.id || self.last_cpu != cpu {
            if xsave {
                // SAFETY: the area is this vCPU's frame, 64-byte aligned, 4 KiB: large enough
                // for every component of the host's XCR0 (chosen to fit); it holds an XSAVE
                // image or the initial one.
                unsafe {
                    core::arch::asm!("xrstor64 [{}]", in(reg) self.area, in("eax") u32::MAX,
                        in("edx") u32::MAX, options(nostack, readonly))
                };
            } else {
                // SAFETY: as above, an FXSAVE image (512 bytes, 16-byte aligned).
                unsafe {
                    core::arch::asm!("fxrstor64 [{}]", in(reg) self.area, options(nostack, readonly))
                };
            }
            holder.store(self.id, Ordering::Relaxed);
            self.last_cpu = cpu;
        }
        // Loaded and saved under the host's XCR0, whatever the guest's: XSAVE and XRSTOR cover
        // only components enabled in XCR0, and a guest with XCR0 = x87 still uses SSE.
        if self.own_xcr0 && xsave {
            set_xcr0(self.xcr0);
        }
        Loaded {
            area: self.area,
            own_xcr0: self.own_xcr0,
            xsave,
        }
    }

    /// Records the guest's XCR0 after `xsave::check_guest_xcr0` accepted it, and sets it now
    /// in this CPU, where the guest's state is `loaded`.
    pub fn set_xcr0(&mut self, value: u64, loaded: &mut Loaded) {
        self.xcr0 = value;
        self.own_xcr0 = value != host_xcr0();
        loaded.own_xcr0 = self.own_xcr0;
        if loaded.xsave {
            set_xcr0(value);
        }
    }
}

/// A guest's registers loaded in this CPU. Dropping it puts the host's XCR0 back and saves them
/// into the vCPU's area; the registers keep the values (see the module documentation).
pub struct Loaded {
    area: *mut u8,
    own_xcr0: bool,
    xsave: bool,
}

impl Drop for Loaded {
    #[inline]
    fn drop(&mut self) {
        if self.xsave {
            if self.own_xcr0 {
                set_xcr0(host_xcr0());
            }
            // SAFETY: the vCPU's area as in `GuestFpu::load` (the run that loaded it still holds
            // the vCPU's lock, so the frame is still its); XSAVE writes the components of the
            // host's XCR0, which the area was sized for.
            unsafe {
                core::arch::asm!("xsave64 [{}]", in(reg) self.area, in("eax") u32::MAX,
                    in("edx") u32::MAX, options(nostack))
            };
        } else {
            // SAFETY: as above with an FXSAVE image.
            unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.area, options(nostack)) };
        }
    }
}
