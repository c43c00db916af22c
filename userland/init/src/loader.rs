//! Starting one program: its ELF module is mapped read-only into init's module window and
//! checked (`kernel_core::elf`); a new domain gets, per loadable segment, RAM carved to the
//! segment's exact page range, filled through init's scratch window (file bytes copied, the
//! rest zeroed), unmapped from init and mapped at the segment's address with the segment's
//! rights; then a 16 KiB stack with the argument block and a UTCB page; then its thread, a
//! portal to init, the common capabilities and the program's grants; finally the thread
//! starts. The first refused step ends the attempt: it is reported and nothing further is
//! tried for that program.

use kernel_core::elf::{Executable, Segment};
use sluice_abi::boot::selector::{INTERRUPTS, SELF_DOMAIN, SELF_THREAD};
use sluice_abi::boot::{BootCapabilityKind, BootInfo};
use sluice_abi::syscall::{
    InterruptRights, MemoryRights, NotificationRights, PortalRights, ProtectionDomainRights,
    Selector, Status, ThreadRights,
};
use sluice_rt::start::ArgumentBlock;
use sluice_rt::types::{DomainName, ThreadStart};

use crate::error::{Action, InitError};
use crate::kernel::Kernel;
use crate::layout::{
    page_round_up, stack_top, CHILD_IMAGE_RANGE, CHILD_UTCB, MODULE_WINDOW, PAGE, SCRATCH_WINDOW,
};
use crate::programs::{GrantKind, ProgramSpec};
use crate::resources::Resources;

const OWN: Selector = Selector(SELF_DOMAIN);
const READ_WRITE: MemoryRights = MemoryRights::READ.union(MemoryRights::WRITE);

/// A started program, as init's table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    pub number: u64,
    pub domain: Selector,
    pub thread: Selector,
    pub parent_portal: Selector,
}

/// The rights a segment is mapped with: always read, write and execute as its flags say.
pub fn segment_rights(segment: &Segment) -> MemoryRights {
    let mut rights = MemoryRights::READ;
    if segment.writable {
        rights |= MemoryRights::WRITE;
    }
    if segment.executable {
        rights |= MemoryRights::EXECUTE;
    }
    rights
}

struct Loader<'a, K: Kernel> {
    kernel: &'a mut K,
    resources: &'a mut Resources,
    program: &'static str,
}

