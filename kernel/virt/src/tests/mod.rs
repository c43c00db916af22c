//! Host tests of the two backends: realistic raw exits decoded into exit messages (and through
//! the wire format), replies applied and read back, control adjustment against recorded MSR
//! values, and property tests that random hardware values never panic.
mod control_register;
mod controls;
mod fixtures;
mod svm_exits;
mod svm_replies;
mod vmx_exits;
mod vmx_replies;
