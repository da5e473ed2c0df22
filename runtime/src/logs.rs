//! Function logs: each invocation's captured output, split into lines and
//! kept per function in a bounded ring, with a live feed for `--follow`.

use crate::guest_log::{CapturedOutput, Stream};
use crate::units::now_ms;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;

/// Longest line kept; longer lines are cut (a guest printing one 1 MiB line
/// would otherwise make every `wafer logs` slow).
const MAX_LINE_BYTES: usize = 8 * 1024;
/// Entries buffered for a slow `--follow` reader before it skips ahead.
const FOLLOW_BUFFER: usize = 1024;

/// One log line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The invocation that printed it.
    pub invocation_id: String,
    /// Which stream.
    pub stream: Stream,
    /// The text, without the newline.
    pub line: String,
}

struct FunctionLog {
    ring: Mutex<VecDeque<LogEntry>>,
    feed: broadcast::Sender<LogEntry>,
}

/// Logs of every function on the node.
#[derive(Clone)]
pub struct LogStore {
    per_function: Arc<DashMap<String, Arc<FunctionLog>>>,
    capacity: usize,
}

impl LogStore {
    /// Keeps `capacity` entries per function.
    pub fn new(capacity: usize) -> Self {
        Self {
            per_function: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    fn log(&self, function: &str) -> Arc<FunctionLog> {
        self.per_function
            .entry(function.to_owned())
            .or_insert_with(|| {
                Arc::new(FunctionLog {
                    ring: Mutex::new(VecDeque::new()),
                    feed: broadcast::channel(FOLLOW_BUFFER).0,
                })
            })
            .clone()
    }

    /// Records what an invocation printed.
    pub fn record_output(&self, function: &str, invocation_id: &str, output: CapturedOutput) {
        if output.stdout.is_empty() && output.stderr.is_empty() && !output.truncated {
            return;
        }
        let time_ms = now_ms();
        let mut entries = Vec::new();
        for (stream, bytes) in [(Stream::Stdout, &output.stdout), (Stream::Stderr, &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines() {
                entries.push(LogEntry {
                    time_ms,
                    invocation_id: invocation_id.to_owned(),
                    stream,
                    line: truncate(line),
                });
            }
        }
        if output.truncated {
            entries.push(LogEntry {
                time_ms,
                invocation_id: invocation_id.to_owned(),
                stream: Stream::System,
                line: "output truncated: the invocation printed more than the log budget (limits.max_log_bytes)".into(),
            });
        }
        self.push(function, entries);
    }

    /// Records a message from the node about an invocation.
    pub fn record_system(&self, function: &str, invocation_id: &str, message: String) {
        let entry = LogEntry {
            time_ms: now_ms(),
            invocation_id: invocation_id.to_owned(),
            stream: Stream::System,
            line: message,
        };
        self.push(function, vec![entry]);
    }

    fn push(&self, function: &str, entries: Vec<LogEntry>) {
        let log = self.log(function);
        let mut ring = log.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in entries {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            // No receivers is the normal case; ignore it.
            let _ = log.feed.send(entry.clone());
            ring.push_back(entry);
        }
    }

    /// The last `tail` entries of a function, oldest first.
    pub fn recent(&self, function: &str, tail: usize) -> Vec<LogEntry> {
        let Some(log) = self.per_function.get(function).map(|l| l.clone()) else {
            return Vec::new();
        };
        let ring = log.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = ring.len().saturating_sub(tail);
        ring.iter().skip(skip).cloned().collect()
    }

    /// The last `tail` entries, then every new one as it arrives.
    pub fn follow(&self, function: &str, tail: usize) -> (Vec<LogEntry>, broadcast::Receiver<LogEntry>) {
        let log = self.log(function);
        // Subscribe under the ring lock so no entry falls between the two.
        let ring = log.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = log.feed.subscribe();
        let skip = ring.len().saturating_sub(tail);
        (ring.iter().skip(skip).cloned().collect(), receiver)
    }

    /// Forgets a deleted function's logs.
    pub fn remove(&self, function: &str) {
        self.per_function.remove(function);
    }
}

fn truncate(line: &str) -> String {
    if line.len() <= MAX_LINE_BYTES {
        return line.to_owned();
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [line cut at {MAX_LINE_BYTES} bytes]", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_entries() {
        let logs = LogStore::new(3);
        for n in 0..5 {
            logs.record_system("f", &format!("inv{n}"), format!("line {n}"));
        }
        let lines: Vec<_> = logs.recent("f", 10).into_iter().map(|e| e.line).collect();
        assert_eq!(lines, ["line 2", "line 3", "line 4"]);
        assert_eq!(logs.recent("f", 1).len(), 1);
        assert!(logs.recent("other", 10).is_empty());
    }

    #[test]
    fn output_is_split_into_lines_per_stream() {
        let logs = LogStore::new(100);
        let output = CapturedOutput {
            stdout: b"a\nb\n".to_vec(),
            stderr: b"c".to_vec(),
            truncated: true,
        };
        logs.record_output("f", "inv", output);
        let entries = logs.recent("f", 10);
        let streams: Vec<_> = entries.iter().map(|e| e.stream).collect();
        assert_eq!(
            streams,
            [Stream::Stdout, Stream::Stdout, Stream::Stderr, Stream::System]
        );
    }
}
