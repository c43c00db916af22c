//! From the vCPU's first instruction to Rust: the parameter block, the real-mode entry, the
//! switch to protected mode (SDM Vol. 3A section 9.9.1), the identity page tables and the
//! switch to IA-32e mode (SDM Vol. 3A section 9.8.5), then a call to [`crate::probe_main`].
//!
//! Entry state the VMM must provide (README.md, "Starting the vCPU"): real mode, CS.selector
//! = 0 and CS.base = 0, IP = [`REAL_MODE_ENTRY`], interrupts not injected until the guest sets
//! IF; everything else as after RESET (SDM Vol. 3A section 9.1.1, Table 9-1). The code
//! assumes no register contents and no A20 gate (guest-physical memory above 1 MiB is reached
//! directly, as under EPT/NPT).
//!
//! Memory touched before paging: this page (code, GDT), the page tables in `.bss` above 1 MiB.
//! The page tables identity-map the first 4 GiB with 2 MiB pages, write-back below
//! [`UNCACHED_FROM`] and uncached (PCD | PWT) above it, which covers the MMIO test device.
use core::arch::global_asm;

use guest_probe::layout::{IDENTITY_MAP_BYTES, REAL_MODE_ENTRY, UNCACHED_FROM};
use guest_probe::parameters;

use crate::descriptors::{CODE32_SELECTOR, CODE64_SELECTOR, DATA_SELECTOR};

/// 2 MiB: the size of a page mapped by a page-directory entry with PS = 1.
const LARGE_PAGE_BYTES: u64 = 2 << 20;
/// Page-directory entries: one per 2 MiB of the identity map.
const DIRECTORY_ENTRIES: u64 = IDENTITY_MAP_BYTES / LARGE_PAGE_BYTES;
/// First page-directory entry (counting across the four directories) mapped uncached.
const FIRST_UNCACHED_ENTRY: u64 = UNCACHED_FROM.0 / LARGE_PAGE_BYTES;
/// Page directories: one per GiB.
const DIRECTORIES: u64 = DIRECTORY_ENTRIES / 512;
/// PML4, PDPT and the page directories, 4 KiB each.
const PAGE_TABLE_BYTES: u64 = (2 + DIRECTORIES) * 4096;
/// Bytes of the 64-bit stack.
const STACK_BYTES: u64 = 64 * 1024;

// Paging-structure entry bits (SDM Vol. 3A section 4.5, Tables 4-15 to 4-20).
/// Present.
const ENTRY_PRESENT: u64 = 1 << 0;
/// Writable.
const ENTRY_WRITABLE: u64 = 1 << 1;
/// Page-level write-through.
const ENTRY_WRITE_THROUGH: u64 = 1 << 3;
/// Page-level cache disable.
const ENTRY_CACHE_DISABLE: u64 = 1 << 4;
/// Page size: a PDE that maps a 2 MiB page.
const ENTRY_LARGE_PAGE: u64 = 1 << 7;

// Control registers and EFER (SDM Vol. 3A sections 2.5 and 2.2.1).
/// CR0.PE: protection enable.
const CR0_PROTECTION_ENABLE: u32 = 1 << 0;
/// CR0.NW | CR0.CD: set after RESET; cleared to run with caches on.
const CR0_CACHE_DISABLE_BITS: u32 = (1 << 29) | (1 << 30);
/// CR0.PG: paging.
const CR0_PAGING: u32 = 1 << 31;
/// CR4.PAE: physical-address extension, required for IA-32e mode.
const CR4_PHYSICAL_ADDRESS_EXTENSION: u32 = 1 << 5;
/// IA32_EFER (SDM Vol. 4, Table 2-2).
const IA32_EFER: u32 = 0xc000_0080;
/// IA32_EFER.LME: IA-32e mode enable.
const EFER_LONG_MODE_ENABLE: u32 = 1 << 8;

