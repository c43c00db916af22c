//! Behavioural tests of the EPT / NPT builders against a fake physical memory and frame source,
//! including a model-based property test of random map / unmap sequences.
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::address::{GuestPhys, HostPhys};

/// Word-addressed fake physical memory; unwritten words read as zero.
#[derive(Default)]
struct FakeMemory {
    words: BTreeMap<u64, u64>,
}

impl TableMemory for FakeMemory {
    fn read(&self, address: HostPhys) -> u64 {
        assert_eq!(address.0 % 8, 0, "unaligned table access");
        self.words.get(&address.0).copied().unwrap_or(0)
    }
    fn write(&mut self, address: HostPhys, value: u64) {
        assert_eq!(address.0 % 8, 0, "unaligned table access");
        if value == 0 {
            self.words.remove(&address.0);
        } else {
            self.words.insert(address.0, value);
        }
    }
}

impl FakeMemory {
    fn frame_is_zero(&self, frame: HostPhys) -> bool {
        self.words.range(frame.0..frame.0 + 4096).next().is_none()
    }
}

/// Frames from 0x1000_0000 upwards, with an optional allocation limit; checks zeroing and
/// double frees.
struct FakeFrames {
    next: u64,
    live: BTreeSet<u64>,
    limit: Option<usize>,
}

impl FakeFrames {
    fn new() -> Self {
        FakeFrames {
            next: 0x1000_0000,
            live: BTreeSet::new(),
            limit: None,
        }
    }
}

impl FrameSource for FakeFrames {
    fn allocate_zeroed(&mut self) -> Option<HostPhys> {
        if self.limit.is_some_and(|limit| self.live.len() >= limit) {
            return None;
        }
        let frame = self.next;
        self.next += 4096;
        self.live.insert(frame);
        Some(HostPhys(frame))
    }
    fn free(&mut self, frame: HostPhys) {
        assert!(
            self.live.remove(&frame.0),
            "double or foreign free of {:#x}",
            frame.0
        );
    }
}

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const RW: Rights = Rights::READ.union(Rights::WRITE);
const RWX: Rights = Rights::all();

fn config(largest_page: PageSize) -> TableConfig {
    TableConfig {
        guest_address_bits: 39,
        largest_page,
    }
}

fn setup<F: EntryFormat>(largest: PageSize) -> (NestedPageTable<F>, FakeMemory, FakeFrames) {
    let mut frames = FakeFrames::new();
    let tables = NestedPageTable::<F>::new(config(largest), &mut frames).unwrap();
    (tables, FakeMemory::default(), frames)
}

#[test]
fn ept_chooses_large_pages_where_aligned_and_encodes_entries() {
    let (mut ept, mut memory, mut frames) = setup::<Ept>(PageSize::Size1G);
    // 1 GiB + 2 MiB + 4 KiB, all aligned: one page of each size.
    let size = GIB + MIB2 + 4096;
    let report = ept
        .map(
            &mut memory,
            &mut frames,
            GuestPhys(GIB),
            HostPhys(4 * GIB),
            size,
            RWX,
            MemoryType::WriteBack,
        )
        .unwrap();
    assert_eq!(
        (report.pages_1g, report.pages_2m, report.pages_4k),
        (1, 1, 1)
    );
    assert_eq!(report.tables_created, 3, "PDPT, PD, PT");
    assert_eq!(frames.live.len(), 4);
    let big = ept.translate(&memory, GuestPhys(GIB + 0x1234)).unwrap();
    assert_eq!(big.hpa, HostPhys(4 * GIB + 0x1234));
    assert_eq!(big.page_size, PageSize::Size1G);
    assert_eq!(big.rights, RWX);
    assert_eq!(big.memory_type, MemoryType::WriteBack);
    let small = ept
        .translate(&memory, GuestPhys(2 * GIB + MIB2 + 8))
        .unwrap();
    assert_eq!(
        (small.hpa, small.page_size),
        (HostPhys(4 * GIB + GIB + MIB2 + 8), PageSize::Size4K)
    );
    assert_eq!(
        ept.translate(&memory, GuestPhys(2 * GIB + MIB2 + 4096)),
        None
    );
    // The raw 1 GiB PDPTE: address, R|W|X, WB (6 << 3), PS.
    let pml4e = memory.read(ept.root());
    assert_eq!(pml4e & 7, 7, "tables grant all rights");
    let pdpt = pml4e & 0x000f_ffff_ffff_f000;
    assert_eq!(
        memory.read(HostPhys(pdpt + 8)),
        (4 * GIB) | 7 | 6 << 3 | 1 << 7
    );
    assert_eq!(ept.eptp(false), ept.root().0 | 6 | 3 << 3);
    assert_eq!(ept.eptp(true) & (1 << 6), 1 << 6);
}

