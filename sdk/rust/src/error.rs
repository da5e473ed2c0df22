use std::fmt;

/// Errors returned by the SDK.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request body is larger than the request's maximum body size.
    BodyTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The request body can no longer be read (an earlier read failed).
    BodyUnavailable,
    /// The other side closed the stream (for a response body: the client went
    /// away).
    Closed,
    /// The host reported an I/O error on a body stream.
    Io(String),
    /// The body is not valid UTF-8.
    Utf8(std::string::FromUtf8Error),
    /// The body could not be (de)serialized as JSON.
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// A tensor operation failed.
    Tensor(crate::tensor::TensorError),
    /// Any other error, with a message; see [`Error::other`].
    Other(String),
}

impl Error {
    /// An [`Error::Other`] with the given message, for returning your own
    /// errors from a [`stream`](crate::http::stream) body.
    pub fn other(message: impl fmt::Display) -> Self {
        Self::Other(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BodyTooLarge { limit } => {
                write!(f, "request body is larger than the limit of {limit} bytes")
            }
            Self::BodyUnavailable => f.write_str("request body is no longer available"),
            Self::Closed => f.write_str("stream closed"),
            Self::Io(msg) => write!(f, "stream error: {msg}"),
            Self::Utf8(e) => write!(f, "body is not valid UTF-8: {e}"),
            #[cfg(feature = "json")]
            Self::Json(e) => write!(f, "invalid JSON: {e}"),
            Self::Tensor(e) => write!(f, "tensor error: {e}"),
            Self::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Utf8(e) => Some(e),
            #[cfg(feature = "json")]
            Self::Json(e) => Some(e),
            Self::Tensor(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(e: std::string::FromUtf8Error) -> Self {
        Self::Utf8(e)
    }
}

impl From<crate::tensor::TensorError> for Error {
    fn from(e: crate::tensor::TensorError) -> Self {
        Self::Tensor(e)
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof => Self::Closed,
            _ => Self::Io(e.to_string()),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Closed => std::io::Error::new(std::io::ErrorKind::BrokenPipe, e),
            other => std::io::Error::other(other),
        }
    }
}