global_asm!(
    // ---- The parameter block (src/parameters.rs), with its defaults: no command line. ----
    ".section .probe.parameters, \"aw\", @progbits",
    ".globl probe_parameters",
    "probe_parameters:",
    ".long {magic}",
    ".long {version}",
    ".long 0", // command-line length
    ".long 0", // reserved
    ".skip {command_line_capacity}",
    //
    // ---- Real mode: CS = 0, IP = 0x8000 (the ELF entry). ----
    ".section .probe.boot, \"awx\", @progbits",
    ".code16",
    ".globl probe_real_mode_entry",
    "probe_real_mode_entry:",
    // SDM 9.9.1 step 1: no maskable interrupts during the switch.
    "cli",
    "cld",
    "xorw %ax, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %ss",
    // Step 2: LGDT with a 32-bit operand size loads all 32 bits of the base.
    "lgdtl probe_gdt_pointer",
    // Step 3: CR0.PE = 1 (and caches on: clear CD and NW, set after RESET).
    "movl %cr0, %eax",
    "andl ${cache_bits_cleared}, %eax",
    "orl ${protection_enable}, %eax",
    "movl %eax, %cr0",
    // Step 4: a far JMP right after the MOV to CR0 loads the 32-bit code segment.
    "ljmpl ${code32}, $probe_protected_mode_entry",
    //
    // ---- 32-bit protected mode, paging off. ----
    ".code32",
    "probe_protected_mode_entry:",
    // SDM 9.9.1 step 7: reload the data segment registers.
    "movw ${data}, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %fs",
    "movw %ax, %gs",
    "movw %ax, %ss",
    // Zero the page tables (the loader zero-fills .bss too; do not rely on it).
    "movl $probe_page_tables, %edi",
    "xorl %eax, %eax",
    "movl ${page_table_dwords}, %ecx",
    "rep stosl",
    // PML4[0] -> PDPT (at +4 KiB); PDPT[i] -> page directory i (at +8 KiB + i * 4 KiB).
    "movl $(probe_page_tables + 0x1000 + {table_flags}), probe_page_tables",
    "movl $(probe_page_tables + 0x2000), %eax",
    "orl ${table_flags}, %eax",
    "movl $(probe_page_tables + 0x1000), %edi",
    "xorl %ecx, %ecx",
    "probe_fill_pdpt:",
    "movl %eax, (%edi,%ecx,8)",
    "addl $0x1000, %eax",
    "incl %ecx",
    "cmpl ${directories}, %ecx",
    "jb probe_fill_pdpt",
    // Directory entry i maps [i * 2 MiB, (i + 1) * 2 MiB); the directories are contiguous, so
    // entry i of the first is entry i overall. Physical bits 32 and up stay 0 (below 4 GiB).
    "movl $(probe_page_tables + 0x2000), %edi",
    "xorl %ecx, %ecx",
    "probe_fill_directories:",
    "movl %ecx, %eax",
    "shll $21, %eax",
    "orl ${large_page_flags}, %eax",
    "cmpl ${first_uncached}, %ecx",
    "jb probe_entry_cached",
    "orl ${uncached_flags}, %eax",
    "probe_entry_cached:",
    "movl %eax, (%edi,%ecx,8)",
    "incl %ecx",
    "cmpl ${directory_entries}, %ecx",
    "jb probe_fill_directories",
    // SDM 9.8.5: (1) paging is off; (2) CR4.PAE = 1; (3) CR3 = PML4; (4) EFER.LME = 1;
    // (5) CR0.PG = 1, which sets EFER.LMA. This page is identity-mapped, as required.
    "movl %cr4, %eax",
    "orl ${physical_address_extension}, %eax",
    "movl %eax, %cr4",
    "movl $probe_page_tables, %eax",
    "movl %eax, %cr3",
    "movl ${efer}, %ecx",
    "rdmsr",
    "orl ${long_mode_enable}, %eax",
    "wrmsr",
    "movl %cr0, %eax",
    "orl ${paging}, %eax",
    "movl %eax, %cr0",
    // Now in compatibility mode; a far JMP to the 64-bit code segment enters 64-bit mode.
    "ljmpl ${code64}, $probe_long_mode_entry",
    //
    // ---- 64-bit mode. ----
    ".code64",
    "probe_long_mode_entry:",
    "movw ${data}, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %ss",
    "xorl %eax, %eax",
    "movw %ax, %fs",
    "movw %ax, %gs",
    "movabsq $probe_stack_top, %rsp",
    "xorl %ebp, %ebp",
    // RSP is 16-byte aligned before the CALL, as the System V ABI requires.
    "call {main}",
    "probe_halt_forever:",
    "cli",
    "hlt",
    "jmp probe_halt_forever",
    //
    // ---- GDT (SDM Vol. 3A section 3.4.5); selectors in src/descriptors.rs. ----
    // Flat segments, base 0, limit 4 GiB (G = 1), present, DPL 0, accessed bit preset so the
    // CPU never writes the table when loading a segment.
    ".balign 16",
    ".globl probe_gdt",
    "probe_gdt:",
    ".quad 0",                  // 0x00: null
    ".quad 0x00cf9b000000ffff", // 0x08: 32-bit code (D = 1), execute/read
    ".quad 0x00cf93000000ffff", // 0x10: data, read/write
    ".quad 0x00af9b000000ffff", // 0x18: 64-bit code (L = 1, D = 0), execute/read
    ".quad 0",                  // 0x20: 64-bit TSS, low half (written by descriptors.rs)
    ".quad 0",                  // 0x28: 64-bit TSS, high half
    "probe_gdt_end:",
    ".balign 4",
    "probe_gdt_pointer:",
    ".word probe_gdt_end - probe_gdt - 1",
    ".long probe_gdt",
    //
    // ---- Page tables and stack (zero-filled .bss above 1 MiB). ----
    ".section .bss.probe_page_tables, \"aw\", @nobits",
    ".balign 4096",
    ".globl probe_page_tables",
    "probe_page_tables:",
    ".skip {page_table_bytes}",
    ".section .bss.probe_stack, \"aw\", @nobits",
    ".balign 16",
    ".skip {stack_bytes}",
    "probe_stack_top:",
    ".text",
    magic = const parameters::MAGIC,
    version = const parameters::VERSION,
    command_line_capacity = const parameters::COMMAND_LINE_CAPACITY,
    cache_bits_cleared = const !CR0_CACHE_DISABLE_BITS,
    protection_enable = const CR0_PROTECTION_ENABLE,
    code32 = const CODE32_SELECTOR,
    code64 = const CODE64_SELECTOR,
    data = const DATA_SELECTOR,
    page_table_dwords = const PAGE_TABLE_BYTES / 4,
    table_flags = const ENTRY_PRESENT | ENTRY_WRITABLE,
    directories = const DIRECTORIES,
    large_page_flags = const ENTRY_PRESENT | ENTRY_WRITABLE | ENTRY_LARGE_PAGE,
    uncached_flags = const ENTRY_WRITE_THROUGH | ENTRY_CACHE_DISABLE,
    first_uncached = const FIRST_UNCACHED_ENTRY,
    directory_entries = const DIRECTORY_ENTRIES,
    physical_address_extension = const CR4_PHYSICAL_ADDRESS_EXTENSION,
    efer = const IA32_EFER,
    long_mode_enable = const EFER_LONG_MODE_ENABLE,
    paging = const CR0_PAGING,
    page_table_bytes = const PAGE_TABLE_BYTES,
    stack_bytes = const STACK_BYTES,
    main = sym crate::probe_main,
    options(att_syntax),
);

// The layout the assembly assumes.
const _: () = {
    assert!(IDENTITY_MAP_BYTES.is_multiple_of(512 * LARGE_PAGE_BYTES));
    assert!(DIRECTORIES <= 4, "one PDPT page, entries 0..4 cover 4 GiB");
    assert!(FIRST_UNCACHED_ENTRY <= DIRECTORY_ENTRIES);
    assert!(
        IDENTITY_MAP_BYTES <= 1 << 32,
        "entries are written as 32-bit values"
    );
    assert!(
        REAL_MODE_ENTRY.0 == 0x8000,
        "linker.ld places .probe.boot at 0x8000"
    );
};
