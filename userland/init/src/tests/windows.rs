//! The pci-server's device windows on a machine with many holes (a two-socket server: ECAM and
//! eight DRHD pages in the PCI hole, a 64-bit window above 4 GiB): every piece is handed out
//! up to the ten the argument words carry, each one beyond is logged with its range, and the
//! packed argument words decode back to the windows.

use sluice_abi::boot::{BootCapabilityKind, BootInfo, BOOT_INFO_MAGIC};
use sluice_abi::syscall::Selector;
use zerocopy::FromZeros;

use crate::programs::{
    device_windows, device_windows_reporting, pack_windows, pci_server, GrantKind, WindowRefusal,
    MAX_DEVICE_WINDOWS, MAX_GRANTS, MAX_PROGRAM_ARGUMENTS, PCI_FIRST_WINDOW,
};

const ECAM: u64 = 0x8000_0000;
/// One DRHD per root complex, as on a two-socket Skylake server.
const DRHD: [u64; 8] = [
    0x9d7f_c000,
    0xaaff_c000,
    0xb87f_c000,
    0xc5ff_c000,
    0xd37f_c000,
    0xe0ff_c000,
    0xee7f_c000,
    0xfbff_c000,
];
const HIGH: (u64, u64) = (0x3800_0000_0000, 0x10_0000_0000);

fn boot(ranges: &[(u64, u64)]) -> Box<BootInfo> {
    let mut boot = Box::new(BootInfo::new_zeroed());
    boot.magic = BOOT_INFO_MAGIC;
    boot.ecam_base = ECAM;
    boot.ecam_end_bus = 0xff;
    boot.dmar_unit = DRHD[0];
    for (index, (base, size)) in ranges.iter().enumerate() {
        let entry = &mut boot.capabilities[index];
        entry.selector = 32 + index as u32;
        entry.kind = BootCapabilityKind::DeviceMmio as u32;
        entry.base = *base;
        entry.size = *size;
        entry.length = *size;
        boot.capability_count += 1;
    }
    boot
}

/// A piece not handed out: start, end (exclusive), why.
type LeftOut = (u64, u64, WindowRefusal);

fn left_out(boot: &BootInfo, drhd: &[u64]) -> (Vec<(u64, u64)>, Vec<LeftOut>) {
    let mut refused = Vec::new();
    let windows = device_windows_reporting(boot, drhd, |start, end, reason| {
        refused.push((start, end, reason))
    });
    (windows.to_vec(), refused)
}

/// Reads the packed window words as the pci-server does (its `arguments` module).
fn unpack(words: &[u64], count: usize) -> Vec<(u64, u64)> {
    let field = |index: usize| {
        let bit = index * 40;
        let word = |n: usize| words.get(n).copied().unwrap_or(0);
        let mut value = word(bit / 64) >> (bit % 64);
        if bit % 64 + 40 > 64 {
            value |= word(bit / 64 + 1) << (64 - bit % 64);
        }
        value & ((1 << 40) - 1)
    };
    (0..count)
        .map(|i| (field(2 * i) * 4096, field(2 * i + 1) * 4096))
        .collect()
}

#[test]
fn a_server_with_eight_drhd_pages_gets_every_piece_as_a_window() {
    let boot = boot(&[(ECAM, 0x8000_0000), HIGH]);
    let (windows, refused) = left_out(&boot, &DRHD);
    assert!(refused.is_empty(), "{refused:x?}");
    assert_eq!(
        windows.len(),
        10,
        "nine pieces of the PCI hole and the high window"
    );
    assert_eq!(windows[0], (0x9000_0000, 0x9d7f_c000 - 0x9000_0000));
    assert_eq!(windows[8], (0xfbff_d000, 0x1_0000_0000 - 0xfbff_d000));
    assert_eq!(windows[9], HIGH);
    for (base, size) in &windows {
        for page in DRHD {
            assert!(
                page + 4096 <= *base || page >= base + size,
                "{page:#x} handed out"
            );
        }
        assert!(*base >= ECAM + (256 << 20) || base + size <= ECAM);
    }
    let covered: u64 = windows.iter().map(|(_, size)| size).sum();
    assert_eq!(covered, 0x8000_0000 - (256 << 20) - 8 * 4096 + HIGH.1);
}

