//! Host tests of the two backends: realistic raw exits decoded into exit messages (and through
//! the wire format), replies applied and read back, control adjustment against recorded MSR
//! values, property tests that random hardware values never panic, and property tests that
//! the kernel's direct exit encoders and reply appliers match the decode-then-encode and
//! decode-then-apply routes they shortcut.
mod control_register;
mod controls;
mod fixtures;
mod svm_exits;
mod svm_replies;
mod vmx_exit_encoding;
mod vmx_exits;
mod vmx_replies;
mod vmx_reply_words;
