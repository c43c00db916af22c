//! Interrupt remapping (VT-d spec 5.1, 9.10): the interrupt remapping table, its entries, and
//! the remappable-format messages devices and IOAPIC pins send, and the handle space shared by
//! several units' tables ([`placement`]).

pub mod message;
pub mod placement;
pub mod table;

pub use message::{ioapic_redirection_entry, remappable_msi, MsiMessage};
pub use placement::InterruptRemapping;
pub use table::{Irte, IrteTable, IRTE_ENTRIES};
