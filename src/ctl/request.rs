//! The control socket's line protocol. A client sends one line (at most [`MAX_REQUEST`]
//! bytes with its newline) and reads one line back: `ok: ...` or `error: ...`.
//!
//! | request | what it does |
//! |---|---|
//! | `status` | what the lamps show, maintenance flash, the latched fault |
//! | `flash on` / `flash off` | maintenance flash, entered and left through clearance |
//! | `reset-fault` | clears a latched fault, only if the monitor no longer sees it |
//! | `reload` | validates the config file, then restarts in order to apply it |

use std::fmt;

/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 128;

/// One parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Report the signal state.
    Status,
    /// Maintenance flash on (`true`) or off.
    Flash(bool),
    /// Clear a latched fault (in the running controller and in `control.fault_file`).
    ResetFault,
    /// Validate the config file and restart to apply it.
    Reload,
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty request; send one of: {USAGE}")]
    Empty,
    /// Longer than [`MAX_REQUEST`] bytes.
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Not UTF-8 text.
    #[error("request is not text")]
    NotText,
    /// The first word names no command.
    #[error("unknown command `{0}`; send one of: {USAGE}")]
    Unknown(Word),
    /// A command with missing, extra or wrong words after it.
    #[error("`{command}` takes {expected}")]
    Arguments {
        /// The command.
        command: &'static str,
        /// What it takes.
        expected: &'static str,
    },
}

/// What the server accepts, for error messages.
pub const USAGE: &str = "status, flash on, flash off, reset-fault, reload";

/// A word quoted in an error, cut to a few characters so the answer stays one short line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(heapless::String<24>);

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Word {
    fn of(text: &str) -> Word {
        let mut out = heapless::String::new();
        for c in text.chars().filter(|c| !c.is_control()) {
            if out.len() + c.len_utf8() > out.capacity() - 3 {
                let _ = out.push_str("...");
                break;
            }
            let _ = out.push(c);
        }
        Word(out)
    }
}

impl Request {
    /// Parses one request line (the trailing newline optional, surrounding space ignored).
    pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
        if line.len() > MAX_REQUEST {
            return Err(ParseError::TooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
        let mut words = text.split_ascii_whitespace();
        let Some(command) = words.next() else {
            return Err(ParseError::Empty);
        };
        let (first, second) = (words.next(), words.next());
        let no_args = |request, command| match first {
            None => Ok(request),
            Some(_) => Err(ParseError::Arguments {
                command,
                expected: "no arguments",
            }),
        };
        match command {
            "status" => no_args(Request::Status, "status"),
            "reset-fault" => no_args(Request::ResetFault, "reset-fault"),
            "reload" => no_args(Request::Reload, "reload"),
            "flash" => match (first, second) {
                (Some("on"), None) => Ok(Request::Flash(true)),
                (Some("off"), None) => Ok(Request::Flash(false)),
                _ => Err(ParseError::Arguments {
                    command: "flash",
                    expected: "`on` or `off`",
                }),
            },
            other => Err(ParseError::Unknown(Word::of(other))),
        }
    }

    /// The request as its line, without the newline.
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Flash(true) => "flash on",
            Request::Flash(false) => "flash off",
            Request::ResetFault => "reset-fault",
            Request::Reload => "reload",
        }
    }

    /// True for requests that change what the signals do (logged at warn level).
    pub fn changes_signals(self) -> bool {
        !matches!(self, Request::Status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_round_trips() {
        for r in [
            Request::Status,
            Request::Flash(true),
            Request::Flash(false),
            Request::ResetFault,
            Request::Reload,
        ] {
            assert_eq!(Request::parse(r.as_str().as_bytes()), Ok(r));
            let line = format!("  {}\r\n", r.as_str().replace(' ', "\t "));
            assert_eq!(Request::parse(line.as_bytes()), Ok(r), "{line:?}");
        }
    }

    #[test]
    fn refuses_bad_lines_with_a_reason() {
        assert_eq!(Request::parse(b""), Err(ParseError::Empty));
        assert_eq!(Request::parse(b" \n"), Err(ParseError::Empty));
        assert_eq!(Request::parse(b"\xff\xfe"), Err(ParseError::NotText));
        assert_eq!(
            Request::parse(&[b'a'; MAX_REQUEST + 1]),
            Err(ParseError::TooLong)
        );
        let err = Request::parse(b"flash").unwrap_err();
        assert_eq!(err.to_string(), "`flash` takes `on` or `off`");
        assert!(Request::parse(b"flash on now").is_err());
        assert!(Request::parse(b"flash ON").is_err(), "case matters");
        assert_eq!(
            Request::parse(b"reload now").unwrap_err().to_string(),
            "`reload` takes no arguments"
        );
        let err = Request::parse(b"GET / HTTP/1.1").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown command `GET`; send one of: status, flash on, flash off, reset-fault, reload"
        );
    }

    #[test]
    fn quotes_long_or_odd_words_short() {
        let err = Request::parse("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\u{7}".as_bytes());
        let Err(ParseError::Unknown(word)) = err else {
            panic!("{err:?}")
        };
        assert_eq!(word.to_string(), format!("{}...", "x".repeat(21)));
        let Err(ParseError::Unknown(word)) = Request::parse("ééééééééééééééééé".as_bytes())
        else {
            panic!()
        };
        assert!(word.to_string().ends_with("..."), "{word}");
    }
}
