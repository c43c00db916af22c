//! The Sluice separation kernel.
//!
//! Boot path: GRUB (Multiboot2) enters `boot.s` in 32-bit mode; the stub switches to long mode
//! and calls [`kernel_main`], which brings up the log, descriptor tables, page tables, reads the
//! boot information and ACPI, detects VMX/SVM and prints the one-line summary. Decoding of
//! everything untrusted lives in the host-tested `kernel-core` crate; this crate holds the
//! registers and the `unsafe`.
//!
//! On the host this binary only says where it runs: the kernel builds for `x86_64-unknown-none`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[macro_use]
mod serial;
#[cfg(target_os = "none")]
mod address_space;
#[cfg(target_os = "none")]
mod ap;
#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
mod execution;
#[cfg(target_os = "none")]
mod fpu;
#[cfg(target_os = "none")]
mod frames;
#[cfg(target_os = "none")]
mod gdt;
#[cfg(target_os = "none")]
mod idt;
#[cfg(target_os = "none")]
mod interrupt_routing;
#[cfg(target_os = "none")]
mod interrupts;
#[cfg(target_os = "none")]
mod paging;
#[cfg(target_os = "none")]
mod percpu;
#[cfg(target_os = "none")]
mod physical;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod sync;
#[cfg(target_os = "none")]
mod test_fault;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod virtualization;

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("boot.s"));

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the Sluice kernel runs on bare metal or an emulator: try `cargo xtask run`");
    std::process::exit(2);
}

/// The first Rust code: called by `boot.s` with the Multiboot2 magic and information address.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn kernel_main(magic: u64, mbi: u64) -> ! {
    serial::init();
    kprintln!("sluice: kernel {} booting", env!("CARGO_PKG_VERSION"));
    cpu::enable_caches();
    fpu::init_this_cpu(true);
    gdt::init(0, percpu::stack_top(0));
    idt::init();
    percpu::init(0, 0);
    boot::start(magic, mbi)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_unlock();
    match info.location() {
        Some(at) => kprintln!(
            "sluice: PANIC at {}:{}: {}",
            at.file(),
            at.line(),
            info.message()
        ),
        None => kprintln!("sluice: PANIC: {}", info.message()),
    }
    platform::stop(platform::Outcome::Failure("kernel panic"))
}
