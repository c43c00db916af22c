//! The system-call and IPC ABI shared by the kernel and userland: call numbers, the one status
//! enum, message layouts (zerocopy), and the normalized VM-exit message.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot;
pub mod ipc;
pub mod syscall;
pub mod vcpu;
