//! Logging to the kernel debug console, one line per call, formatted without allocation.

use core::fmt::{self, Write};

/// Longest line sent in one system call; longer lines are cut.
pub const LINE_CAPACITY: usize = 256;

/// A fixed buffer that formats one line.
pub struct Line {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            bytes: [0; LINE_CAPACITY],
            length: 0,
        }
    }

    /// The formatted bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_CAPACITY - 1 - self.length;
        let take = s.len().min(room);
        self.bytes[self.length..self.length + take].copy_from_slice(&s.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

/// Formats and writes one line (a newline is appended).
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    line.bytes[line.length] = b'\n';
    line.length += 1;
    let _ = crate::sys::debug_write(line.as_bytes());
}

/// Logs one formatted line to the kernel console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::write_line(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_formatted_and_cut_to_capacity() {
        crate::host::take_output();
        crate::log!("hello {}", 42);
        let long = "x".repeat(1000);
        crate::log!("{long}");
        let out = crate::host::take_output();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "hello 42");
        assert_eq!(lines[1].len(), super::LINE_CAPACITY - 1);
    }
}