impl<K: Kernel> Loader<'_, K> {
    fn refused(&self, action: Action) -> impl FnOnce(Status) -> InitError {
        let program = self.program;
        move |status| InitError::Kernel {
            program,
            action,
            status,
        }
    }

    /// Maps `pages` (address, offset in `memory`, size) of `memory` into `domain`.
    fn map(
        &mut self,
        memory: Selector,
        domain: Selector,
        pages: (u64, u64, u64),
        rights: MemoryRights,
        action: Action,
    ) -> Result<(), InitError> {
        let (address, offset, size) = pages;
        let refused = self.refused(action);
        self.kernel
            .map(memory, domain, address, offset, size, rights)
            .map_err(refused)
    }

    fn unmap_scratch(&mut self, size: u64) -> Result<(), InitError> {
        let refused = self.refused(Action::UnmapScratch);
        self.kernel
            .unmap(OWN, SCRATCH_WINDOW, size)
            .map_err(refused)
    }

    fn load_segment(
        &mut self,
        domain: Selector,
        index: usize,
        segment: &Segment,
    ) -> Result<u64, InitError> {
        let (start, end) = segment.pages();
        let size = end - start;
        let memory = self.resources.carve_ram(
            self.kernel,
            self.program,
            size,
            Action::CarveSegment { index },
        )?;
        self.map(
            memory,
            OWN,
            (SCRATCH_WINDOW, 0, size),
            READ_WRITE,
            Action::MapScratch,
        )?;
        self.kernel.zero_own(SCRATCH_WINDOW, size)?;
        let in_page = segment.virtual_address - start;
        self.kernel.copy_own(
            SCRATCH_WINDOW + in_page,
            MODULE_WINDOW + segment.file_offset,
            segment.file_size,
        )?;
        self.unmap_scratch(size)?;
        let action = Action::MapSegment {
            index,
            address: start,
        };
        self.map(
            memory,
            domain,
            (start, 0, size),
            segment_rights(segment),
            action,
        )?;
        Ok(size)
    }

    /// Stack and UTCB in one carve: the stack at offset 0, the UTCB page after it.
    fn load_thread_memory(
        &mut self,
        domain: Selector,
        spec: &ProgramSpec,
    ) -> Result<u64, InitError> {
        let program = self.program;
        let stack_size = spec.stack_size;
        let top = stack_top(stack_size);
        let block = ArgumentBlock::new(top, &spec.arguments)
            .map_err(|_| InitError::Arguments { program })?;
        if stack_size == 0 || !stack_size.is_multiple_of(PAGE) || stack_size >= top {
            return Err(InitError::Arguments { program });
        }
        let size = stack_size + PAGE;
        let memory =
            self.resources
                .carve_ram(self.kernel, program, size, Action::CarveThreadMemory)?;
        self.map(
            memory,
            OWN,
            (SCRATCH_WINDOW, 0, size),
            READ_WRITE,
            Action::MapScratch,
        )?;
        self.kernel.zero_own(SCRATCH_WINDOW, size)?;
        let stack_base = top - stack_size;
        let block_offset = block.stack_pointer() - stack_base;
        self.kernel
            .write_own(SCRATCH_WINDOW + block_offset, block.bytes())?;
        self.unmap_scratch(size)?;
        let action = Action::MapStack {
            address: stack_base,
        };
        self.map(
            memory,
            domain,
            (stack_base, 0, stack_size),
            READ_WRITE,
            action,
        )?;
        let action = Action::MapUtcb {
            address: CHILD_UTCB,
        };
        self.map(
            memory,
            domain,
            (CHILD_UTCB, stack_size, PAGE),
            READ_WRITE,
            action,
        )?;
        Ok(block.stack_pointer())
    }

    fn delegate(
        &mut self,
        source: Selector,
        domain: Selector,
        destination: u32,
        rights: u64,
    ) -> Result<(), InitError> {
        let refused = self.refused(Action::Delegate { destination });
        self.kernel
            .delegate(source, domain, Selector(destination), rights)
            .map_err(refused)
    }

    /// RAM of `size` bytes, zeroed, or filled with `fill` repeated when it is not zero.
    fn filled_ram(&mut self, size: u64, fill: u64) -> Result<Selector, InitError> {
        let action = Action::CarveRam { size };
        let memory = self
            .resources
            .carve_ram(self.kernel, self.program, size, action)?;
        self.map(
            memory,
            OWN,
            (SCRATCH_WINDOW, 0, size),
            READ_WRITE,
            Action::MapScratch,
        )?;
        self.kernel.zero_own(SCRATCH_WINDOW, size)?;
        if fill != 0 {
            let pattern = fill.to_le_bytes();
            for offset in (0..size).step_by(pattern.len()) {
                self.kernel.write_own(SCRATCH_WINDOW + offset, &pattern)?;
            }
        }
        self.unmap_scratch(size)?;
        Ok(memory)
    }

    /// A new notification with interrupt `line` bound to its bit 0.
    fn bind_interrupt(&mut self, line: u32) -> Result<(Selector, Selector), InitError> {
        let notification = self.resources.selector()?;
        let refused = self.refused(Action::CreateNotification);
        self.kernel
            .create_notification(notification)
            .map_err(refused)?;
        let bound = self.resources.selector()?;
        let refused = self.refused(Action::BindInterrupt { line });
        self.kernel
            .create_interrupt(Selector(INTERRUPTS), bound, line, notification, 0)
            .map_err(refused)?;
        Ok((notification, bound))
    }

    fn create_portal(&mut self, handler: Selector, portal_id: u64) -> Result<Selector, InitError> {
        let portal = self.resources.selector()?;
        let refused = self.refused(Action::CreatePortal { portal_id });
        self.kernel
            .create_portal(handler, portal, portal_id)
            .map_err(refused)?;
        Ok(portal)
    }
}

