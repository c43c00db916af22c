//! Judging a run from its serial console. The kernel's final lines are a contract
//! (`kernel/src/platform.rs`): `sluice: shutdown: clean` ends a good run; `sluice: EXCEPTION`,
//! `sluice: PANIC` or `sluice: halted:` end a bad one.

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The system reported a clean shutdown.
    Clean,
    /// The system reported a fatal error: the first fatal line.
    Failed(String),
    /// The run has not ended yet (or ended without a final line).
    Running,
}

const CLEAN: &str = "sluice: shutdown: clean";
const FATAL: [&str; 3] = ["sluice: EXCEPTION", "sluice: PANIC", "sluice: halted:"];

/// Judges the serial output so far. A fatal line wins over a later clean line.
pub fn judge(serial: &str) -> Verdict {
    for line in serial.lines() {
        let line = line.trim_end_matches('\r');
        if FATAL.iter().any(|f| line.contains(f)) {
            return Verdict::Failed(line.to_string());
        }
        if line.contains(CLEAN) {
            return Verdict::Clean;
        }
    }
    Verdict::Running
}

/// Whether the run has produced its final line (a halted line follows an exception report,
/// so a failure is final only once `sluice: halted:` or a panic's halt line arrived).
pub fn finished(serial: &str) -> bool {
    serial
        .lines()
        .any(|l| l.contains(CLEAN) || l.contains("sluice: halted:"))
}

/// Markers that did not appear.
pub fn missing_markers<'a>(serial: &str, markers: &[&'a str]) -> Vec<&'a str> {
    markers
        .iter()
        .copied()
        .filter(|m| !serial.contains(m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_failed_and_running() {
        assert_eq!(
            judge("sluice: kernel booting\r\nsluice: shutdown: clean\r\n"),
            Verdict::Clean
        );
        let fault =
            "sluice: EXCEPTION #PF (page fault, vector 14)\nsluice: halted: fatal exception\n";
        assert_eq!(
            judge(fault),
            Verdict::Failed("sluice: EXCEPTION #PF (page fault, vector 14)".into())
        );
        assert_eq!(
            judge("sluice: PANIC at x.rs:1: boom\n"),
            Verdict::Failed("sluice: PANIC at x.rs:1: boom".into())
        );
        assert_eq!(judge("sluice: kernel booting\n"), Verdict::Running);
        assert!(!finished(fault.lines().next().unwrap()));
        assert!(finished(fault));
    }

    #[test]
    fn reports_missing_markers() {
        assert_eq!(missing_markers("a b c", &["a", "d", "c"]), vec!["d"]);
    }
}
