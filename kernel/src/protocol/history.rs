//! Input history shared across kernel sessions, answering history_request's tail, range and search.
//!
//! Entries are appended to a JSON-lines file (one `{"session", "line", "input"}` object per executed cell), so a
//! new kernel sees the inputs of earlier ones, as IPython's history does. Each kernel start is a new session
//! number. A history file that cannot be read or written only costs history, never the kernel.

use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Keep at most this many entries in memory (the newest).
const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub session: i64,
    pub line: i64,
    pub input: String,
}

pub struct History {
    path: Option<PathBuf>,
    session: i64,
    entries: Vec<Entry>,
}

impl History {
    /// Loads the history at `path` (none: in memory only) and starts a new session.
    pub fn open(path: Option<PathBuf>) -> Self {
        let mut entries = Vec::new();
        if let Some(file) = path.as_ref().and_then(|p| std::fs::File::open(p).ok()) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                    entries.push(entry);
                }
            }
        }
        if entries.len() > MAX_ENTRIES {
            entries.drain(..entries.len() - MAX_ENTRIES);
        }
        let session = entries.iter().map(|e| e.session).max().unwrap_or(0) + 1;
        Self {
            path,
            session,
            entries,
        }
    }

    /// Records cell `line` of this session.
    pub fn record(&mut self, line: i64, input: &str) {
        let entry = Entry {
            session: self.session,
            line,
            input: input.to_string(),
        };
        if let Some(path) = &self.path {
            let written = (|| -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // Cells can hold credentials (object store keys in OPTIONS): the file is the user's alone.
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?;
                let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
                line.push('\n');
                // One write per entry, so that two kernels appending at once do not interleave lines.
                f.write_all(line.as_bytes())
            })();
            if let Err(e) = written {
                eprintln!("[kestrel] history not saved to {}: {e}", path.display());
            }
        }
        self.entries.push(entry);
        if self.entries.len() > MAX_ENTRIES {
            self.entries.remove(0);
        }
    }

    /// The last `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<&Entry> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries[skip..].iter().collect()
    }

    /// Lines `start..stop` of a session. `session` 0 is the current one, negative counts back from it;
    /// `stop` None runs to the session's end.
    pub fn range(&self, session: i64, start: i64, stop: Option<i64>) -> Vec<&Entry> {
        let session = if session <= 0 {
            self.session + session
        } else {
            session
        };
        self.entries
            .iter()
            .filter(|e| e.session == session && e.line >= start && stop.is_none_or(|s| e.line < s))
            .collect()
    }

    /// Entries whose input matches the glob `pattern` (`*`, `?`), oldest first; the last `n` when `n` is given;
    /// with `unique`, each input once (its latest occurrence).
    pub fn search(&self, pattern: &str, n: Option<usize>, unique: bool) -> Vec<&Entry> {
        let mut found: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| glob_match(pattern, &e.input))
            .collect();
        if unique {
            let mut seen = std::collections::HashSet::new();
            let mut kept: Vec<&Entry> = found
                .into_iter()
                .rev()
                .filter(|e| seen.insert(e.input.as_str()))
                .collect();
            kept.reverse();
            found = kept;
        }
        if let Some(n) = n {
            let skip = found.len().saturating_sub(n);
            found.drain(..skip);
        }
        found
    }
}

/// Glob match over the whole text: `*` any run, `?` any one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("SELECT*", "SELECT 1"));
        assert!(glob_match("*FROM t*", "SELECT * FROM t WHERE x"));
        assert!(glob_match("SELECT ?", "SELECT 1"));
        assert!(!glob_match("SELECT ?", "SELECT 12"));
        assert!(!glob_match("INSERT*", "SELECT 1"));
    }

    #[test]
    fn sessions_persist_and_queries_answer() {
        let dir = std::env::temp_dir().join(format!("kestrel-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("history.jsonl");
        let mut h = History::open(Some(path.clone()));
        assert_eq!(h.session, 1);
        h.record(1, "SELECT 1");
        h.record(2, "SELECT 2");
        h.record(3, "SELECT 1");

        let mut h2 = History::open(Some(path));
        assert_eq!(h2.session, 2);
        h2.record(1, "CREATE TABLE t (x INT)");
        let tail: Vec<_> = h2.tail(2).iter().map(|e| e.input.as_str()).collect();
        assert_eq!(tail, ["SELECT 1", "CREATE TABLE t (x INT)"]);
        assert_eq!(h2.range(-1, 2, None).len(), 2);
        assert_eq!(h2.range(0, 1, Some(2))[0].input, "CREATE TABLE t (x INT)");
        assert_eq!(h2.search("SELECT*", None, false).len(), 3);
        assert_eq!(h2.search("SELECT*", None, true).len(), 2);
        assert_eq!(h2.search("SELECT*", Some(1), false)[0].line, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
