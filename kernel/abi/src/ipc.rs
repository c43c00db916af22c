//! IPC message layout: the per-thread message buffer (UTCB) that `call` and `reply_and_wait`
//! read and write, with a message tag, untyped words and capability transfer items.
//!
//! Each thread names one page-aligned user page as its UTCB at `create_thread`. A message is:
//! the [`MessageTag`] (label, number of untyped words, number of transfer items), up to
//! [`MAX_UNTYPED_WORDS`] untyped words copied verbatim, and up to [`MAX_TRANSFER_ITEMS`]
//! [`TransferItem`]s, each delegating one capability from the sender's table into the
//! receiver's with rights narrowed to the item's mask. The receiver controls where capabilities
//! may land: its [`ReceiveWindow`] names the selectors a sender may fill; a destination outside
//! the window or already occupied fails the whole transfer (nothing is delegated).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most untyped words one message carries.
pub const MAX_UNTYPED_WORDS: usize = 64;

/// Most capability transfer items one message carries.
pub const MAX_TRANSFER_ITEMS: usize = 4;

/// The first word of a message.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MessageTag {
    /// Protocol-defined operation or reply code; the kernel does not interpret it.
    pub label: u32,
    /// Number of valid entries in [`Utcb::untyped`] (at most [`MAX_UNTYPED_WORDS`]).
    pub untyped_words: u16,
    /// Number of valid entries in [`Utcb::transfer`] (at most [`MAX_TRANSFER_ITEMS`]).
    pub transfer_items: u16,
}

impl MessageTag {
    /// Pack into one register value: label in bits 0..32, untyped words 32..48, items 48..64.
    pub const fn to_raw(self) -> u64 {
        (self.label as u64)
            | ((self.untyped_words as u64) << 32)
            | ((self.transfer_items as u64) << 48)
    }

    /// Unpack a register value (no validation; see [`MessageTag::is_within_limits`]).
    pub const fn from_raw(raw: u64) -> MessageTag {
        MessageTag {
            label: raw as u32,
            untyped_words: (raw >> 32) as u16,
            transfer_items: (raw >> 48) as u16,
        }
    }

    /// True when both counts are within the buffer's capacity.
    pub const fn is_within_limits(self) -> bool {
        (self.untyped_words as usize) <= MAX_UNTYPED_WORDS
            && (self.transfer_items as usize) <= MAX_TRANSFER_ITEMS
    }
}

/// One capability to delegate with a message.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TransferItem {
    /// Selector of the capability in the sender's table.
    pub selector: u32,
    /// Selector in the receiver's table where the copy lands (inside its receive window).
    pub destination: u32,
    /// Rights of the copy: must be a subset of the sender's rights on that capability.
    pub rights: u64,
}

/// The selectors a receiving thread lets senders fill: `base .. base + count`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ReceiveWindow {
    /// First selector of the window.
    pub base: u32,
    /// Number of selectors; zero accepts no capabilities.
    pub count: u32,
}

impl ReceiveWindow {
    /// True when `selector` lies inside the window (no overflow possible).
    pub const fn contains(self, selector: u32) -> bool {
        selector >= self.base && (selector - self.base) < self.count
    }
}

/// The per-thread message buffer, at the start of the thread's UTCB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Utcb {
    /// What the message holds.
    pub tag: MessageTag,
    /// Where this thread accepts capabilities when it receives.
    pub receive_window: ReceiveWindow,
    /// Capabilities to delegate (the first `tag.transfer_items` entries are valid). On receipt
    /// the kernel writes the delivered items here, `destination` naming where each landed.
    pub transfer: [TransferItem; MAX_TRANSFER_ITEMS],
    /// Untyped payload (the first `tag.untyped_words` entries are valid).
    pub untyped: [u64; MAX_UNTYPED_WORDS],
}

/// Size of [`Utcb`] in bytes: it fits in one page with room to spare.
pub const UTCB_SIZE: usize = core::mem::size_of::<Utcb>();

const _: () = assert!(UTCB_SIZE == 8 + 8 + 16 * MAX_TRANSFER_ITEMS + 8 * MAX_UNTYPED_WORDS);
const _: () = assert!(UTCB_SIZE <= 4096);

impl Utcb {
    /// An empty buffer: no words, no items, no receive window.
    pub const fn empty() -> Utcb {
        Utcb {
            tag: MessageTag {
                label: 0,
                untyped_words: 0,
                transfer_items: 0,
            },
            receive_window: ReceiveWindow { base: 0, count: 0 },
            transfer: [TransferItem {
                selector: 0,
                destination: 0,
                rights: 0,
            }; MAX_TRANSFER_ITEMS],
            untyped: [0; MAX_UNTYPED_WORDS],
        }
    }

    /// The valid untyped words, or `None` when the tag claims more than the buffer holds.
    pub fn message_words(&self) -> Option<&[u64]> {
        self.untyped.get(..usize::from(self.tag.untyped_words))
    }

    /// The valid transfer items, or `None` when the tag claims more than the buffer holds.
    pub fn transfer_items(&self) -> Option<&[TransferItem]> {
        self.transfer.get(..usize::from(self.tag.transfer_items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_packs_and_unpacks() {
        let tag = MessageTag {
            label: 0xdead_beef,
            untyped_words: 7,
            transfer_items: 2,
        };
        assert_eq!(MessageTag::from_raw(tag.to_raw()), tag);
        assert!(tag.is_within_limits());
        let too_many = MessageTag {
            untyped_words: 65,
            ..tag
        };
        assert!(!too_many.is_within_limits());
    }

    #[test]
    fn utcb_round_trips_through_bytes_and_rejects_lying_tags() {
        let mut utcb = Utcb::empty();
        utcb.tag.untyped_words = 3;
        utcb.untyped[2] = 42;
        let bytes = utcb.as_bytes().to_vec();
        let read = Utcb::read_from_bytes(&bytes).expect("exact size");
        assert_eq!(read.message_words(), Some(&[0u64, 0, 42][..]));
        let mut lying = read;
        lying.tag.transfer_items = 5;
        assert_eq!(lying.transfer_items(), None);
        assert!(Utcb::read_from_bytes(&bytes[1..]).is_err());
    }

    #[test]
    fn receive_window_bounds() {
        let window = ReceiveWindow { base: 10, count: 2 };
        assert!(!window.contains(9));
        assert!(window.contains(10));
        assert!(window.contains(11));
        assert!(!window.contains(12));
        let top = ReceiveWindow {
            base: u32::MAX,
            count: u32::MAX,
        };
        assert!(top.contains(u32::MAX));
        assert!(!top.contains(0));
    }
}