#[test]
fn unaligned_host_address_or_configuration_forces_smaller_pages() {
    let (mut ept, mut memory, mut frames) = setup::<Ept>(PageSize::Size1G);
    let report = ept
        .map(
            &mut memory,
            &mut frames,
            GuestPhys(0),
            HostPhys(0x20_1000),
            MIB2,
            RW,
            MemoryType::WriteBack,
        )
        .unwrap();
    assert_eq!((report.pages_2m, report.pages_4k), (0, 512));
    let (mut limited, mut memory, mut frames) = setup::<Ept>(PageSize::Size2M);
    let report = limited
        .map(
            &mut memory,
            &mut frames,
            GuestPhys(0),
            HostPhys(0),
            GIB,
            RW,
            MemoryType::WriteBack,
        )
        .unwrap();
    assert_eq!((report.pages_1g, report.pages_2m), (0, 512));
    let (mut small, mut memory, mut frames) = setup::<Npt>(PageSize::Size4K);
    let report = small
        .map(
            &mut memory,
            &mut frames,
            GuestPhys(0),
            HostPhys(0),
            MIB2,
            RW,
            MemoryType::WriteBack,
        )
        .unwrap();
    assert_eq!((report.pages_2m, report.pages_4k), (0, 512));
}

#[test]
fn rights_and_memory_types_are_encoded_per_format() {
    let (mut ept, mut memory, mut frames) = setup::<Ept>(PageSize::Size1G);
    ept.map(
        &mut memory,
        &mut frames,
        GuestPhys(0xfe00_0000),
        HostPhys(0xfe00_0000),
        4096,
        RW,
        MemoryType::Uncacheable,
    )
    .unwrap();
    let mmio = ept.translate(&memory, GuestPhys(0xfe00_0010)).unwrap();
    assert_eq!(
        (mmio.rights, mmio.memory_type),
        (RW, MemoryType::Uncacheable)
    );
    assert_eq!(
        ept.map(
            &mut memory,
            &mut frames,
            GuestPhys(0),
            HostPhys(0),
            4096,
            Rights::WRITE,
            MemoryType::WriteBack
        ),
        Err(MapError::UnsupportedRights(Rights::WRITE))
    );

    let (mut npt, mut memory, mut frames) = setup::<Npt>(PageSize::Size1G);
    npt.map(
        &mut memory,
        &mut frames,
        GuestPhys(0),
        HostPhys(0x10_0000),
        4096,
        Rights::READ,
        MemoryType::Uncacheable,
    )
    .unwrap();
    let read_only = npt.translate(&memory, GuestPhys(0)).unwrap();
    assert_eq!(
        (read_only.rights, read_only.memory_type),
        (Rights::READ, MemoryType::Uncacheable)
    );
    npt.map(
        &mut memory,
        &mut frames,
        GuestPhys(MIB2),
        HostPhys(MIB2),
        MIB2,
        RWX,
        MemoryType::WriteBack,
    )
    .unwrap();
    let large = npt.translate(&memory, GuestPhys(MIB2 + 5)).unwrap();
    assert_eq!((large.rights, large.page_size), (RWX, PageSize::Size2M));
    // Raw NPT entries: tables P|RW|US; the 4 KiB leaf P|US|PWT|PCD|NX; the 2 MiB leaf P|RW|US|PS.
    let pml4e = memory.read(npt.root());
    assert_eq!(pml4e & 0xfff, 0b111);
    let pdpt = pml4e & 0x000f_ffff_ffff_f000;
    let pd = memory.read(HostPhys(pdpt)) & 0x000f_ffff_ffff_f000;
    assert_eq!(memory.read(HostPhys(pd + 8)), MIB2 | 0b111 | 1 << 7);
    let pt = memory.read(HostPhys(pd)) & 0x000f_ffff_ffff_f000;
    assert_eq!(
        memory.read(HostPhys(pt)),
        0x10_0000 | 0b101 | 0b11 << 3 | 1 << 63
    );
    assert_eq!(npt.nested_cr3(), npt.root().0);
}

