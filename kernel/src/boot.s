// Multiboot2 header and 32-bit entry (Multiboot2 spec 3.1 and 3.2): GRUB enters `_start32` in
// 32-bit protected mode, paging off, EAX = magic, EBX = boot information. This stub builds an
// identity map of the first 4 GiB with 2 MiB pages, enables PAE, long mode and NX, loads a
// 64-bit GDT and jumps to `kernel_main(magic, mbi)`. Rust's own page tables replace these.
// No braces in this file: global_asm! would read them as format placeholders.

.section .multiboot2_header, "a"
.align 8
mb2_header_start:
    .long 0xe85250d6
    .long 0
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (0xe85250d6 + 0 + (mb2_header_end - mb2_header_start))
    // Module alignment tag (spec 3.1.11): modules start on page boundaries.
    .align 8
    .short 6
    .short 0
    .long 8
    // End tag.
    .align 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

.section .boot.text, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    mov edi, eax
    mov esi, ebx
    mov esp, offset boot_stack_top

    // Long mode present? CPUID.80000001h:EDX bit 29.
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 0x20000000
    jz no_long_mode

    // PML4[0] -> PDPT; PDPT[0..4] -> four page directories; 2048 x 2 MiB pages.
    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax
    mov eax, offset boot_pd
    or eax, 3
    xor ecx, ecx
1:
    mov dword ptr [boot_pdpt + ecx*8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne 1b
    mov eax, 0x83
    xor ecx, ecx
2:
    mov dword ptr [boot_pd + ecx*8], eax
    mov dword ptr [boot_pd + ecx*8 + 4], 0
    add eax, 0x200000
    inc ecx
    cmp ecx, 2048
    jne 2b

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x20                // CR4.PAE
    mov cr4, eax
    mov ecx, 0xc0000080         // IA32_EFER
    rdmsr
    or eax, 0x900               // LME | NXE
    wrmsr
    mov eax, cr0
    and eax, 0x9fffffff         // clear CD (bit 30) and NW (bit 29): firmware may leave them set
    or eax, 0x80010001          // PG | WP | PE
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    mov eax, 0x08
    push eax
    mov eax, offset long_mode_entry
    push eax
    retf

no_long_mode:
    // Say "no64" on COM1 and stop.
    mov dx, 0x3f8
    mov al, 0x6e
    out dx, al
    mov al, 0x6f
    out dx, al
    mov al, 0x36
    out dx, al
    mov al, 0x34
    out dx, al
3:
    hlt
    jmp 3b

.code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, edi                // zero-extend magic and MBI pointer: upper halves are undefined
    mov esi, esi
    call kernel_main
4:
    hlt
    jmp 4b

.section .rodata
.align 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    // 0x08: 64-bit code
    .quad 0x00cf92000000ffff    // 0x10: data
boot_gdt_end:
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

.section .bss
.align 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
boot_stack:
    .skip 65536
.global boot_stack_top
boot_stack_top:
