//! interrupts tests
