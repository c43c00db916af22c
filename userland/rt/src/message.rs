//! An IPC message as a value: label, untyped words and capability transfer items, with
//! checked builders and a checked reader of the UTCB layout (`sluice_abi::ipc`).

use core::fmt;

use sluice_abi::ipc::{
    MessageTag, ReceiveWindow, TransferItem, Utcb, MAX_TRANSFER_ITEMS, MAX_UNTYPED_WORDS,
};
use sluice_abi::syscall::Selector;

/// Why a message could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// More than [`MAX_UNTYPED_WORDS`] words.
    TooManyWords,
    /// More than [`MAX_TRANSFER_ITEMS`] transfer items.
    TooManyItems,
}

impl fmt::Display for MessageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyWords => write!(
                formatter,
                "message has more than {MAX_UNTYPED_WORDS} untyped words"
            ),
            Self::TooManyItems => write!(
                formatter,
                "message has more than {MAX_TRANSFER_ITEMS} transfer items"
            ),
        }
    }
}

/// One message: what a sender puts in its UTCB, or what a receiver finds there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    label: u32,
    word_count: usize,
    words: [u64; MAX_UNTYPED_WORDS],
    item_count: usize,
    items: [TransferItem; MAX_TRANSFER_ITEMS],
}

impl Message {
    /// A message with `label`, no words and no items.
    pub const fn new(label: u32) -> Message {
        Message {
            label,
            word_count: 0,
            words: [0; MAX_UNTYPED_WORDS],
            item_count: 0,
            items: [TransferItem {
                selector: 0,
                destination: 0,
                rights: 0,
            }; MAX_TRANSFER_ITEMS],
        }
    }

    /// A message with `label` and `words`.
    pub fn with_words(label: u32, words: &[u64]) -> Result<Message, MessageError> {
        let mut message = Message::new(label);
        for word in words {
            message.push_word(*word)?;
        }
        Ok(message)
    }

    /// Appends one untyped word.
    pub fn push_word(&mut self, word: u64) -> Result<(), MessageError> {
        let slot = self
            .words
            .get_mut(self.word_count)
            .ok_or(MessageError::TooManyWords)?;
        *slot = word;
        self.word_count += 1;
        Ok(())
    }

    /// Appends a transfer item: delegate `selector` (sender's table) to `destination`
    /// (receiver's table, inside its receive window) with `rights`.
    pub fn push_capability(
        &mut self,
        selector: Selector,
        destination: Selector,
        rights: u64,
    ) -> Result<(), MessageError> {
        let slot = self
            .items
            .get_mut(self.item_count)
            .ok_or(MessageError::TooManyItems)?;
        *slot = TransferItem {
            selector: selector.0,
            destination: destination.0,
            rights,
        };
        self.item_count += 1;
        Ok(())
    }

    /// The label.
    pub const fn label(&self) -> u32 {
        self.label
    }

    /// The untyped words.
    pub fn words(&self) -> &[u64] {
        self.words.get(..self.word_count).unwrap_or(&[])
    }

    /// Word `index`, if the message has it.
    pub fn word(&self, index: usize) -> Option<u64> {
        self.words().get(index).copied()
    }

    /// The transfer items (on receipt: where each capability landed).
    pub fn items(&self) -> &[TransferItem] {
        self.items.get(..self.item_count).unwrap_or(&[])
    }

    /// The tag this message puts in a UTCB.
    pub fn tag(&self) -> MessageTag {
        MessageTag {
            label: self.label,
            // Both counts are bounded by the array sizes (64 and 4).
            untyped_words: self.word_count as u16,
            transfer_items: self.item_count as u16,
        }
    }

    /// Writes the message into `utcb` (tag, words, items); the receive window is left alone.
    pub fn write_to(&self, utcb: &mut Utcb) {
        utcb.tag = self.tag();
        for (slot, word) in utcb.untyped.iter_mut().zip(self.words()) {
            *slot = *word;
        }
        for (slot, item) in utcb.transfer.iter_mut().zip(self.items()) {
            *slot = *item;
        }
    }

