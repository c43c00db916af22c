//! Violations and their miette-style rendering: file, line, column, key, what, how to fix.

use crate::tree::line_col;
use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan,
};
use std::fmt;
use std::io::IsTerminal;
use std::ops::Range;

/// One broken rule at one place.
#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: &'static str,
    /// Dotted key path, e.g. `guest[1].memory`.
    pub key: String,
    pub message: String,
    pub help: String,
    pub span: Range<usize>,
}

impl Violation {
    pub fn new(
        rule: &'static str,
        key: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            key: key.into(),
            message: message.into(),
            help: help.into(),
            span,
        }
    }
}

/// All violations found in one manifest (as many as one pass can find).
#[derive(Debug, Clone)]
pub struct ManifestError {
    file: String,
    text: String,
    violations: Vec<Violation>,
}

impl ManifestError {
    pub(crate) fn new(file: &str, text: &str, violations: Vec<Violation>) -> Self {
        Self {
            file: file.to_owned(),
            text: text.to_owned(),
            violations,
        }
    }
    /// Rule codes that fired, in report order (may repeat).
    pub fn rules(&self) -> Vec<&'static str> {
        self.violations.iter().map(|v| v.rule).collect()
    }
    /// The violations themselves.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
    /// `file:line:col` of a violation.
    pub fn location(&self, violation: &Violation) -> String {
        let (line, col) = line_col(&self.text, violation.span.start);
        format!("{}:{line}:{col}", self.file)
    }
}

struct Rendered<'a> {
    violation: &'a Violation,
    headline: String,
    source: NamedSource<String>,
}

impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline)
    }
}
impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline)
    }
}
impl std::error::Error for Rendered<'_> {}

impl Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.violation.rule))
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!("fix: {}", self.violation.help)))
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = &self.violation.span;
        let len = span.end.saturating_sub(span.start).max(1);
        let at = SourceSpan::new(span.start.into(), len);
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(format!("`{}`", self.violation.key)),
            at,
        ))))
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let theme = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(400);
        for violation in &self.violations {
            let headline = format!(
                "{}: `{}`: {}",
                self.location(violation),
                violation.key,
                violation.message
            );
            let rendered = Rendered {
                violation,
                headline,
                source: NamedSource::new(&self.file, self.text.clone()),
            };
            let mut out = String::new();
            if handler.render_report(&mut out, &rendered).is_err() {
                out = format!("{rendered}\n  fix: {}\n", violation.help);
            }
            f.write_str(&out)?;
        }
        write!(
            f,
            "{}: {} error{} in the manifest; nothing was built",
            self.file,
            self.violations.len(),
            if self.violations.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ManifestError {}

/// Closest candidate within a small edit distance, for "did you mean".
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}