#[test]
fn pieces_beyond_what_the_pci_server_can_take_are_logged_with_their_range() {
    let extra = (0x4000_0000_0000, 0x1_0000);
    let boot = boot(&[(ECAM, 0x8000_0000), HIGH, extra]);
    let (windows, refused) = left_out(&boot, &DRHD);
    assert_eq!(windows.len(), MAX_DEVICE_WINDOWS);
    assert_eq!(
        refused,
        [(extra.0, extra.0 + extra.1, WindowRefusal::TooManyWindows)]
    );
    sluice_rt::host::reset();
    let _ = device_windows(&boot, &DRHD);
    let log = sluice_rt::host::take_output();
    assert!(
        log.contains(
            "init: device MMIO 0x400000000000-0x40000000ffff not handed to the pci-server: it already has 10 device windows"
        ),
        "{log}"
    );
}

#[test]
fn unaligned_and_unreachable_ranges_are_refused_by_name() {
    let unaligned = (0xc000_0800, 0x1000);
    let beyond = ((1 << 52) - 0x1000, 0x2000);
    let boot = boot(&[unaligned, beyond, (0xd000_0000, 0x1000)]);
    let (windows, refused) = left_out(&boot, &[]);
    assert_eq!(windows, [(0xd000_0000, 0x1000)]);
    assert_eq!(
        refused,
        [
            (
                unaligned.0,
                unaligned.0 + unaligned.1,
                WindowRefusal::NotPageAligned
            ),
            (
                beyond.0,
                beyond.0 + beyond.1,
                WindowRefusal::BeyondAddressWidth
            ),
        ]
    );
}

#[test]
fn with_more_holes_than_tracked_nothing_is_handed_out() {
    let boot = boot(&[(ECAM, 0x8000_0000)]);
    let mut drhd = DRHD.to_vec();
    drhd.push(0xfed9_0000);
    let (windows, refused) = left_out(&boot, &drhd);
    assert!(windows.is_empty());
    assert_eq!(
        refused,
        [(ECAM, 0x1_0000_0000, WindowRefusal::TooManyHoles)]
    );
}

#[test]
fn the_pci_servers_arguments_carry_every_window_packed() {
    let boot = boot(&[(ECAM, 0x8000_0000), HIGH]);
    let windows = device_windows(&boot, &DRHD);
    let spec = pci_server(&boot, Selector(9), &DRHD);
    assert!(spec.arguments.len() <= MAX_PROGRAM_ARGUMENTS);
    assert!(spec.grants.len() <= MAX_GRANTS);
    assert_eq!(spec.arguments[0], ECAM);
    let header = spec.arguments[1];
    assert_eq!(header & 0xffff, 0xff00, "buses 0..=ff");
    assert_eq!((header >> 16) & 0xff, 10, "window count");
    assert_eq!(header >> 32, crate::programs::number::FIRST_OWNER);
    assert_eq!(unpack(&spec.arguments[2..], 10), windows.to_vec());
    let window_grants: Vec<(u32, u64, u64)> = spec
        .grants
        .iter()
        .filter_map(|grant| match grant.kind {
            GrantKind::Device { address, size, .. } if grant.destination >= PCI_FIRST_WINDOW => {
                Some((grant.destination, address, size))
            }
            _ => None,
        })
        .collect();
    let expected: Vec<(u32, u64, u64)> = (PCI_FIRST_WINDOW..)
        .zip(windows.iter())
        .map(|(selector, (base, size))| (selector, *base, *size))
        .collect();
    assert_eq!(window_grants, expected);
    assert_eq!(window_grants.last().map(|g| g.0), Some(15), "6..=15");
    let lines: Vec<u32> = spec
        .grants
        .iter()
        .filter(|grant| matches!(grant.kind, GrantKind::InterruptLines { .. }))
        .map(|grant| grant.destination)
        .collect();
    assert_eq!(lines, [16], "the interrupt lines follow the last window");
    let mut destinations: Vec<u32> = spec.grants.iter().map(|g| g.destination).collect();
    destinations.sort_unstable();
    destinations.dedup();
    assert_eq!(
        destinations.len(),
        spec.grants.len(),
        "no selector given twice"
    );
}

#[test]
fn packing_round_trips_for_any_pages_below_2_pow_52() {
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state & ((1 << 40) - 1)
    };
    for count in 0..=MAX_DEVICE_WINDOWS {
        for _ in 0..50 {
            let windows: Vec<(u64, u64)> = (0..count)
                .map(|_| (random() * 4096, random() * 4096))
                .collect();
            assert_eq!(unpack(&pack_windows(&windows), count), windows);
        }
    }
}
