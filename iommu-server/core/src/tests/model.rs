//! Property test: random map/unmap sequences keep the second-level tables consistent with a
//! simple model (page -> physical address and rights), checked by the fake's hardware walk.

use super::{bdf, Harness};
use crate::dma_remapping::{ContextEntry, SecondLevelTable};
use crate::fake::{AccessKind, FakeVtdConfig};
use crate::DomainId;
use iommu_api::{IoVirt, IommuError, Rights};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec::Vec;

#[derive(Clone, Debug)]
enum Step {
    Map {
        page: u64,
        pages: u64,
        phys_page: u64,
        writable: bool,
    },
    Unmap {
        index: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Sizes up to 2 pages of 2 MiB so superpages and shared tables both occur; IOVAs in 16 MiB.
        (
            0u64..4096,
            prop_oneof![Just(1u64), Just(3), Just(512), Just(1024), 1u64..40],
            0u64..8192,
            any::<bool>()
        )
            .prop_map(|(page, pages, phys_page, writable)| Step::Map {
                page,
                pages,
                phys_page,
                writable
            }),
        (0usize..16).prop_map(|index| Step::Unmap { index }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn tables_match_the_model(steps in proptest::collection::vec(step(), 1..24), large in any::<bool>()) {
        let config = if large { FakeVtdConfig::qemu() } else { FakeVtdConfig::qemu().without_large_pages() };
        let mut harness = Harness::new(config);
        let levels = harness.unit.config().levels;
        let large_pages = harness.unit.config().large_pages;
        let baseline = harness.frames.allocated_count();
        let mut tables = SecondLevelTable::new(&mut harness.memory, &mut harness.frames, levels, large_pages).unwrap();
        let device = bdf(1, 0, 0);
        let did = DomainId(3);
        harness.unit.prepare_bus(&mut harness.memory, &mut harness.frames, 1).unwrap();
        harness.unit.set_context(&mut harness.memory, device, &ContextEntry::translated(did, tables.root(), levels)).unwrap();
        harness.unit.enable_translation().unwrap();
        let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
        let mut mappings: Vec<(u64, u64)> = Vec::new();
        for step in steps {
            match step {
                Step::Map { page, pages, phys_page, writable } => {
                    let (iova, size, phys) = (page * 4096, pages * 4096, 0x4000_0000 + phys_page * 4096);
                    let rights = if writable { Rights::READ | Rights::WRITE } else { Rights::READ };
                    let overlaps = (page..page + pages).any(|p| model.contains_key(&p));
                    let result = tables.map(&mut harness.memory, &mut harness.frames, IoVirt(iova), iommu_api::HostPhys(phys), size, rights);
                    if overlaps {
                        prop_assert_eq!(result, Err(IommuError::AlreadyMapped));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        for p in 0..pages {
                            model.insert(page + p, (phys + p * 4096, writable));
                        }
                        mappings.push((page, pages));
                    }
                }
                Step::Unmap { index } => {
                    if mappings.is_empty() { continue; }
                    let (page, pages) = mappings.remove(index % mappings.len());
                    let cleared = tables.unmap(&mut harness.memory, IoVirt(page * 4096), pages * 4096);
                    prop_assert!(cleared.is_ok());
                    for p in page..page + pages {
                        model.remove(&p);
                    }
                    let flushed = harness.unit.flush_domain(&mut harness.memory, did).unwrap();
                    tables.release_freed_tables(&flushed, did, &mut harness.frames).unwrap();
                }
            }
            // Every page the model knows, plus a few around, resolve like the model says.
            for (page, (phys, writable)) in &model {
                let iova = IoVirt(page * 4096 + 8);
                prop_assert_eq!(harness.fake().dma(device, iova, AccessKind::Read), Ok(iommu_api::HostPhys(phys + 8)));
                let write = harness.fake().dma(device, iova, AccessKind::Write);
                prop_assert_eq!(write.is_ok(), *writable);
            }
            for page in [0u64, 511, 512, 1023, 4095] {
                if !model.contains_key(&page) {
                    prop_assert_eq!(harness.fake().dma(device, IoVirt(page * 4096), AccessKind::Read), Err(0x6));
                }
            }
            let capability = harness.unit.config().capability;
            crate::fault::read_and_clear_faults(harness.fake(), capability, |_| {});
        }
        // Unmap everything: only the root stays allocated once released.
        for (page, pages) in mappings {
            tables.unmap(&mut harness.memory, IoVirt(page * 4096), pages * 4096).unwrap();
        }
        let flushed = harness.unit.flush_domain(&mut harness.memory, did).unwrap();
        tables.release_freed_tables(&flushed, did, &mut harness.frames).unwrap();
        prop_assert_eq!(harness.frames.allocated_count(), baseline + 2, "root + bus context table");
        prop_assert!(harness.frames.bad_frees.is_empty());
    }
}

#[test]
fn release_needs_a_flush_of_the_right_domain() {
    let mut harness = Harness::new(FakeVtdConfig::qemu());
    let config = *harness.unit.config();
    let mut tables = SecondLevelTable::new(
        &mut harness.memory,
        &mut harness.frames,
        config.levels,
        config.large_pages,
    )
    .unwrap();
    tables
        .map(
            &mut harness.memory,
            &mut harness.frames,
            IoVirt(0x1000),
            iommu_api::HostPhys(0x9000),
            0x1000,
            Rights::READ,
        )
        .unwrap();
    tables
        .unmap(&mut harness.memory, IoVirt(0x1000), 0x1000)
        .unwrap();
    assert_eq!(tables.pending_frames().len(), 2);
    let other = harness
        .unit
        .flush_domain(&mut harness.memory, DomainId(9))
        .unwrap();
    assert_eq!(
        tables.release_freed_tables(&other, DomainId(3), &mut harness.frames),
        Err(IommuError::InvalidationError)
    );
    assert_eq!(
        tables.pending_frames().len(),
        2,
        "kept until the right flush"
    );
    let global = harness.unit.flush_all(&mut harness.memory).unwrap();
    assert_eq!(
        tables.release_freed_tables(&global, DomainId(3), &mut harness.frames),
        Ok(2)
    );
}

#[test]
fn map_without_enough_frames_changes_nothing() {
    let mut harness = Harness::new(FakeVtdConfig::qemu().without_large_pages());
    let config = *harness.unit.config();
    let mut tables = SecondLevelTable::new(
        &mut harness.memory,
        &mut harness.frames,
        config.levels,
        config.large_pages,
    )
    .unwrap();
    // Exhaust the allocator but one frame; the map below needs two new tables.
    let mut hoard = Vec::new();
    while harness.frames.available() > 1 {
        hoard.push(crate::memory::FrameAllocator::allocate_frame(&mut harness.frames).unwrap());
    }
    let result = tables.map(
        &mut harness.memory,
        &mut harness.frames,
        IoVirt(0x1000),
        iommu_api::HostPhys(0x9000),
        0x1000,
        Rights::READ,
    );
    assert_eq!(result, Err(IommuError::OutOfTableMemory));
    assert_eq!(
        harness.frames.available(),
        1,
        "the reserved frame went back"
    );
    assert!(tables.is_range_free(&harness.memory, IoVirt(0), 1 << 39));
}
