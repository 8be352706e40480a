//! A CSV log file set: `<PREFIX>yyyymmdd-n.log` with Exchange's `#` header
//! lines, a new file per day and beyond the size limit, and deletion of the
//! oldest files beyond the age and directory-size limits.
//!
//! Hand-written rather than tracing-appender's rolling writer: that one has
//! neither per-file header lines, size limits, Exchange's file names nor
//! retention by directory size.
use super::LogSettings;
use crate::clock::SharedClock;
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use time::macros::format_description;
use time::OffsetDateTime;

/// What one log is called and what it holds.
pub(crate) struct LogKind {
    /// File name prefix, e.g. `CONNECTLOG`.
    pub prefix: &'static str,
    /// `#Log-Type:` value.
    pub log_type: &'static str,
    /// `#Fields:` value (comma-separated names; the first is `date-time`).
    pub fields: &'static str,
}

/// One log's file set. Rows are written whole under a mutex, one `write` per
/// row on a file opened for appending, so neither a concurrent writer nor a
/// reader nor a crash ever sees half a row.
pub(crate) struct RollingLog {
    dir: PathBuf,
    kind: LogKind,
    max_age: Duration,
    max_directory_size: u64,
    max_file_size: u64,
    clock: SharedClock,
    state: Mutex<Writing>,
}

#[derive(Default)]
struct Writing {
    current: Option<Current>,
    /// An I/O error was reported and no write has succeeded since: do not
    /// report every following row's failure again.
    failing: bool,
}

struct Current {
    file: File,
    path: PathBuf,
    date: time::Date,
    size: u64,
    has_rows: bool,
}

/// A file of this log found in its directory.
struct Existing {
    path: PathBuf,
    /// `yyyymmdd` and instance number: the order the files were written in.
    key: (u32, u32),
    size: u64,
    modified: Option<SystemTime>,
}

impl RollingLog {
    /// Creates `dir` if needed and applies retention to the files already
    /// there. The first file is created with the first row.
    pub(crate) fn open(dir: PathBuf, kind: LogKind, settings: &LogSettings, clock: SharedClock) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let log = RollingLog {
            dir,
            kind,
            max_age: settings.max_age,
            max_directory_size: settings.max_directory_size,
            max_file_size: settings.max_file_size,
            clock,
            state: Mutex::new(Writing::default()),
        };
        log.enforce_retention(None);
        Ok(log)
    }

    /// Appends one row: the `date-time` column from the clock, then what
    /// `rest` appends (each field with [`push_field`]). `rest` runs under the
    /// log's lock, so values it takes in order (sequence numbers) appear in
    /// the file in that order. Errors are reported with tracing, never
    /// returned: a log must not stop mail.
    pub(crate) fn write_row(&self, rest: impl FnOnce(&mut String)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = OffsetDateTime::from(self.clock.now());
        let mut row = format_date_time(now);
        rest(&mut row);
        row.push_str("\r\n");
        match self.append(&mut state, now, row.as_bytes()) {
            Ok(()) => state.failing = false,
            Err(error) => {
                if !state.failing {
                    tracing::warn!(directory = %self.dir.display(), log = self.kind.log_type, %error,
                        "cannot write to the log; rows are dropped until it works again");
                }
                state.failing = true;
                // Start over with a fresh file on the next row.
                state.current = None;
            }
        }
    }

    fn append(&self, state: &mut Writing, now: OffsetDateTime, row: &[u8]) -> io::Result<()> {
        let roll = match &state.current {
            None => true,
            Some(c) => c.date != now.date() || (c.has_rows && c.size + row.len() as u64 > self.max_file_size),
        };
        if roll {
            state.current = None;
            let current = self.create_file(now)?;
            let path = current.path.clone();
            state.current = Some(current);
            self.enforce_retention(Some(&path));
        }
        let Some(current) = state.current.as_mut() else {
            return Err(io::Error::other("no current log file"));
        };
        current.file.write_all(row)?;
        current.size += row.len() as u64;
        current.has_rows = true;
        Ok(())
    }

    /// The next instance for `now`'s date, never an existing file: every file
    /// starts with its header lines, and a row cut short by a crash in an
    /// older file is not continued.
    fn create_file(&self, now: OffsetDateTime) -> io::Result<Current> {
        let day = date_key(now.date());
        let mut n = self.existing()?.iter().filter(|f| f.key.0 == day).map(|f| f.key.1).max().unwrap_or(0);
        loop {
            n += 1;
            let path = self.dir.join(format!("{}{day:08}-{n}.log", self.kind.prefix));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let header = format!(
                        "#Software: kube-transport\r\n#Version: {}\r\n#Log-Type: {}\r\n#Date: {}\r\n#Fields: {}\r\n",
                        env!("CARGO_PKG_VERSION"),
                        self.kind.log_type,
                        format_date_time(now),
                        self.kind.fields
                    );
                    file.write_all(header.as_bytes())?;
                    return Ok(Current { file, path, date: now.date(), size: header.len() as u64, has_rows: false });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < u32::MAX => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// This log's files, oldest first, with their `yyyymmdd` day: what a search reads.
    pub(crate) fn files(&self) -> io::Result<Vec<(PathBuf, u32)>> {
        Ok(self.existing()?.into_iter().map(|f| (f.path, f.key.0)).collect())
    }

    /// This log's files in its directory, oldest first.
    fn existing(&self) -> io::Result<Vec<Existing>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| parse_name(self.kind.prefix, n)) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                files.push(Existing { path: entry.path(), key, size: meta.len(), modified: meta.modified().ok() });
            }
        }
        files.sort_by_key(|f| f.key);
        Ok(files)
    }

    /// Deletes files modified longer than max_age ago (by the clock; zero
    /// keeps them), then the oldest files while this log's files together
    /// are larger than max_directory_size. The file being written is kept.
    fn enforce_retention(&self, current: Option<&Path>) {
        let files = match self.existing() {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(directory = %self.dir.display(), %error, "cannot list log files for retention");
                return;
            }
        };
        let cutoff = (!self.max_age.is_zero()).then(|| self.clock.now().checked_sub(self.max_age)).flatten();
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        for f in &files {
            if Some(f.path.as_path()) == current {
                continue;
            }
            let too_old = matches!((cutoff, f.modified), (Some(cutoff), Some(m)) if m < cutoff);
            if !too_old && total <= self.max_directory_size {
                continue;
            }
            match fs::remove_file(&f.path) {
                Ok(()) => total -= f.size,
                Err(error) => tracing::warn!(file = %f.path.display(), %error, "cannot delete old log file"),
            }
        }
    }
}

