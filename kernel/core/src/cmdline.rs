//! The kernel command line (the Multiboot2 cmdline tag): `key=value` flags xtask or a user on
//! bare metal passes through GRUB. Unknown flags are kept and reported, never fatal.

/// How the kernel ends a run: emulators have exit devices, bare metal halts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDevice {
    /// QEMU's `isa-debug-exit` at port 0xf4.
    Qemu,
    /// Bochs' shutdown port 0x8900.
    Bochs,
    /// Bare metal: halt every CPU.
    Halt,
}

/// A deliberate fault for testing the exception path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFault {
    /// A read from an unmapped address (#PF, vector 14).
    PageFault,
    /// An undefined opcode (#UD, vector 6).
    InvalidOpcode,
    /// A non-canonical address (#GP, vector 13).
    GeneralProtection,
    /// A division by zero (#DE, vector 0).
    DivideError,
}

/// Most unknown flags remembered for the warning line.
pub const MAX_UNKNOWN: usize = 8;

/// The decoded command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options<'a> {
    pub exit: ExitDevice,
    pub test_fault: Option<TestFault>,
    /// Flags the kernel did not understand (shown in the log, otherwise ignored).
    pub unknown: heapless::Vec<&'a str, MAX_UNKNOWN>,
}

impl<'a> Options<'a> {
    /// Decodes `cmdline`; never fails: what is not understood lands in `unknown`.
    pub fn parse(cmdline: &'a str) -> Self {
        let mut options = Options {
            exit: ExitDevice::Halt,
            test_fault: None,
            unknown: heapless::Vec::new(),
        };
        for word in cmdline.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let understood = match (key, value) {
                ("exit", "qemu") => {
                    options.exit = ExitDevice::Qemu;
                    true
                }
                ("exit", "bochs") => {
                    options.exit = ExitDevice::Bochs;
                    true
                }
                ("exit", "halt") => {
                    options.exit = ExitDevice::Halt;
                    true
                }
                ("test-fault", fault) => {
                    options.test_fault = match fault {
                        "pf" => Some(TestFault::PageFault),
                        "ud" => Some(TestFault::InvalidOpcode),
                        "gp" => Some(TestFault::GeneralProtection),
                        "de" => Some(TestFault::DivideError),
                        _ => options.test_fault,
                    };
                    matches!(fault, "pf" | "ud" | "gp" | "de")
                }
                _ => false,
            };
            if !understood {
                // Overflowing the list only loses the warning, not a setting.
                let _ = options.unknown.push(word);
            }
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_flags_and_keeps_unknown_ones() {
        let o = Options::parse("exit=qemu  test-fault=pf quiet exit=bogus");
        assert_eq!(o.exit, ExitDevice::Qemu);
        assert_eq!(o.test_fault, Some(TestFault::PageFault));
        assert_eq!(o.unknown.as_slice(), &["quiet", "exit=bogus"]);
        let d = Options::parse("");
        assert_eq!(d.exit, ExitDevice::Halt);
        assert_eq!(d.test_fault, None);
        assert_eq!(
            Options::parse("test-fault=ud exit=bochs").test_fault,
            Some(TestFault::InvalidOpcode)
        );
    }
}
