//! Shared fixtures for the object-model tests: a small model, a recording sink, and a booted
//! root domain holding a RAM range.
#![allow(dead_code)]

use kernel_objects::{
    HostPhys, Mapping, Memory, MemoryKind, Object, ObjectId, ObjectModel, Resources, TeardownSink,
};
use sluice_abi::syscall::{MemoryRights, Selector};

/// 8 domains, 32 selectors each, 64 objects, 32 mappings.
pub type Model = ObjectModel<8, 32, 64, 32>;

/// Selector of the root domain's capability to itself.
pub const ROOT_SELF: Selector = Selector(0);
/// Selector of the root domain's boot RAM capability.
pub const ROOT_RAM: Selector = Selector(1);
/// Size of the boot RAM range.
pub const RAM_SIZE: u64 = 64 * 4096;

/// Records every teardown event.
#[derive(Default, Debug)]
pub struct Recorder {
    pub mappings: Vec<Mapping>,
    pub torn_down: Vec<ObjectId>,
    pub destroyed: Vec<(ObjectId, Object)>,
}

impl TeardownSink for Recorder {
    fn mapping_removed(&mut self, mapping: &Mapping) {
        self.mappings.push(*mapping);
    }
    fn domain_torn_down(&mut self, domain: ObjectId) {
        self.torn_down.push(domain);
    }
    fn object_destroyed(&mut self, id: ObjectId, object: &Object) {
        self.destroyed.push((id, *object));
    }
}

pub fn generous() -> Resources {
    Resources {
        bytes: 1 << 30,
        objects: 40,
        mappings: 24,
    }
}

/// A model with a root domain (quota `generous()`, CPUs 0-3) and a RAM range at 1 MiB.
pub fn boot() -> (Box<Model>, ObjectId) {
    let mut model = Box::new(Model::new());
    let root = model
        .create_root_domain(generous(), 0b1111, ROOT_SELF)
        .expect("root domain");
    model
        .install_boot_object(
            root,
            ROOT_RAM,
            Object::Memory(Memory {
                base: HostPhys(0x10_0000),
                size: RAM_SIZE,
                kind: MemoryKind::Ram,
            }),
            MemoryRights::all().bits(),
        )
        .expect("boot RAM");
    (model, root)
}

/// Small quota for a child domain.
pub fn small() -> Resources {
    Resources {
        bytes: 1 << 20,
        objects: 4,
        mappings: 4,
    }
}