#[test]
fn bad_requests_are_refused_with_named_errors_and_change_nothing() {
    let (mut ept, mut memory, mut frames) = setup::<Ept>(PageSize::Size1G);
    ept.map(
        &mut memory,
        &mut frames,
        GuestPhys(MIB2),
        HostPhys(0),
        MIB2,
        RW,
        MemoryType::WriteBack,
    )
    .unwrap();
    let snapshot = memory.words.clone();
    let live = frames.live.clone();
    let wb = MemoryType::WriteBack;
    let cases = [
        (GuestPhys(0), HostPhys(0), 0, MapError::Empty),
        (
            GuestPhys(0x800),
            HostPhys(0),
            4096,
            MapError::Misaligned {
                gpa: GuestPhys(0x800),
                hpa: HostPhys(0),
                size: 4096,
            },
        ),
        (
            GuestPhys(1 << 39),
            HostPhys(0),
            4096,
            MapError::GuestAddressOutOfRange {
                gpa: GuestPhys(1 << 39),
                size: 4096,
            },
        ),
        (
            GuestPhys((1 << 39) - 4096),
            HostPhys(0),
            8192,
            MapError::GuestAddressOutOfRange {
                gpa: GuestPhys((1 << 39) - 4096),
                size: 8192,
            },
        ),
        (
            GuestPhys(0),
            HostPhys(1 << 52),
            4096,
            MapError::HostAddressOutOfRange {
                hpa: HostPhys(1 << 52),
                size: 4096,
            },
        ),
        (
            GuestPhys(u64::MAX - 4095),
            HostPhys(0),
            4096,
            MapError::GuestAddressOutOfRange {
                gpa: GuestPhys(u64::MAX - 4095),
                size: 4096,
            },
        ),
        // Overlaps the 2 MiB page at its last 4 KiB, after a free 4 KiB before it.
        (
            GuestPhys(MIB2 - 4096),
            HostPhys(0),
            8192,
            MapError::AlreadyMapped(GuestPhys(MIB2)),
        ),
        (
            GuestPhys(MIB2 + 4096),
            HostPhys(0),
            4096,
            MapError::AlreadyMapped(GuestPhys(MIB2 + 4096)),
        ),
    ];
    for (gpa, hpa, size, expected) in cases {
        assert_eq!(
            ept.map(&mut memory, &mut frames, gpa, hpa, size, RW, wb),
            Err(expected)
        );
        assert!(!expected.to_string().is_empty());
    }
    assert_eq!(
        ept.unmap(&mut memory, GuestPhys(MIB2), 4096),
        Err(MapError::PartialLargePage {
            page: GuestPhys(MIB2),
            size: PageSize::Size2M
        })
    );
    assert_eq!(memory.words, snapshot, "refused requests wrote nothing");
    assert_eq!(frames.live, live, "refused requests allocated nothing");
    assert_eq!(
        NestedPageTable::<Ept>::new(
            TableConfig {
                guest_address_bits: 52,
                largest_page: PageSize::Size4K
            },
            &mut frames
        ),
        Err(MapError::UnsupportedAddressWidth(52))
    );
}