/// `(yyyymmdd, n)` of `<prefix>yyyymmdd-n.log`.
fn parse_name(prefix: &str, name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".log")?;
    let (day, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if day.len() != 8 || !digits(day) || !digits(n) {
        return None;
    }
    Some((day.parse().ok()?, n.parse().ok()?))
}

/// `yyyymmdd` of a date, as in the file names.
pub(crate) fn date_key(d: time::Date) -> u32 {
    d.year().max(0) as u32 * 10_000 + u8::from(d.month()) as u32 * 100 + d.day() as u32
}

/// ISO 8601 UTC with milliseconds: `2013-06-27T21:08:37.520Z`.
pub(crate) fn format_date_time(t: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&format).unwrap_or_default()
}

/// Appends `,` and one CSV field. A field with a comma, quote, CR or LF is
/// quoted with quotes doubled; control characters (CR and LF among them) are
/// written as escapes (`\r`, `\n`, `\u{1b}`), never raw, so one row stays one
/// line whatever a remote peer sent.
pub(crate) fn push_field(row: &mut String, field: &str) {
    row.push(',');
    let quote = field.contains([',', '"', '\r', '\n']);
    if quote {
        row.push('"');
    }
    for c in field.chars() {
        match c {
            '"' => row.push_str("\"\""),
            '\t' => row.push(c),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => row.extend(c.escape_debug()),
            c => row.push(c),
        }
    }
    if quote {
        row.push('"');
    }
}

/// The fields of one row as [`push_field`] wrote them (the `date-time` column first),
/// quotes removed and doubled quotes undone; the escapes of control characters stay
/// as written. `None` for a line that is not a whole row: an unbalanced quote.
pub(crate) fn split_row(line: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut fields = Vec::with_capacity(24);
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            // A quoted field ends at a quote that is not doubled.
            let mut value = String::new();
            let mut tail = quoted;
            loop {
                let at = tail.find('"')?;
                value.push_str(&tail[..at]);
                tail = &tail[at + 1..];
                match tail.strip_prefix('"') {
                    Some(after) => {
                        value.push('"');
                        tail = after;
                    }
                    None => break,
                }
            }
            fields.push(Cow::Owned(value));
            match tail.strip_prefix(',') {
                Some(after) => rest = after,
                None if tail.is_empty() => return Some(fields),
                None => return None,
            }
        } else {
            match rest.find(',') {
                Some(at) => {
                    fields.push(Cow::Borrowed(&rest[..at]));
                    rest = &rest[at + 1..];
                }
                None => {
                    fields.push(Cow::Borrowed(rest));
                    return Some(fields);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_back_into_the_fields_written() {
        let values = ["plain", "", "a,b", "say \"hi\"", "EHLO x\r\nRCPT", "\"", ",", "tail"];
        let mut row = String::from("2026-12-07T08:00:00.000Z");
        for v in values {
            push_field(&mut row, v);
        }
        let fields = split_row(&row).expect("a whole row");
        let mut expected = vec!["2026-12-07T08:00:00.000Z".to_string()];
        expected.extend(values.iter().map(|v| v.replace("\r\n", "\\r\\n")));
        assert_eq!(fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(), expected);
        assert_eq!(split_row("a,\"open"), None, "an unbalanced quote is not a row");
        assert_eq!(split_row("a,\"x\"y"), None, "text after a closing quote is not a row");
    }

    fn field(s: &str) -> String {
        let mut row = String::new();
        push_field(&mut row, s);
        row
    }

    #[test]
    fn csv_fields() {
        assert_eq!(field("plain text"), ",plain text");
        assert_eq!(field(""), ",");
        assert_eq!(
            field("Messages: 0 Bytes: 0 (Retry : Service not active)"),
            ",Messages: 0 Bytes: 0 (Retry : Service not active)"
        );
        assert_eq!(field("a,b"), ",\"a,b\"");
        assert_eq!(field("say \"hi\""), ",\"say \"\"hi\"\"\"");
        assert_eq!(field("EHLO x\r\nRCPT TO:<y>"), ",\"EHLO x\\r\\nRCPT TO:<y>\"");
        assert_eq!(field("bell\u{7}"), ",bell\\u{7}");
        assert_eq!(field("tab\there"), ",tab\there");
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_name("CONNECTLOG", "CONNECTLOG20130627-12.log"), Some((20130627, 12)));
        assert_eq!(parse_name("CONNECTLOG", "RECV20130627-1.log"), None);
        assert_eq!(parse_name("CONNECTLOG", "CONNECTLOG2013627-1.log"), None);
        assert_eq!(parse_name("CONNECTLOG", "CONNECTLOG20130627-.log"), None);
        assert_eq!(parse_name("CONNECTLOG", "CONNECTLOG20130627-1.log.gz"), None);
    }
}
