//! The client side of `edgewatch ctl`: one request line out, one answer line back.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest answer read.
const MAX_ANSWER: usize = 4096;

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `ok: ...` (true) or `error: ...` (false).
    pub ok: bool,
    /// The text after `ok: ` or `error: `.
    pub text: String,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path.
    #[error("no control socket at {0}: is edgewatch running, with control.socket set to it?")]
    Absent(PathBuf),
    /// The socket's mode or folder keeps this user out.
    #[error("permission denied on {0}: run as root or as a member of group `edgewatch`")]
    Denied(PathBuf),
    /// Another connect failure.
    #[error("cannot connect to {0}: {1}")]
    Connect(PathBuf, io::Error),
    /// Sending or receiving failed (or timed out).
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    /// The answer is not `ok: ...` or `error: ...`.
    #[error("{0}: unexpected answer `{1}`")]
    BadAnswer(PathBuf, String),
}

/// Sends `line` to the socket at `path` and reads the answer, each within `timeout`.
pub fn send(path: &Path, line: &str, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError::Absent(path.into()),
        ErrorKind::PermissionDenied => ClientError::Denied(path.into()),
        _ => ClientError::Connect(path.into(), e),
    })?;
    let io_err = |e| ClientError::Io(path.into(), e);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(io_err)?;
    let mut answer = Vec::new();
    let read = (&mut stream)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer);
    // A reset after the answer arrived (the server drops the rest of a refused request) is
    // not an error: the answer is what counts.
    match read {
        Err(e) if !answer.contains(&b'\n') => return Err(io_err(e)),
        _ => {}
    }
    let text = String::from_utf8_lossy(&answer);
    let text = text.lines().next().unwrap_or("").trim_end();
    if let Some(rest) = text.strip_prefix("ok: ") {
        Ok(Response {
            ok: true,
            text: rest.into(),
        })
    } else if let Some(rest) = text.strip_prefix("error: ") {
        Ok(Response {
            ok: false,
            text: rest.into(),
        })
    } else {
        Err(ClientError::BadAnswer(path.into(), text.into()))
    }
}

/// The socket a site's config names (`control.socket`, or the default), read without
/// validating the rest, so that `reload` can be asked for while the file is being edited.
pub fn socket_of(config: &Path) -> Result<PathBuf, crate::config::ConfigError> {
    let text =
        std::fs::read_to_string(config).map_err(|source| crate::config::ConfigError::Read {
            path: config.into(),
            source,
        })?;
    let socket = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("control")?.get("socket")?.as_str().map(PathBuf::from));
    Ok(socket.unwrap_or_else(|| crate::config::ControlConfig::default().socket))
}
