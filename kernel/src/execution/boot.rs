//! Creating the root task: init's domain, address space and thread, and every boot capability
//! (its own domain and thread, a fault notification, all I/O ports and interrupt lines, the boot
//! modules, free RAM and device MMIO), described in the boot-information page
//! (`sluice_abi::boot`).

use super::threads::ThreadContext;
use super::{Kernel, OBJECTS};
use crate::address_space::{Access, AddressSpace, USER_END, USER_START};
use crate::frames;
use crate::paging::{phys_to_virt, PAGE_4K};
use kernel_core::elf::Executable;
use kernel_core::frames::Range;
use kernel_objects::{
    HostPhys, Interrupt, IoPortRange, Memory, MemoryKind, Object, Resources, ThreadParameters,
    UserVirt,
};
use sluice_abi::boot::{
    self, selector, BootCapability, BootCapabilityKind, BootInfo, BOOT_INFO_MAGIC,
};
use sluice_abi::syscall::{MemoryRights, ObjectType, Selector, Status, ThreadOperation};
use zerocopy::{FromZeros, IntoBytes};

/// A boot module as the kernel found it.
pub struct BootModule<'a> {
    pub start: u64,
    pub end: u64,
    pub cmdline: &'a str,
}

/// What the kernel discovered and hands to init.
pub struct RootResources<'a> {
    pub modules: &'a [BootModule<'a>],
    pub ram: &'a [Range],
    pub mmio: &'a [Range],
    pub cpus: u32,
    pub ecam: Option<(u64, u8, u8)>,
    pub dmar_unit: Option<u64>,
    /// Physical address and length of the ACPI DMAR table.
    pub dmar_table: Option<(u64, u32)>,
    pub gsi_count: u32,
    pub cmdline: &'a str,
}

/// Why the root task could not be created.
#[derive(Debug)]
pub enum RootError {
    NoInit,
    BadImage(kernel_core::elf::ElfError),
    OutOfMemory,
    Model(Status),
}

impl core::fmt::Display for RootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RootError::NoInit => write!(f, "no module named \"init\""),
            RootError::BadImage(error) => write!(f, "init is not a loadable program: {error}"),
            RootError::OutOfMemory => write!(f, "out of memory for init's address space"),
            RootError::Model(status) => write!(f, "object model refused a boot object: {status}"),
        }
    }
}

impl From<Status> for RootError {
    fn from(status: Status) -> Self {
        RootError::Model(status)
    }
}

