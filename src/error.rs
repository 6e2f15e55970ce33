//! The one error type of the crate.
//!
//! Rules: every public function returns [`Result`]; an error carries a [`ErrorKind`]
//! (which becomes the `:datacamp/error` keyword on the Clojure side), the operation that
//! failed, the key or path it concerned, and where possible a hint a person can act on.
//!
//! Errors often quote input that came from outside the process (a backup's files, an
//! option): quote it through [`excerpt`], never whole. As a last line of defence every
//! message, key and hint is cut to [`MAX_MESSAGE_CHARS`] when the error is built.

use std::fmt;

/// What went wrong, coarsely: decides retries and the `:datacamp/error` keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A caller's argument or option is not acceptable (nothing was written).
    InvalidArgument,
    /// A file, object or backup does not exist.
    NotFound,
    /// Stored bytes do not decode or do not match their checksum.
    Corrupt,
    /// A local I/O failure (disk full, permission denied, …).
    Io,
    /// A failure that may succeed when retried (network, throttling, 5xx).
    Transient,
    /// The storage service refused the credentials or the permission (access denied,
    /// unknown access key, bad signature, expired token); retrying does not help.
    Denied,
    /// A value that the format cannot represent.
    Unsupported,
    /// The operation conflicts with existing state (backup exists, lock held, …).
    Conflict,
    /// An encrypted backup needs another key than the one given (or none was given).
    WrongKey,
    /// A resume found the backup already complete (another resumer finished it): an
    /// outcome the caller reports as success, not a failure.
    AlreadyComplete,
    /// A bug: an invariant of this crate did not hold (including caught panics).
    Internal,
}

impl ErrorKind {
    /// Return the keyword name used for `:datacamp/error` (without the namespace).
    pub fn keyword(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Io => "io",
            ErrorKind::Transient => "transient",
            ErrorKind::Denied => "access-denied",
            ErrorKind::Unsupported => "unsupported-value",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyComplete => "already-complete",
            ErrorKind::WrongKey => "wrong-key",
            ErrorKind::Internal => "internal",
        }
    }
}

/// What a storage service answered, for an error that came from one (S3: the HTTP status
/// and the error code of its XML body). It travels as the [`Error`]'s `source` (wrapping the
/// service client's own error), read with [`Error::status`] and [`Error::code`]: code that
/// must tell answers apart (412 `PreconditionFailed`, 404 `NoSuchUpload`, …) looks there,
/// never at the message text.
#[derive(Debug)]
pub struct ServiceReply {
    /// The HTTP status, when there was an HTTP answer.
    pub status: Option<u16>,
    /// The service's error code (`NoSuchKey`, `PreconditionFailed`, …), when it sent one.
    pub code: Option<String>,
    /// The service client's error.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for ServiceReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, self.status) {
            (Some(c), Some(s)) => write!(f, "{c} (HTTP {s})"),
            (Some(c), None) => write!(f, "{c}"),
            (None, Some(s)) => write!(f, "HTTP {s}"),
            (None, None) => write!(f, "no answer"),
        }
    }
}

impl std::error::Error for ServiceReply {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The longest message, key or hint an [`Error`] keeps (longer ones are cut, marked `…`).
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// The longest piece of outside input that [`excerpt`] quotes.
pub const EXCERPT_CHARS: usize = 80;

/// Given text that came from outside (a token, a value, a file name), return it fit to
/// quote in an error message: at most [`EXCERPT_CHARS`] characters, control and
/// bidirectional formatting characters escaped, and `… (N bytes)` when it was cut. Short,
/// plain text comes back unchanged.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| !c.is_control() && !is_format_char(c);
    if s.len() <= EXCERPT_CHARS && s.chars().all(plain) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(EXCERPT_CHARS * 2);
    let mut cut = false;
    for (n, c) in s.chars().enumerate() {
        if n >= EXCERPT_CHARS {
            cut = true;
            break;
        }
        if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    std::borrow::Cow::Owned(out)
}

/// [`clip`], in double quotes.
pub fn excerpt(s: &str) -> String {
    format!("\"{}\"", clip(s))
}

/// Unicode "format" characters that change how text displays without being visible:
/// bidirectional controls (which can make a name read backwards), zero-width characters
/// and the byte-order mark.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Cut `s` to [`MAX_MESSAGE_CHARS`] characters (marking the cut).
fn capped(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_CHARS {
        if let Some((i, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
            let total = s.len();
            s.truncate(i);
            s.push_str(&format!("… ({total} bytes in all)"));
        }
    }
    s
}

/// An error with its kind, operation, key, hint and cause.
#[derive(Debug)]
pub struct Error {
    /// The coarse kind.
    pub kind: ErrorKind,
    /// What was being done (`"write chunk"`, `"read manifest"`, …).
    pub op: String,
    /// The file path or object key concerned, if any.
    pub key: Option<String>,
    /// What the user can do about it, if known.
    pub hint: Option<String>,
    /// The human-readable detail.
    pub message: String,
    /// The underlying cause, if any (a [`ServiceReply`] when a storage service answered).
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Given a kind, the operation and a message, return a new error.
    pub fn new(kind: ErrorKind, op: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind,
            op: capped(op.into()),
            key: None,
            hint: None,
            message: capped(message.into()),
            source: None,
        }
    }

    /// An [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, op, message)
    }

    /// An [`ErrorKind::Corrupt`] error.
    pub fn corrupt(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, op, message)
    }

    /// An [`ErrorKind::Internal`] error.
    pub fn internal(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, op, message)
    }

    /// Given a caught panic's payload, return the [`ErrorKind::Internal`] error reporting it.
    pub fn from_panic(op: impl Into<String>, panic: &(dyn std::any::Any + Send)) -> Self {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Error::internal(op, format!("native panic: {what}"))
            .with_hint("this is a bug in datacamp; please report it with the message")
    }

    /// Given an I/O error, the operation and the path, return an error of the fitting kind.
    pub fn io(op: impl Into<String>, key: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let (kind, hint) = match err.kind() {
            K::NotFound => (ErrorKind::NotFound, None),
            K::PermissionDenied => (
                ErrorKind::Io,
                Some("check that the process may write to this directory"),
            ),
            K::StorageFull => (ErrorKind::Io, Some("free disk space and retry")),
            _ => (ErrorKind::Io, None),
        };
        Error {
            kind,
            op: capped(op.into()),
            key: Some(capped(key.into())),
            hint: hint.map(String::from),
            message: capped(err.to_string()),
            source: Some(Box::new(err)),
        }
    }

    /// Return the error with `key` attached.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(capped(key.into()));
        self
    }

    /// Return the error with `hint` attached.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(capped(hint.into()));
        self
    }

    /// The storage service's answer, if the error is one ([`ServiceReply`] as the source).
    pub fn reply(&self) -> Option<&ServiceReply> {
        self.source.as_deref()?.downcast_ref::<ServiceReply>()
    }

    /// The HTTP status the storage service answered, if the error is such an answer.
    pub fn status(&self) -> Option<u16> {
        self.reply().and_then(|s| s.status)
    }

    /// The error code the storage service answered (`NoSuchUpload`, …), if any.
    pub fn code(&self) -> Option<&str> {
        self.reply().and_then(|s| s.code.as_deref())
    }

    /// Return the error with its operation replaced by `op` (context from the caller).
    pub fn in_op(mut self, op: impl Into<String>) -> Self {
        self.op = capped(op.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)?;
        if let Some(key) = &self.key {
            write!(f, " ({key})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
