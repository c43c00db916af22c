//! The argument words init starts the pci-server with (`init::programs::pci_server`), decoded:
//!
//! | word | what |
//! |---|---|
//! | 0 | the ECAM base (bus 0) |
//! | 1 | start bus (bits 7:0), end bus (15:8), number of device windows (23:16), first owner number (63:32) |
//! | 2.. | the device windows, packed |
//!
//! Window `i` is two fields of [`FIELD_BITS`]: field `2i` its first page frame number, field
//! `2i + 1` its page count; field `k` is bits `40k ..= 40k + 39` of words 2, 3, ... read as one
//! little-endian bit string. Forty bits of page number reach 2^52, the largest physical address
//! width (Intel SDM vol. 3A 4.1.4), so ten windows fit the thirteen words left of the fifteen
//! a program gets (`sluice_rt::start::MAX_ARGUMENTS`). The windows' capabilities are at
//! selectors 6, 7, ... in the same order.

use crate::bars::MAX_WINDOWS;

/// Bits of one packed window field.
pub const FIELD_BITS: usize = 40;
/// The first word of the packed windows.
pub const FIRST_WINDOW_WORD: usize = 2;
const PAGE: u64 = 4096;

/// What init told the pci-server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciArguments {
    /// The ECAM base address (bus 0).
    pub ecam_base: u64,
    /// First bus of the ECAM window.
    pub start_bus: u8,
    /// Last bus of the ECAM window.
    pub end_bus: u8,
    /// The first device owner's number.
    pub first_owner: u32,
    /// (base, size) of each device window, in selector order.
    pub windows: heapless::Vec<(u64, u64), MAX_WINDOWS>,
    /// Windows init announced beyond [`MAX_WINDOWS`] (init never sends more; a mismatch of
    /// the two programs, logged by the caller).
    pub windows_ignored: u8,
}

/// Field `index` of the packed words `word(FIRST_WINDOW_WORD ..)`.
fn field(word: &impl Fn(usize) -> u64, index: usize) -> u64 {
    let bit = index * FIELD_BITS;
    let (offset, shift) = (bit / 64, bit % 64);
    let mut value = word(FIRST_WINDOW_WORD + offset) >> shift;
    if shift + FIELD_BITS > 64 {
        value |= word(FIRST_WINDOW_WORD + offset + 1) << (64 - shift);
    }
    value & ((1 << FIELD_BITS) - 1)
}

/// Decodes the words `word(0)`, `word(1)`, ... (a missing word reads 0).
pub fn decode(word: impl Fn(usize) -> u64) -> PciArguments {
    let header = word(1);
    let announced = ((header >> 16) & 0xff) as usize;
    let count = announced.min(MAX_WINDOWS);
    let mut windows = heapless::Vec::new();
    for index in 0..count {
        let first_page = field(&word, 2 * index);
        let pages = field(&word, 2 * index + 1);
        // Cannot fail: `count` is at most the capacity.
        let _ = windows.push((first_page * PAGE, pages * PAGE));
    }
    PciArguments {
        ecam_base: word(0),
        start_bus: (header & 0xff) as u8,
        end_bus: ((header >> 8) & 0xff) as u8,
        first_owner: (header >> 32) as u32,
        windows,
        windows_ignored: (announced - count) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[u64]) -> impl Fn(usize) -> u64 + '_ {
        |index| list.get(index).copied().unwrap_or(0)
    }

    #[test]
    fn a_hand_packed_header_and_two_windows_decode() {
        // Windows 0xa0000000 + 256 MiB (page 0xa0000, 0x10000 pages) and 0xfed91000 + 4 KiB
        // (page 0xfed91, 1 page): fields 0xa0000, 0x10000, 0xfed91, 0x1 at bits 0, 40, 80, 120.
        let packed = [
            0xa0000 | (0x10000 << 40),
            // Field 1's bits above the 24 in word 0 are zero.
            (0xfed91 << 16) | (1 << 56),
            0,
        ];
        let list = [
            0xb000_0000,
            (0xff << 8) | (2 << 16) | (64 << 32),
            packed[0],
            packed[1],
            packed[2],
        ];
        let arguments = decode(words(&list));
        assert_eq!(arguments.ecam_base, 0xb000_0000);
        assert_eq!((arguments.start_bus, arguments.end_bus), (0, 0xff));
        assert_eq!(arguments.first_owner, 64);
        assert_eq!(
            arguments.windows.as_slice(),
            &[(0xa000_0000, 0x1000_0000), (0xfed9_1000, 0x1000)]
        );
        assert_eq!(arguments.windows_ignored, 0);
    }

    #[test]
    fn more_windows_than_the_server_keeps_are_counted_not_read() {
        let list = [0, 12 << 16];
        let arguments = decode(words(&list));
        assert_eq!(arguments.windows.len(), MAX_WINDOWS);
        assert_eq!(arguments.windows_ignored, 2);
    }

    /// Packs `windows` as init does (written out again here: the two programs share no crate).
    fn pack(windows: &[(u64, u64)]) -> Vec<u64> {
        let mut list = vec![0u64; 15];
        list[1] = (windows.len() as u64) << 16;
        let fields = windows.iter().flat_map(|(page, count)| [*page, *count]);
        for (index, value) in fields.enumerate() {
            let bit = index * FIELD_BITS;
            list[2 + bit / 64] |= value << (bit % 64);
            if bit % 64 + FIELD_BITS > 64 {
                list[2 + bit / 64 + 1] |= value >> (64 - bit % 64);
            }
        }
        list
    }

    /// A fixed-seed xorshift generator: many varied cases, the same on every run.
    fn random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn packed_windows_round_trip_for_pages_up_to_2_pow_52() {
        let mut state = 0x5eed_1234_abcd_0001u64;
        let edges = [0, 1, (1 << 40) - 1, 1 << 39, 0xfed91];
        for case in 0..2000 {
            let count = case % (MAX_WINDOWS + 1);
            let windows: Vec<(u64, u64)> = (0..count)
                .map(|index| {
                    let mut field = |n: usize| {
                        if (case + index + n).is_multiple_of(7) {
                            edges[(case + n) % edges.len()]
                        } else {
                            random(&mut state) & ((1 << 40) - 1)
                        }
                    };
                    (field(0), field(1))
                })
                .collect();
            let decoded = decode(words(&pack(&windows)));
            let expected: Vec<(u64, u64)> = windows
                .iter()
                .map(|(page, pages)| (page * 4096, pages * 4096))
                .collect();
            assert_eq!(
                decoded.windows.as_slice(),
                expected.as_slice(),
                "{windows:x?}"
            );
        }
    }

    #[test]
    fn any_words_decode_without_panicking() {
        let mut state = 0x0dd_ba11_u64;
        for length in 0..40 {
            let list: Vec<u64> = (0..length % 20).map(|_| random(&mut state)).collect();
            let decoded = decode(words(&list));
            assert!(decoded.windows.len() <= MAX_WINDOWS);
            let windows_announced = (list.get(1).copied().unwrap_or(0) >> 16) & 0xff;
            assert_eq!(
                decoded.windows.len() + usize::from(decoded.windows_ignored),
                windows_announced as usize
            );
        }
    }
}