fn module_bytes(module: &BootModule<'_>) -> &'static [u8] {
    // SAFETY: GRUB loaded the module at [start, end) in RAM the frame allocator excludes; it is
    // never written, and it lies inside the direct map.
    unsafe {
        core::slice::from_raw_parts(
            phys_to_virt(module.start),
            (module.end - module.start) as usize,
        )
    }
}

/// Maps fresh zeroed frames over `[start, end)` and returns the first frame's address.
fn map_fresh(
    space: &mut AddressSpace,
    start: u64,
    end: u64,
    access: Access,
) -> Result<(), RootError> {
    let mut address = start;
    while address < end {
        let frame = frames::allocate().ok_or(RootError::OutOfMemory)?;
        space
            .map(address, frame, access)
            .map_err(|_| RootError::OutOfMemory)?;
        address += PAGE_4K;
    }
    Ok(())
}

fn load_image(space: &mut AddressSpace, image: &[u8]) -> Result<u64, RootError> {
    let executable = Executable::parse(image, USER_START, USER_END).map_err(RootError::BadImage)?;
    for segment in &executable.segments {
        let (start, end) = segment.pages();
        let access = Access {
            writable: segment.writable,
            executable: segment.executable,
            uncached: false,
        };
        map_fresh(space, start, end, access)?;
        let file = &image
            [segment.file_offset as usize..(segment.file_offset + segment.file_size) as usize];
        if !space.write_any(segment.virtual_address, file) {
            return Err(RootError::OutOfMemory);
        }
    }
    Ok(executable.entry)
}

fn listed(
    kind: BootCapabilityKind,
    selector: u32,
    base: u64,
    size: u64,
    length: u64,
    name: &str,
) -> BootCapability {
    let mut entry = BootCapability {
        selector,
        kind: kind as u32,
        base,
        size,
        length,
        name: [0; 48],
    };
    let bytes = name.as_bytes();
    let take = bytes.len().min(47);
    entry.name[..take].copy_from_slice(&bytes[..take]);
    entry
}

/// Creates init and makes its thread ready.
pub fn start_root_task(
    kernel: &mut Kernel,
    resources: &RootResources<'_>,
) -> Result<(), RootError> {
    let init = resources
        .modules
        .iter()
        .find(|m| m.cmdline.split_whitespace().next() == Some("init"))
        .ok_or(RootError::NoInit)?;
    let all_cpus = if resources.cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << resources.cpus) - 1
    };
    // Init may hand out three quarters of the kernel's pool as quota (page tables, objects);
    // the rest stays for what the kernel allocates on its own (VM tables, VMCBs/VMCSs).
    let pool_bytes = frames::statistics().1 * PAGE_4K;
    let limit = Resources {
        bytes: pool_bytes / 4 * 3,
        objects: (OBJECTS - 16) as u32,
        mappings: (super::MAPPINGS - 16) as u32,
    };
    let root = kernel
        .model
        .create_root_domain(limit, all_cpus, Selector(selector::SELF_DOMAIN))?;

    let mut space = AddressSpace::new().map_err(|_| RootError::OutOfMemory)?;
    let entry = load_image(&mut space, module_bytes(init))?;
    let data = Access {
        writable: true,
        executable: false,
        uncached: false,
    };
    map_fresh(
        &mut space,
        boot::INIT_STACK_TOP - boot::INIT_STACK_SIZE,
        boot::INIT_STACK_TOP,
        data,
    )?;
    map_fresh(&mut space, boot::INIT_UTCB, boot::INIT_UTCB + PAGE_4K, data)?;

    // Boot capabilities.
    kernel
        .model
        .create_notification(root, Selector(selector::FAULT_NOTIFICATION))?;
    let (_, fault) = kernel
        .model
        .lookup_any(root, Selector(selector::FAULT_NOTIFICATION))?;
    kernel.fault_notification = Some(fault.object);
    let ports = Object::IoPortRange(IoPortRange {
        first: 0,
        count: 65536,
    });
    kernel.model.install_boot_object(
        root,
        Selector(selector::IO_PORTS),
        ports,
        ObjectType::IoPortRange.valid_rights(),
    )?;
    let lines = crate::interrupt_routing::LINES;
    let interrupts = Object::Interrupt(Interrupt {
        first_line: 0,
        count: lines,
        binding: None,
    });
    kernel.model.install_boot_object(
        root,
        Selector(selector::INTERRUPTS),
        interrupts,
        ObjectType::Interrupt.valid_rights(),
    )?;

    let mut info = BootInfo::new_zeroed();
    info.magic = BOOT_INFO_MAGIC;
    info.cpus = resources.cpus;
    if let Some((base, start, end)) = resources.ecam {
        (info.ecam_base, info.ecam_start_bus, info.ecam_end_bus) = (base, start.into(), end.into());
    }
    info.dmar_unit = resources.dmar_unit.unwrap_or(0);
    if let Some((table, length)) = resources.dmar_table {
        info.dmar_table = table;
        info.dmar_length = u64::from(length);
    }
    info.gsi_count = resources.gsi_count;
    info.first_msi_line = crate::interrupt_routing::FIRST_MSI_LINE;
    let cmdline = resources.cmdline.as_bytes();
    let take = cmdline.len().min(info.kernel_cmdline.len() - 1);
    info.kernel_cmdline[..take].copy_from_slice(&cmdline[..take]);

    let mut next = selector::FIRST_LISTED;
    let mut count = 0usize;
    let mut add = |kernel: &mut Kernel,
                   entry: BootCapability,
                   object: Object,
                   rights: u64|
     -> Result<(), RootError> {
        if count >= info.capabilities.len() || next >= selector::FIRST_FREE {
            return Ok(()); // More than the page lists: the rest stays with the kernel.
        }
        if let Err(status) = kernel
            .model
            .install_boot_object(root, Selector(next), object, rights)
        {
            kprintln!(
                "sluice: boot capability {:#x}+{:#x} (kind {}) refused: {status}",
                entry.base,
                entry.size,
                entry.kind
            );
            return Err(RootError::Model(status));
        }
        info.capabilities[count] = BootCapability {
            selector: next,
            ..entry
        };
        count += 1;
        next += 1;
        Ok(())
    };
    let read = MemoryRights::READ.bits();
    for module in resources.modules {
        let size = (module.end - module.start)
            .next_multiple_of(PAGE_4K)
            .max(PAGE_4K);
        let object = Object::Memory(Memory {
            base: HostPhys(module.start),
            size,
            kind: MemoryKind::Ram,
        });
        let entry = listed(
            BootCapabilityKind::Module,
            0,
            module.start,
            size,
            module.end - module.start,
            module.cmdline,
        );
        add(kernel, entry, object, read)?;
    }
    let ram_rights = MemoryRights::all().bits();
    for range in resources.ram {
        let object = Object::Memory(Memory {
            base: HostPhys(range.start),
            size: range.len(),
            kind: MemoryKind::Ram,
        });
        add(
            kernel,
            listed(
                BootCapabilityKind::Ram,
                0,
                range.start,
                range.len(),
                range.len(),
                "",
            ),
            object,
            ram_rights,
        )?;
    }
    if let Some((table, length)) = resources.dmar_table {
        let base = table & !(PAGE_4K - 1);
        let size = (table + u64::from(length)).next_multiple_of(PAGE_4K) - base;
        let object = Object::Memory(Memory {
            base: HostPhys(base),
            size,
            kind: MemoryKind::Ram,
        });
        let entry = listed(
            BootCapabilityKind::Firmware,
            0,
            base,
            size,
            u64::from(length),
            "acpi-dmar",
        );
        add(kernel, entry, object, MemoryRights::READ.bits())?;
    }
    let mmio_rights = (MemoryRights::READ | MemoryRights::WRITE | MemoryRights::RETYPE).bits();
    for range in resources.mmio {
        let object = Object::Memory(Memory {
            base: HostPhys(range.start),
            size: range.len(),
            kind: MemoryKind::DeviceMmio,
        });
        add(
            kernel,
            listed(
                BootCapabilityKind::DeviceMmio,
                0,
                range.start,
                range.len(),
                range.len(),
                "",
            ),
            object,
            mmio_rights,
        )?;
    }
    info.capability_count = count as u32;

    let info_frame = frames::allocate().ok_or(RootError::OutOfMemory)?;
    // SAFETY: a fresh frame in the direct map; BootInfo fits in a page (checked in the ABI).
    unsafe {
        core::ptr::copy_nonoverlapping(
            info.as_bytes().as_ptr(),
            phys_to_virt(info_frame),
            info.as_bytes().len(),
        )
    };
    let read_only = Access {
        writable: false,
        executable: false,
        uncached: false,
    };
    space
        .map(boot::BOOT_INFO_ADDRESS, info_frame, read_only)
        .map_err(|_| RootError::OutOfMemory)?;

    let state = kernel.domain(root);
    state.space = Some(space);
    state.name = *b"init\0\0\0\0";
    kernel.root = Some(root);

    let parameters = ThreadParameters {
        instruction_pointer: UserVirt::new(entry)?,
        stack_pointer: UserVirt::new(boot::INIT_STACK_TOP - 64)?,
        utcb: UserVirt::new_page_aligned(boot::INIT_UTCB)?,
        priority: 20,
        cpu: 0,
    };
    let thread = kernel.model.create_thread(
        root,
        Selector(selector::SELF_DOMAIN),
        Selector(selector::SELF_THREAD),
        parameters,
    )?;
    kernel.threads[thread.index as usize % OBJECTS] =
        ThreadContext::new(thread, root, boot::INIT_UTCB, 20, 0);
    let frame = super::frames::frame(thread.index);
    *frame = super::threads::first_frame(entry, boot::INIT_STACK_TOP - 64, boot::INIT_UTCB);
    frame.rdi = boot::BOOT_INFO_ADDRESS;
    kernel.model.thread_control(
        root,
        Selector(selector::SELF_THREAD),
        ThreadOperation::Start,
        0,
    )?;
    kernel.make_ready(thread.index);
    kprintln!(
        "sluice: init started: entry {entry:#x}, {count} boot capabilities, {} frames free",
        frames::statistics().0
    );
    Ok(())
}
