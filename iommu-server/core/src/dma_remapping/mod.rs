//! DMA remapping structures (VT-d spec chapter 9): root table, context tables, second-level
//! page tables.

pub mod context_table;
pub mod root_table;
pub mod second_level;

pub use context_table::{ContextEntry, TranslationType};
pub use root_table::RootTable;
pub use second_level::{LargePages, SecondLevelTable, Translation};
