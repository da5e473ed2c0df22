//! Captures a guest's stdout and stderr for one invocation, bounded.
//!
//! Writes past the budget are accepted and dropped (a guest's `println!` must
//! not fail, or Rust guests would panic), and the capture is marked truncated.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// A message from the node about the invocation (trap, timeout).
    System,
}

#[derive(Debug, Default)]
struct Captured {
    budget: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

/// The shared capture buffer for one invocation.
#[derive(Clone, Debug)]
pub struct GuestOutput {
    inner: Arc<Mutex<Captured>>,
}

/// What a finished invocation printed.
#[derive(Debug, Default)]
pub struct CapturedOutput {
    /// Bytes written to stdout, up to the budget.
    pub stdout: Vec<u8>,
    /// Bytes written to stderr, up to the budget.
    pub stderr: Vec<u8>,
    /// Whether anything was dropped.
    pub truncated: bool,
}

impl GuestOutput {
    /// A capture keeping at most `budget` bytes across both streams.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                budget,
                ..Captured::default()
            })),
        }
    }

    /// The guest's stdout.
    pub fn stdout(&self) -> Pipe {
        Pipe {
            output: self.clone(),
            stream: Stream::Stdout,
        }
    }

    /// The guest's stderr.
    pub fn stderr(&self) -> Pipe {
        Pipe {
            output: self.clone(),
            stream: Stream::Stderr,
        }
    }

    /// Takes what was captured so far.
    pub fn take(&self) -> CapturedOutput {
        let mut captured = self.lock();
        CapturedOutput {
            stdout: std::mem::take(&mut captured.stdout),
            stderr: std::mem::take(&mut captured.stderr),
            truncated: captured.truncated,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // The buffer holds plain bytes; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, stream: Stream, bytes: &[u8]) {
        let mut captured = self.lock();
        let used = captured.stdout.len() + captured.stderr.len();
        let room = captured.budget.saturating_sub(used);
        let kept = bytes.len().min(room);
        if kept < bytes.len() {
            captured.truncated = true;
        }
        let target = match stream {
            Stream::Stderr => &mut captured.stderr,
            _ => &mut captured.stdout,
        };
        target.extend_from_slice(&bytes[..kept]);
    }
}

/// One of the guest's output streams.
#[derive(Clone, Debug)]
pub struct Pipe {
    output: GuestOutput,
    stream: Stream,
}

impl IsTerminal for Pipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Pipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Largest write the guest is invited to make at once.
const WRITE_PERMIT: usize = 64 * 1024;

#[async_trait::async_trait]
impl Pollable for Pipe {
    async fn ready(&mut self) {}
}

impl OutputStream for Pipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.append(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.output.append(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_budget_is_dropped_and_marked() {
        let output = GuestOutput::new(10);
        let mut out = output.stdout();
        let mut err = output.stderr();
        assert!(out.write(Bytes::from_static(b"hello ")).is_ok());
        assert!(err.write(Bytes::from_static(b"world!!")).is_ok());
        let captured = output.take();
        assert_eq!(captured.stdout, b"hello ");
        assert_eq!(captured.stderr, b"worl");
        assert!(captured.truncated);
    }
}
