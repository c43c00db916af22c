//! Human names for class codes (PCI Code and ID Assignment spec 1.11 section 1), as `lspci`
//! prints them.

use core::fmt;

/// A function's class code: base class, subclass, programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassCode {
    /// Base class.
    pub base: u8,
    /// Subclass.
    pub sub: u8,
    /// Programming interface.
    pub prog_if: u8,
}

impl ClassCode {
    /// From the 24-bit value (base << 16 | sub << 8 | prog_if).
    pub const fn from_u32(value: u32) -> ClassCode {
        ClassCode {
            base: (value >> 16) as u8,
            sub: (value >> 8) as u8,
            prog_if: value as u8,
        }
    }

    /// The 24-bit value.
    pub const fn to_u32(self) -> u32 {
        ((self.base as u32) << 16) | ((self.sub as u32) << 8) | self.prog_if as u32
    }

    /// The human name.
    pub fn name(self) -> &'static str {
        class_name(self.base, self.sub, self.prog_if)
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{:02x}{:02x}]", self.name(), self.base, self.sub)
    }
}

/// The most specific name known for a class code.
pub fn class_name(base: u8, sub: u8, prog_if: u8) -> &'static str {
    match (base, sub, prog_if) {
        (0x00, 0x01, _) => "VGA compatible unclassified device",
        (0x00, _, _) => "Unclassified device",
        (0x01, 0x00, _) => "SCSI storage controller",
        (0x01, 0x01, _) => "IDE interface",
        (0x01, 0x04, _) => "RAID bus controller",
        (0x01, 0x06, _) => "SATA controller",
        (0x01, 0x07, _) => "Serial Attached SCSI controller",
        (0x01, 0x08, _) => "Non-Volatile memory controller",
        (0x01, _, _) => "Mass storage controller",
        (0x02, 0x00, _) => "Ethernet controller",
        (0x02, 0x80, _) => "Network controller",
        (0x02, _, _) => "Network controller",
        (0x03, 0x00, _) => "VGA compatible controller",
        (0x03, 0x02, _) => "3D controller",
        (0x03, _, _) => "Display controller",
        (0x04, 0x01, _) => "Multimedia audio controller",
        (0x04, 0x03, _) => "Audio device",
        (0x04, _, _) => "Multimedia controller",
        (0x05, 0x00, _) => "RAM memory",
        (0x05, _, _) => "Memory controller",
        (0x06, 0x00, _) => "Host bridge",
        (0x06, 0x01, _) => "ISA bridge",
        (0x06, 0x04, _) => "PCI bridge",
        (0x06, 0x07, _) => "CardBus bridge",
        (0x06, _, _) => "Bridge",
        (0x07, 0x00, _) => "Serial controller",
        (0x07, _, _) => "Communication controller",
        (0x08, 0x00, _) => "PIC",
        (0x08, 0x05, _) => "SD Host controller",
        (0x08, 0x06, _) => "IOMMU",
        (0x08, _, _) => "System peripheral",
        (0x09, _, _) => "Input device controller",
        (0x0b, _, _) => "Processor",
        (0x0c, 0x03, 0x00) => "USB controller [UHCI]",
        (0x0c, 0x03, 0x10) => "USB controller [OHCI]",
        (0x0c, 0x03, 0x20) => "USB controller [EHCI]",
        (0x0c, 0x03, 0x30) => "USB controller [XHCI]",
        (0x0c, 0x03, _) => "USB controller",
        (0x0c, 0x05, _) => "SMBus",
        (0x0c, _, _) => "Serial bus controller",
        (0x0d, _, _) => "Wireless controller",
        (0x10, _, _) => "Encryption controller",
        (0x11, _, _) => "Signal processing controller",
        (0x12, _, _) => "Processing accelerators",
        (0xff, _, _) => "Unassigned class",
        _ => "Unknown class",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_common_classes() {
        assert_eq!(class_name(0x03, 0x00, 0), "VGA compatible controller");
        assert_eq!(class_name(0x04, 0x03, 0), "Audio device");
        assert_eq!(class_name(0x0c, 0x03, 0x30), "USB controller [XHCI]");
        assert_eq!(
            class_name(0x01, 0x08, 0x02),
            "Non-Volatile memory controller"
        );
        assert_eq!(class_name(0x42, 0, 0), "Unknown class");
        let class = ClassCode::from_u32(0x060400);
        assert_eq!(class.to_u32(), 0x060400);
        assert_eq!(format!("{class}"), "PCI bridge [0604]");
    }
}
