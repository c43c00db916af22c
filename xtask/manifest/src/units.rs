//! Value syntaxes of the manifest: sizes ("512M"), BDFs ("0000:01:00.0") and slot addresses ("00.0").

use std::fmt;

/// 2 MiB: guest and machine memory granularity (a large page, Intel SDM vol. 3A section 4.5).
pub const TWO_MIB: u64 = 2 * 1024 * 1024;

/// A PCI bus/device/function (PCIe Base spec 5.0 section 2.2.6.2: bus 8 bits, device 5, function 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// A BDF if device <= 31 and function <= 7.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device <= 31 && function <= 7).then_some(Self {
            bus,
            device,
            function,
        })
    }
    /// Requester-id encoding: bus << 8 | device << 3 | function.
    pub fn requester_id(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }
    /// Device and function as one devfn byte.
    pub fn devfn(self) -> u8 {
        self.device << 3 | self.function
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}

/// A slot address on a bus: device (slot) and function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotAddr {
    pub slot: u8,
    pub function: u8,
}

impl fmt::Display for SlotAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{}", self.slot, self.function)
    }
}

fn hex_u8(text: &str, max: u8) -> Option<u8> {
    if text.is_empty() || text.len() > 2 {
        return None;
    }
    u8::from_str_radix(text, 16).ok().filter(|v| *v <= max)
}

/// Parse `SS.F` or `SS` (hex slot, like QEMU's addr=).
pub fn parse_addr(text: &str) -> Option<SlotAddr> {
    let (slot, function) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, "0"),
    };
    let function = if function.len() == 1 {
        function.parse::<u8>().ok().filter(|f| *f <= 7)?
    } else {
        return None;
    };
    Some(SlotAddr {
        slot: hex_u8(slot, 31)?,
        function,
    })
}

/// Parse `DDDD:BB:SS.F` (domain 0000 only) or `BB:SS.F`.
pub fn parse_bdf(text: &str) -> Option<Bdf> {
    let rest = match text.matches(':').count() {
        2 => {
            let (domain, rest) = text.split_once(':')?;
            if domain != "0000" {
                return None;
            }
            rest
        }
        1 => text,
        _ => return None,
    };
    let (bus, addr) = rest.split_once(':')?;
    if !addr.contains('.') {
        return None;
    }
    let addr = parse_addr(addr)?;
    Bdf::new(hex_u8(bus, 0xff)?, addr.slot, addr.function)
}

/// Parse a size: a positive integer of bytes, or `<n>K`, `<n>M`, `<n>G`, `<n>T`
/// (binary units; an optional trailing `iB`/`B` is accepted: `2GiB`, `64MB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_suffix("iB")
        .or_else(|| trimmed.strip_suffix('B'))
        .unwrap_or(trimmed);
    let (digits, shift) = match trimmed.char_indices().last()? {
        (i, 'K' | 'k') => (trimmed.get(..i)?, 10),
        (i, 'M' | 'm') => (trimmed.get(..i)?, 20),
        (i, 'G' | 'g') => (trimmed.get(..i)?, 30),
        (i, 'T' | 't') => (trimmed.get(..i)?, 40),
        _ => (trimmed, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let bytes = value.checked_mul(1u64 << shift)?;
    (bytes > 0).then_some(bytes)
}

/// Human form of a byte count: the largest binary unit that divides it.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}")
}

/// Names and ids: 1..=31 bytes of a-z, 0-9, '-', '_', starting with a letter.
pub fn valid_name(name: &str) -> bool {
    (1..=31).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0M"), None);
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(format_size(512 << 20), "512M");
    }

    #[test]
    fn bdfs_and_addrs() {
        assert_eq!(parse_bdf("0000:01:00.0"), Bdf::new(1, 0, 0));
        assert_eq!(parse_bdf("00:1f.3"), Bdf::new(0, 31, 3));
        assert_eq!(parse_bdf("0001:01:00.0"), None);
        assert_eq!(parse_bdf("00:20.0"), None);
        assert_eq!(parse_bdf("00:01.8"), None);
        assert_eq!(parse_bdf("00:01"), None);
        assert_eq!(
            parse_addr("1f.7"),
            Some(SlotAddr {
                slot: 31,
                function: 7
            })
        );
        assert_eq!(
            parse_addr("05"),
            Some(SlotAddr {
                slot: 5,
                function: 0
            })
        );
        assert_eq!(parse_addr("20.0"), None);
        assert_eq!(Bdf::new(1, 2, 3).map(Bdf::requester_id), Some(0x0113));
    }
}
