//! Program start-up: what `_start` hands the program ([`Startup`]), and the argument block a
//! parent writes at the top of a child's stack.
//!
//! Convention: at the child's first instruction `[rsp]` = argument count `n` (at most
//! [`MAX_ARGUMENTS`]) and `[rsp + 8 ..]` = the `n` argument words; `rsp` is 16-byte aligned.
//! `_start` (see [`crate::entry!`]) passes the initial `rsp` to the program and re-aligns the
//! stack for Rust code. Init itself gets no block (its stack is empty).

use core::fmt;

/// Most argument words a block may carry.
pub const MAX_ARGUMENTS: usize = 15;

/// Bytes of the largest argument block (count plus words).
pub const MAX_BLOCK_BYTES: usize = 8 * (MAX_ARGUMENTS + 1);

/// What `_start` found at entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Startup {
    /// RDI at entry: the UTCB address (init: the boot-information page).
    pub register: u64,
    /// RSP at entry: where the parent's argument block starts.
    pub stack_pointer: u64,
}

/// Why an argument block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgumentsError {
    /// More than [`MAX_ARGUMENTS`] words.
    TooMany { count: u64 },
    /// The stack top is not 16-byte aligned or too low to hold the block.
    BadStackTop,
}

impl fmt::Display for ArgumentsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { count } => write!(
                formatter,
                "{count} argument words, at most {MAX_ARGUMENTS} fit"
            ),
            Self::BadStackTop => write!(formatter, "stack top unaligned or too low"),
        }
    }
}

/// The argument words a program received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arguments {
    count: usize,
    words: [u64; MAX_ARGUMENTS],
}

impl Arguments {
    /// No arguments.
    pub const fn none() -> Arguments {
        Arguments {
            count: 0,
            words: [0; MAX_ARGUMENTS],
        }
    }

    /// Decodes a block given as words (`block[0]` = count); words past the count are ignored.
    pub fn from_block(block: &[u64]) -> Result<Arguments, ArgumentsError> {
        let count = block.first().copied().unwrap_or(0);
        let too_many = ArgumentsError::TooMany { count };
        let length = usize::try_from(count).map_err(|_| too_many)?;
        if length > MAX_ARGUMENTS {
            return Err(too_many);
        }
        let given = block.get(1..).unwrap_or(&[]);
        let mut arguments = Arguments::none();
        for (slot, word) in arguments.words.iter_mut().zip(given).take(length) {
            *slot = *word;
        }
        arguments.count = length.min(given.len());
        Ok(arguments)
    }

    /// The words.
    pub fn words(&self) -> &[u64] {
        self.words.get(..self.count).unwrap_or(&[])
    }

    /// Word `index`, if given.
    pub fn get(&self, index: usize) -> Option<u64> {
        self.words().get(index).copied()
    }
}

impl Startup {
    /// Reads the argument block at the initial stack pointer.
    ///
    /// # Safety
    /// The program's parent must follow the convention of this module: the count word at
    /// `stack_pointer`, followed by that many words, all mapped readable. (A program started
    /// without a block, such as init, must not call this.)
    pub unsafe fn arguments(&self) -> Result<Arguments, ArgumentsError> {
        let base = self.stack_pointer as *const u64;
        // SAFETY: the caller guarantees the count word is mapped (see above).
        let count = unsafe { base.read_volatile() };
        let length = usize::try_from(count)
            .ok()
            .filter(|n| *n <= MAX_ARGUMENTS)
            .ok_or(ArgumentsError::TooMany { count })?;
        let mut block = [0u64; MAX_ARGUMENTS + 1];
        for (index, slot) in block.iter_mut().enumerate().take(length + 1) {
            // SAFETY: index <= count, and the caller guarantees `count` words follow the count.
            *slot = unsafe { base.add(index).read_volatile() };
        }
        Arguments::from_block(block.get(..=length).unwrap_or(&[]))
    }
}

/// An argument block a parent places at the top of a child's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgumentBlock {
    stack_pointer: u64,
    bytes: [u8; MAX_BLOCK_BYTES],
    length: usize,
}

