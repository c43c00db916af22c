//! Builders for ACPI DMAR tables (VT-d spec chapter 8) in tests: device scopes, DRHDs, RMRRs
//! and a table with its length and checksum filled in.

use alloc::vec::Vec;

/// A device scope entry (VT-d spec 8.3.1) of `kind` with a path of (device, function).
pub fn scope(kind: u8, enumeration_id: u8, start_bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut bytes = alloc::vec![
        kind,
        (6 + 2 * path.len()) as u8,
        0,
        0,
        enumeration_id,
        start_bus
    ];
    for (device, function) in path {
        bytes.extend([*device, *function]);
    }
    bytes
}

/// A remapping structure of `kind`: its fixed fields, then its scopes.
pub fn structure(kind: u16, fixed: &[u8], scopes: &[Vec<u8>]) -> Vec<u8> {
    let length = 4 + fixed.len() + scopes.iter().map(Vec::len).sum::<usize>();
    let mut bytes = Vec::new();
    bytes.extend(kind.to_le_bytes());
    bytes.extend((length as u16).to_le_bytes());
    bytes.extend(fixed);
    for scope in scopes {
        bytes.extend(scope);
    }
    bytes
}

/// A DRHD (8.3) on segment 0 at register base `base`.
pub fn drhd(flags: u8, base: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = alloc::vec![flags, 0];
    fixed.extend(0u16.to_le_bytes());
    fixed.extend(base.to_le_bytes());
    structure(0, &fixed, scopes)
}

/// An RMRR (8.4) on segment 0 for `base ..= limit`.
pub fn rmrr(base: u64, limit: u64, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut fixed = alloc::vec![0, 0, 0, 0];
    fixed.extend(base.to_le_bytes());
    fixed.extend(limit.to_le_bytes());
    structure(1, &fixed, scopes)
}

/// A whole DMAR table with a correct length and checksum.
pub fn table(host_address_width: u8, flags: u8, structures: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(b"DMAR");
    bytes.extend(0u32.to_le_bytes());
    bytes.extend([1, 0]); // revision, checksum
    bytes.extend(b"BOCHS BXPC    ");
    bytes.extend([0; 12]);
    bytes.extend([host_address_width - 1, flags]);
    bytes.extend([0; 10]);
    for structure in structures {
        bytes.extend(structure);
    }
    let length = bytes.len() as u32;
    bytes[4..8].copy_from_slice(&length.to_le_bytes());
    let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
    bytes[9] = 0u8.wrapping_sub(sum);
    bytes
}
