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

/// A writer that sends every completed line to the kernel console (cut at
/// [`LINE_CAPACITY`]); for `Display` values that span many lines, such as a device listing.
/// Call [`Lines::finish`] to send a last line without a newline.
pub struct Lines {
    line: Line,
    prefix: &'static str,
}

impl Lines {
    /// An empty writer.
    pub const fn new() -> Self {
        Lines::with_prefix("")
    }

    /// An empty writer that starts every line with `prefix`.
    pub const fn with_prefix(prefix: &'static str) -> Self {
        Lines {
            line: Line::new(),
            prefix,
        }
    }

    fn start_line(&mut self) -> fmt::Result {
        if self.line.length == 0 {
            self.line.write_str(self.prefix)?;
        }
        Ok(())
    }

    fn flush(&mut self) {
        self.line.bytes[self.line.length] = b'\n';
        let _ = crate::sys::debug_write(&self.line.bytes[..self.line.length + 1]);
        self.line.length = 0;
    }

    /// Sends what is buffered, if anything.
    pub fn finish(mut self) {
        if self.line.length > 0 {
            self.flush();
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Lines {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(position) = rest.find('\n') {
            self.start_line()?;
            self.line.write_str(&rest[..position])?;
            self.flush();
            rest = &rest[position + 1..];
        }
        if !rest.is_empty() {
            self.start_line()?;
            self.line.write_str(rest)?;
        }
        Ok(())
    }
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

    #[test]
    fn multi_line_values_become_one_console_line_each() {
        use core::fmt::Write;
        crate::host::take_output();
        let mut lines = super::Lines::new();
        write!(lines, "first\nsecond {}\nthird", 2).unwrap();
        assert_eq!(crate::host::take_output(), "first\nsecond 2\n");
        lines.finish();
        assert_eq!(crate::host::take_output(), "third\n");
        let mut prefixed = super::Lines::with_prefix("pci: ");
        write!(prefixed, "a\n\nb").unwrap();
        prefixed.finish();
        assert_eq!(crate::host::take_output(), "pci: a\npci: \npci: b\n");
    }
}