/// Starts `spec`'s program from its boot module. See the module documentation for the steps.
pub fn load<K: Kernel>(
    kernel: &mut K,
    boot: &BootInfo,
    resources: &mut Resources,
    spec: &ProgramSpec,
) -> Result<Child, InitError> {
    let program = spec.program;
    let module = *boot
        .module(program)
        .ok_or(InitError::ModuleMissing { module: program })?;
    let name = DomainName::new(spec.domain_name).map_err(|_| InitError::Arguments { program })?;
    let mut loader = Loader {
        kernel,
        resources,
        program,
    };
    let module_size = page_round_up(module.length.max(1))
        .unwrap_or(module.size)
        .min(module.size);
    loader.map(
        Selector(module.selector),
        OWN,
        (MODULE_WINDOW, 0, module_size),
        MemoryRights::READ,
        Action::MapModule,
    )?;
    let image = loader.kernel.read_own(MODULE_WINDOW, module.length)?;
    let (first, last) = CHILD_IMAGE_RANGE;
    let executable =
        Executable::parse(image, first, last).map_err(|error| InitError::Elf { program, error })?;

    let domain = loader.resources.selector()?;
    let refused = loader.refused(Action::CreateDomain);
    let cpu_mask = 1u64.checked_shl(u32::from(spec.cpu)).unwrap_or(0);
    loader
        .kernel
        .create_protection_domain(domain, spec.quota, cpu_mask, name)
        .map_err(refused)?;
    let mut image_bytes = 0u64;
    for (index, segment) in executable.segments.iter().enumerate() {
        image_bytes += loader.load_segment(domain, index, segment)?;
    }
    let stack_pointer = loader.load_thread_memory(domain, spec)?;

    let thread = loader.resources.selector()?;
    let start = ThreadStart {
        instruction_pointer: executable.entry,
        stack_pointer,
        utcb: CHILD_UTCB,
        priority: spec.priority,
        cpu: spec.cpu,
    };
    let refused = loader.refused(Action::CreateThread);
    loader
        .kernel
        .create_thread(domain, thread, start)
        .map_err(refused)?;
    let parent_portal = loader.create_portal(Selector(SELF_THREAD), spec.number)?;

    let domain_rights = ProtectionDomainRights::CREATE_THREAD | ProtectionDomainRights::MAP;
    loader.delegate(domain, domain, 0, domain_rights.bits())?;
    loader.delegate(thread, domain, 1, ThreadRights::all().bits())?;
    loader.delegate(parent_portal, domain, 2, PortalRights::CALL.bits())?;
    for grant in &spec.grants {
        match grant.kind {
            GrantKind::PortalTo { handler } => {
                let portal = loader.create_portal(handler, spec.number)?;
                loader.delegate(portal, domain, grant.destination, PortalRights::CALL.bits())?;
            }
            GrantKind::IoPorts { first, count } => {
                let ports = loader.resources.selector()?;
                let source = Selector(sluice_abi::boot::selector::IO_PORTS);
                let refused = loader.refused(Action::Delegate {
                    destination: grant.destination,
                });
                loader
                    .kernel
                    .create_io_range(source, ports, first, count)
                    .map_err(refused)?;
                let access = sluice_abi::syscall::IoPortRights::ACCESS.bits();
                loader.delegate(ports, domain, grant.destination, access)?;
            }
            GrantKind::Ram { size } => {
                let memory = loader.resources.carve_ram(
                    loader.kernel,
                    program,
                    size,
                    Action::CarveRam { size },
                )?;
                loader.delegate(
                    memory,
                    domain,
                    grant.destination,
                    MemoryRights::all().bits(),
                )?;
            }
            GrantKind::Module { name } => {
                if let Some(module) = boot.module(name) {
                    let read = MemoryRights::READ.bits();
                    loader.delegate(Selector(module.selector), domain, grant.destination, read)?;
                }
            }
            GrantKind::Firmware { name } => {
                let table = boot
                    .listed()
                    .iter()
                    .find(|c| c.kind == BootCapabilityKind::Firmware as u32 && c.name() == name);
                if let Some(table) = table {
                    let read = MemoryRights::READ.bits();
                    loader.delegate(Selector(table.selector), domain, grant.destination, read)?;
                }
            }
            GrantKind::Memory { size, rights, fill } => {
                let memory = loader.filled_ram(size, fill)?;
                loader.delegate(memory, domain, grant.destination, rights.bits())?;
            }
            GrantKind::Interrupt { line, interrupt } => {
                let (notification, bound) = loader.bind_interrupt(line)?;
                let wait = NotificationRights::WAIT.bits();
                loader.delegate(notification, domain, grant.destination, wait)?;
                let acknowledge = InterruptRights::ACKNOWLEDGE.bits();
                loader.delegate(bound, domain, interrupt, acknowledge)?;
            }
            GrantKind::InterruptLines { rights } => {
                loader.delegate(
                    Selector(INTERRUPTS),
                    domain,
                    grant.destination,
                    rights.bits(),
                )?;
            }
            GrantKind::Device {
                address,
                size,
                rights,
            } => {
                let memory =
                    loader
                        .resources
                        .carve_device(loader.kernel, program, address, size)?;
                loader.delegate(memory, domain, grant.destination, rights.bits())?;
            }
        }
    }
    let refused = loader.refused(Action::UnmapModule);
    loader
        .kernel
        .unmap(OWN, MODULE_WINDOW, module_size)
        .map_err(refused)?;
    let refused = loader.refused(Action::StartThread);
    loader.kernel.start_thread(thread).map_err(refused)?;
    sluice_rt::log!(
        "init: started {program} as domain {} on cpu {} ({} KiB image, {} KiB stack)",
        spec.domain_name,
        spec.cpu,
        image_bytes / 1024,
        spec.stack_size / 1024
    );
    Ok(Child {
        number: spec.number,
        domain,
        thread,
        parent_portal,
    })
}