    /// Reads the message a UTCB holds; a tag whose counts exceed the buffer is refused.
    pub fn read_from(utcb: &Utcb) -> Result<Message, MessageError> {
        let words = utcb.message_words().ok_or(MessageError::TooManyWords)?;
        let items = utcb.transfer_items().ok_or(MessageError::TooManyItems)?;
        let mut message = Message::new(utcb.tag.label);
        for word in words {
            message.push_word(*word)?;
        }
        for item in items {
            let slot = message
                .items
                .get_mut(message.item_count)
                .ok_or(MessageError::TooManyItems)?;
            *slot = *item;
            message.item_count += 1;
        }
        Ok(message)
    }
}

/// A receive window accepting `count` capabilities from `base` on.
pub const fn receive_window(base: Selector, count: u32) -> ReceiveWindow {
    ReceiveWindow {
        base: base.0,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builders_respect_capacity() {
        let mut message = Message::new(7);
        for word in 0..MAX_UNTYPED_WORDS as u64 {
            message.push_word(word).unwrap();
        }
        assert_eq!(message.push_word(99), Err(MessageError::TooManyWords));
        assert_eq!(message.words().len(), MAX_UNTYPED_WORDS);
        for index in 0..MAX_TRANSFER_ITEMS as u32 {
            message
                .push_capability(Selector(index), Selector(index + 10), 1)
                .unwrap();
        }
        assert_eq!(
            message.push_capability(Selector(9), Selector(9), 1),
            Err(MessageError::TooManyItems)
        );
        assert_eq!(
            Message::with_words(1, &[0; MAX_UNTYPED_WORDS + 1]),
            Err(MessageError::TooManyWords)
        );
    }

    #[test]
    fn write_then_read_round_trips_and_keeps_the_receive_window() {
        let mut message = Message::with_words(42, &[1, 2, 3]).unwrap();
        message
            .push_capability(Selector(5), Selector(20), 3)
            .unwrap();
        let mut utcb = Utcb::empty();
        utcb.receive_window = receive_window(Selector(20), 4);
        message.write_to(&mut utcb);
        assert_eq!(utcb.tag.label, 42);
        assert_eq!(utcb.tag.untyped_words, 3);
        assert_eq!(utcb.tag.transfer_items, 1);
        assert_eq!(utcb.receive_window.count, 4);
        let read = Message::read_from(&utcb).unwrap();
        assert_eq!(read, message);
        assert_eq!(read.word(2), Some(3));
        assert_eq!(read.word(3), None);
    }

    #[test]
    fn lying_tags_are_refused() {
        let mut utcb = Utcb::empty();
        utcb.tag.untyped_words = MAX_UNTYPED_WORDS as u16 + 1;
        assert_eq!(Message::read_from(&utcb), Err(MessageError::TooManyWords));
        utcb.tag.untyped_words = 0;
        utcb.tag.transfer_items = MAX_TRANSFER_ITEMS as u16 + 1;
        assert_eq!(Message::read_from(&utcb), Err(MessageError::TooManyItems));
    }

    proptest! {
        #[test]
        fn reading_any_tag_never_panics_and_accepted_reads_match_the_tag(
            label in any::<u32>(), words in any::<u16>(), items in any::<u16>(), fill in any::<u64>()
        ) {
            let mut utcb = Utcb::empty();
            utcb.untyped = [fill; MAX_UNTYPED_WORDS];
            utcb.tag = MessageTag { label, untyped_words: words, transfer_items: items };
            if let Ok(message) = Message::read_from(&utcb) {
                prop_assert_eq!(message.label(), label);
                prop_assert_eq!(message.words().len(), usize::from(words));
                prop_assert_eq!(message.items().len(), usize::from(items));
                prop_assert!(message.words().iter().all(|w| *w == fill));
            } else {
                prop_assert!(usize::from(words) > MAX_UNTYPED_WORDS || usize::from(items) > MAX_TRANSFER_ITEMS);
            }
        }
    }
}