impl ArgumentBlock {
    /// Lays out `arguments` below `stack_top` (16-byte aligned).
    pub fn new(stack_top: u64, arguments: &[u64]) -> Result<ArgumentBlock, ArgumentsError> {
        if arguments.len() > MAX_ARGUMENTS {
            return Err(ArgumentsError::TooMany {
                count: arguments.len() as u64,
            });
        }
        if !stack_top.is_multiple_of(16) {
            return Err(ArgumentsError::BadStackTop);
        }
        let length = 8 * (arguments.len() + 1);
        let stack_pointer = stack_top
            .checked_sub(length as u64)
            .ok_or(ArgumentsError::BadStackTop)?
            & !15;
        let mut bytes = [0u8; MAX_BLOCK_BYTES];
        let words = core::iter::once(arguments.len() as u64).chain(arguments.iter().copied());
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Ok(ArgumentBlock {
            stack_pointer,
            bytes,
            length,
        })
    }

    /// The child's initial RSP (where the block starts).
    pub fn stack_pointer(&self) -> u64 {
        self.stack_pointer
    }

    /// The bytes to write at [`ArgumentBlock::stack_pointer`].
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.length).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_block_is_aligned_and_reads_back() {
        let block = ArgumentBlock::new(0x7f00_0010_0000, &[3]).unwrap();
        assert_eq!(block.stack_pointer(), 0x7f00_0010_0000 - 16);
        assert_eq!(block.bytes().len(), 16);
        let words: Vec<u64> = block
            .bytes()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [1, 3]);
        assert_eq!(Arguments::from_block(&words).unwrap().words(), &[3]);
        let empty = ArgumentBlock::new(0x1000, &[]).unwrap();
        assert_eq!(empty.stack_pointer(), 0x1000 - 16);
        assert_eq!(empty.bytes(), &[0; 8]);
    }

    #[test]
    fn bad_blocks_are_refused() {
        assert_eq!(
            ArgumentBlock::new(0x1008, &[1]),
            Err(ArgumentsError::BadStackTop)
        );
        assert_eq!(
            ArgumentBlock::new(0, &[1]),
            Err(ArgumentsError::BadStackTop)
        );
        assert_eq!(
            ArgumentBlock::new(0x1000, &[0; MAX_ARGUMENTS + 1]),
            Err(ArgumentsError::TooMany { count: 16 })
        );
        assert_eq!(
            Arguments::from_block(&[u64::MAX]),
            Err(ArgumentsError::TooMany { count: u64::MAX })
        );
        assert_eq!(Arguments::from_block(&[]).unwrap().words(), &[] as &[u64]);
        assert_eq!(Arguments::from_block(&[3, 9]).unwrap().words(), &[9]);
    }

    #[test]
    fn reading_a_real_block_from_memory() {
        let block: [u64; 4] = [2, 10, 20, 0xdead];
        let startup = Startup {
            register: 0,
            stack_pointer: block.as_ptr() as u64,
        };
        // SAFETY: the block is a live array with its count word first.
        let arguments = unsafe { startup.arguments() }.unwrap();
        assert_eq!(arguments.words(), &[10, 20]);
        assert_eq!(arguments.get(2), None);
    }

    proptest! {
        #[test]
        fn blocks_round_trip(top in (0x1000u64..1 << 47).prop_map(|t| t & !15), words in proptest::collection::vec(any::<u64>(), 0..=MAX_ARGUMENTS)) {
            let block = ArgumentBlock::new(top, &words).unwrap();
            prop_assert_eq!(block.stack_pointer() % 16, 0);
            prop_assert!(block.stack_pointer() + block.bytes().len() as u64 <= top);
            let read: Vec<u64> = block.bytes().chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            let arguments = Arguments::from_block(&read).unwrap();
            prop_assert_eq!(arguments.words(), &words[..]);
        }

        #[test]
        fn decoding_any_block_never_panics(block in proptest::collection::vec(any::<u64>(), 0..20)) {
            if let Ok(arguments) = Arguments::from_block(&block) {
                prop_assert!(arguments.words().len() <= MAX_ARGUMENTS);
            }
        }
    }
}