#[test]
fn running_out_of_frames_changes_nothing() {
    let (mut npt, mut memory, mut frames) = setup::<Npt>(PageSize::Size1G);
    // 4 KiB pages in two different 1 GiB regions need PDPT + 2 PD + 2 PT = 5 tables.
    frames.limit = Some(1 + 4);
    let result = npt.map(
        &mut memory,
        &mut frames,
        GuestPhys(GIB - 4096),
        HostPhys(0x5000),
        8192,
        RW,
        MemoryType::WriteBack,
    );
    assert_eq!(result, Err(MapError::OutOfFrames { needed: 5 }));
    assert_eq!(frames.live.len(), 1, "reserved frames were returned");
    assert!(
        memory.words.is_empty(),
        "nothing written, spare-frame links cleaned up"
    );
    frames.limit = None;
    let report = npt
        .map(
            &mut memory,
            &mut frames,
            GuestPhys(GIB - 4096),
            HostPhys(0x5000),
            8192,
            RW,
            MemoryType::WriteBack,
        )
        .unwrap();
    assert_eq!((report.tables_created, report.pages_4k), (5, 2));
    assert_eq!(frames.live.len(), 6);
}

#[test]
fn unmap_detaches_empty_tables_and_frees_them_only_after_the_flush() {
    let (mut ept, mut memory, mut frames) = setup::<Ept>(PageSize::Size1G);
    ept.map(
        &mut memory,
        &mut frames,
        GuestPhys(0),
        HostPhys(0x4000_0000),
        3 * 4096,
        RW,
        MemoryType::WriteBack,
    )
    .unwrap();
    ept.map(
        &mut memory,
        &mut frames,
        GuestPhys(GIB),
        HostPhys(0),
        GIB,
        RWX,
        MemoryType::WriteBack,
    )
    .unwrap();
    assert_eq!(frames.live.len(), 4, "root, PDPT, PD, PT");
    // Unmapping part of the 4 KiB run keeps the tables.
    let partial = ept.unmap(&mut memory, GuestPhys(4096), 4096).unwrap();
    assert!(partial.flush_needed());
    assert_eq!(
        (partial.unmapped_bytes, partial.detached_tables()),
        (4096, 0)
    );
    assert_eq!(ept.finish_flush(&mut memory, &mut frames, partial), 0);
    assert!(ept.translate(&memory, GuestPhys(0)).is_some());
    assert!(ept.translate(&memory, GuestPhys(4096)).is_none());
    // Unmapping the rest of the first GiB detaches PT and PD, but frees nothing yet.
    let pending = ept.unmap(&mut memory, GuestPhys(0), GIB).unwrap();
    assert_eq!(
        (pending.unmapped_bytes, pending.detached_tables()),
        (2 * 4096, 2)
    );
    assert_eq!(frames.live.len(), 4, "detached tables wait for the flush");
    assert!(ept.translate(&memory, GuestPhys(0)).is_none());
    assert_eq!(ept.finish_flush(&mut memory, &mut frames, pending), 2);
    assert_eq!(frames.live.len(), 2);
    // The 1 GiB page is still there; an empty range unmaps nothing and needs no flush.
    assert!(ept.translate(&memory, GuestPhys(GIB + 77)).is_some());
    let nothing = ept.unmap(&mut memory, GuestPhys(4 * GIB), GIB).unwrap();
    assert!(!nothing.flush_needed());
    assert_eq!(ept.finish_flush(&mut memory, &mut frames, nothing), 0);
    // Unmap the 1 GiB page, flush, and every table but the root is gone; freed frames are zero.
    let last = ept.unmap(&mut memory, GuestPhys(0), 2 * GIB).unwrap();
    assert_eq!((last.unmapped_bytes, last.detached_tables()), (GIB, 1));
    ept.finish_flush(&mut memory, &mut frames, last);
    assert_eq!(frames.live.len(), 1);
    assert!(memory.words.is_empty());
    let root = ept.root();
    assert_eq!(ept.destroy(&mut memory, &mut frames), 1);
    assert!(frames.live.is_empty());
    assert!(memory.frame_is_zero(root));
}

#[test]
fn destroy_frees_every_table() {
    let (mut npt, mut memory, mut frames) = setup::<Npt>(PageSize::Size1G);
    npt.map(
        &mut memory,
        &mut frames,
        GuestPhys(0x7000),
        HostPhys(0x7000),
        5 * MIB2,
        RW,
        MemoryType::WriteBack,
    )
    .unwrap();
    let tables = frames.live.len() as u64;
    assert_eq!(npt.destroy(&mut memory, &mut frames), tables);
    assert!(frames.live.is_empty());
    assert!(memory.words.is_empty());
}

/// One random operation on a 4 GiB guest window, in 4 KiB units chosen to hit 2 MiB and
/// 1 GiB alignment often.
#[derive(Clone, Debug)]
enum Operation {
    Map {
        page: u64,
        pages: u64,
        host_page: u64,
        write: bool,
        execute: bool,
    },
    UnmapRegion {
        pick: usize,
    },
    UnmapEmpty {
        page: u64,
        pages: u64,
    },
}

fn operation() -> impl Strategy<Value = Operation> {
    let page = prop_oneof![
        0u64..(1 << 20),
        (0u64..2048).prop_map(|n| n * 512),
        (0u64..4).prop_map(|n| n << 18)
    ];
    let pages = prop_oneof![
        1u64..16,
        Just(512u64),
        Just(513),
        Just(1024),
        Just(1 << 18),
        (1u64..2048)
    ];
    let host_page = prop_oneof![
        (0u64..(1 << 20)),
        (0u64..1024).prop_map(|n| n * 512),
        Just(1u64 << 18)
    ];
    prop_oneof![
        3 => (page.clone(), pages.clone(), host_page, any::<bool>(), any::<bool>()).prop_map(
            |(page, pages, host_page, write, execute)| {
                // Keep 1 GiB requests to at most 512 entries: a 2 MiB-aligned host.
                let host_page = if pages >= 1 << 18 { host_page & !511 } else { host_page };
                Operation::Map { page, pages, host_page, write, execute }
            }
        ),
        2 => any::<usize>().prop_map(|pick| Operation::UnmapRegion { pick }),
        1 => (page, pages).prop_map(|(page, pages)| Operation::UnmapEmpty { page, pages }),
    ]
}

/// Mapped regions: start page -> (pages, host page, rights).
type Model = BTreeMap<u64, (u64, u64, Rights)>;

fn overlaps(model: &Model, page: u64, pages: u64) -> bool {
    model
        .iter()
        .any(|(&start, &(count, _, _))| start < page + pages && page < start + count)
}

fn check_model<F: EntryFormat>(
    tables: &NestedPageTable<F>,
    memory: &FakeMemory,
    model: &Model,
    probes: &[u64],
) {
    for (&start, &(count, host, rights)) in model {
        for page in [start, start + count / 2, start + count - 1] {
            let translation = tables
                .translate(memory, GuestPhys(page << 12 | 0x18))
                .expect("mapped page translates");
            assert_eq!(
                translation.hpa,
                HostPhys((host + page - start) << 12 | 0x18)
            );
            assert_eq!(translation.rights, rights);
        }
    }
    for &probe in probes {
        let expected = model
            .range(..=probe)
            .next_back()
            .filter(|(&start, &(count, _, _))| probe < start + count)
            .map(|(&start, &(_, host, _))| HostPhys((host + probe - start) << 12));
        assert_eq!(
            tables
                .translate(memory, GuestPhys(probe << 12))
                .map(|t| t.hpa),
            expected
        );
    }
}

fn run_model<F: EntryFormat>(operations: Vec<Operation>, probes: Vec<u64>) {
    let mut frames = FakeFrames::new();
    let mut memory = FakeMemory::default();
    let mut tables = NestedPageTable::<F>::new(
        TableConfig {
            guest_address_bits: 32,
            largest_page: PageSize::Size1G,
        },
        &mut frames,
    )
    .unwrap();
    let mut model = Model::new();
    let limit = 1u64 << 20; // pages in 4 GiB
    for operation in operations {
        match operation {
            Operation::Map {
                page,
                pages,
                host_page,
                write,
                execute,
            } => {
                let mut rights = Rights::READ;
                rights.set(Rights::WRITE, write);
                rights.set(Rights::EXECUTE, execute);
                let before = memory.words.clone();
                let result = tables.map(
                    &mut memory,
                    &mut frames,
                    GuestPhys(page << 12),
                    HostPhys(host_page << 12),
                    pages << 12,
                    rights,
                    MemoryType::WriteBack,
                );
                if page + pages > limit {
                    assert!(matches!(
                        result,
                        Err(MapError::GuestAddressOutOfRange { .. })
                    ));
                    assert_eq!(memory.words, before);
                } else if overlaps(&model, page, pages) {
                    assert!(
                        matches!(result, Err(MapError::AlreadyMapped(_))),
                        "{result:?}"
                    );
                    assert_eq!(memory.words, before);
                } else {
                    let report = result.unwrap();
                    let mapped =
                        report.pages_4k + 512 * report.pages_2m + (1 << 18) * report.pages_1g;
                    assert_eq!(mapped, pages);
                    model.insert(page, (pages, host_page, rights));
                }
            }
            Operation::UnmapRegion { pick } => {
                if model.is_empty() {
                    continue;
                }
                let start = *model.keys().nth(pick % model.len()).unwrap();
                let (count, _, _) = model.remove(&start).unwrap();
                let pending = tables
                    .unmap(&mut memory, GuestPhys(start << 12), count << 12)
                    .unwrap();
                assert_eq!(pending.unmapped_bytes, count << 12);
                tables.finish_flush(&mut memory, &mut frames, pending);
            }
            Operation::UnmapEmpty { page, pages } => {
                if page + pages > limit || overlaps(&model, page, pages) {
                    continue;
                }
                let pending = tables
                    .unmap(&mut memory, GuestPhys(page << 12), pages << 12)
                    .unwrap();
                assert_eq!(pending.unmapped_bytes, 0);
                tables.finish_flush(&mut memory, &mut frames, pending);
            }
        }
        check_model(&tables, &memory, &model, &probes);
    }
    // Unmap everything: only the root is left, and it is all zero.
    let pending = tables
        .unmap(&mut memory, GuestPhys(0), limit << 12)
        .unwrap();
    tables.finish_flush(&mut memory, &mut frames, pending);
    assert_eq!(frames.live.len(), 1, "no table leaked");
    assert!(memory.words.is_empty(), "no entry left behind");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ept_random_map_unmap_agrees_with_model(
        operations in proptest::collection::vec(operation(), 1..24),
        probes in proptest::collection::vec(0u64..(1 << 20), 16),
    ) {
        run_model::<Ept>(operations, probes);
    }

    #[test]
    fn npt_random_map_unmap_agrees_with_model(
        operations in proptest::collection::vec(operation(), 1..24),
        probes in proptest::collection::vec(0u64..(1 << 20), 16),
    ) {
        run_model::<Npt>(operations, probes);
    }

    /// The bound the kernel charges before `vm_map` is never below what a map creates, on
    /// empty tables or after earlier mappings, with any page-size limit.
    #[test]
    fn tables_created_never_exceed_the_charged_bound(
        earlier in proptest::collection::vec((0u64..(1 << 19), 1u64..600), 0..4),
        gpa_page in 0u64..(1 << 19),
        pages in 1u64..(1 << 19),
        largest in prop_oneof![Just(PageSize::Size4K), Just(PageSize::Size2M), Just(PageSize::Size1G)],
    ) {
        let (mut ept, mut memory, mut frames) = setup::<Ept>(largest);
        for (page, count) in earlier {
            let _ = ept.map(&mut memory, &mut frames, GuestPhys(page << 12),
                HostPhys(page << 12), count << 12, RW, MemoryType::WriteBack);
        }
        let (gpa, size) = (gpa_page << 12, pages << 12);
        if let Ok(report) = ept.map(&mut memory, &mut frames, GuestPhys(gpa), HostPhys(gpa),
            size, RW, MemoryType::WriteBack) {
            prop_assert!(report.tables_created <= tables_bound(GuestPhys(gpa), size),
                "{} tables for {size:#x} at {gpa:#x}", report.tables_created);
        }
    }
}
