//! The few TraCI commands the closed-loop benchmark needs, over SUMO's TCP protocol.
//!
//! A message is a 4-byte big-endian total length followed by commands; a command is a length
//! (one byte, or a zero byte and 4 bytes when longer than 255), an identifier and its content.
//! SUMO answers every command with a status (same framing: identifier, result byte, message)
//! and, for a "get", a response command carrying the value. Commands are queued in a
//! [`Batch`] and sent in one message, so one simulation step costs one round trip.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CMD_GETVERSION: u8 = 0x00;
const CMD_SIMSTEP: u8 = 0x02;
const CMD_CLOSE: u8 = 0x7f;
/// Lane-area detector (E2) variables.
pub const GET_LANEAREA: u8 = 0xad;
/// Edge variables.
pub const GET_EDGE: u8 = 0xaa;
/// Person variables.
pub const GET_PERSON: u8 = 0xae;
/// Simulation variables.
pub const GET_SIM: u8 = 0xab;
const SET_TL: u8 = 0xc2;
/// Vehicles on a detector in the last step (integer).
pub const LAST_STEP_VEHICLE_NUMBER: u8 = 0x10;
/// Persons on an edge in the last step (string list).
pub const LAST_STEP_PERSON_ID_LIST: u8 = 0x1a;
/// A person's next edge (string).
pub const VAR_NEXT_EDGE: u8 = 0xc1;
/// Vehicles involved in a collision in the last step (integer).
pub const VAR_COLLIDING_VEHICLES_NUMBER: u8 = 0x80;
const TL_RED_YELLOW_GREEN_STATE: u8 = 0x20;
const TYPE_INTEGER: u8 = 0x09;
const TYPE_STRING: u8 = 0x0c;
const TYPE_STRINGLIST: u8 = 0x0e;
const RTYPE_OK: u8 = 0x00;
/// The oldest TraCI API this client speaks (SUMO 1.15 reports 20).
pub const MIN_API_VERSION: i32 = 20;
/// Longest answer accepted, so a corrupt length cannot make us allocate without bound.
const MAX_MESSAGE: usize = 16 << 20;

/// What went wrong talking to SUMO.
#[derive(Debug, thiserror::Error)]
pub enum TraciError {
    /// SUMO did not accept a connection in time.
    #[error("traci: no SUMO listening on {addr} after {waited:?}: {source}")]
    Connect {
        /// Where we tried.
        addr: SocketAddr,
        /// How long we kept trying.
        waited: Duration,
        /// The last connect error.
        source: io::Error,
    },
    /// Reading or writing the socket failed (SUMO exited, or timed out).
    #[error("traci: {what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The socket error.
        source: io::Error,
    },
    /// SUMO answered a command with an error status.
    #[error("traci: SUMO refused command 0x{command:02x}: {message}")]
    Refused {
        /// The command identifier.
        command: u8,
        /// SUMO's message.
        message: String,
    },
    /// The answer did not have the expected shape.
    #[error("traci: malformed answer: {0}")]
    Malformed(String),
    /// SUMO speaks an older TraCI.
    #[error("traci: SUMO reports API version {found} ({name}); need {MIN_API_VERSION} or later")]
    Version {
        /// The API version SUMO reported.
        found: i32,
        /// SUMO's version string.
        name: String,
    },
}

/// A connection to one SUMO instance started with `--remote-port`.
#[derive(Debug)]
pub struct Traci {
    stream: TcpStream,
    /// Reused for every answer.
    answer: Vec<u8>,
}

/// A value returned by a "get" command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(i32),
    /// A string.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

impl Value {
    /// The integer, or an error naming `what`.
    pub fn int(&self, what: &str) -> Result<i32, TraciError> {
        match self {
            Value::Int(v) => Ok(*v),
            other => Err(TraciError::Malformed(format!(
                "{what}: expected an integer, got {other:?}"
            ))),
        }
    }
}

/// Commands to send together in one message.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// Per command: its identifier and whether a value follows the status.
    commands: Vec<(u8, bool)>,
}

impl Batch {
    /// Forgets queued commands, keeping the buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.commands.clear();
    }

    /// Sets traffic light `tls` to `state` (one of `rRyYgGoOus` per link); SUMO switches it to
    /// its "online" program, which holds the state until the next call.
    pub fn set_tl_state(&mut self, tls: &str, state: &str) {
        let start = self.begin(SET_TL);
        self.buf.push(TL_RED_YELLOW_GREEN_STATE);
        put_string(&mut self.buf, tls);
        self.buf.push(TYPE_STRING);
        put_string(&mut self.buf, state);
        self.end(start, SET_TL, false);
    }

    /// Advances the simulation by one step. Put it last: SUMO answers the commands after a
    /// step in the same message before the step's own status.
    pub fn step(&mut self) {
        let start = self.begin(CMD_SIMSTEP);
        self.buf.extend_from_slice(&0f64.to_be_bytes());
        self.end(start, CMD_SIMSTEP, true);
    }

    /// Reads variable `var` of object `id` in domain `domain` (a `GET_*` constant).
    pub fn get(&mut self, domain: u8, var: u8, id: &str) {
        let start = self.begin(domain);
        self.buf.push(var);
        put_string(&mut self.buf, id);
        self.end(start, domain, true);
    }

    /// Reserves the 6-byte long form of the length, filled in by [`Batch::end`].
    fn begin(&mut self, command: u8) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0, 0, command]);
        start
    }

    fn end(&mut self, start: usize, command: u8, has_value: bool) {
        let len = self.buf.len() - start;
        if len - 4 <= 255 {
            // The short form: drop the 4 reserved bytes.
            self.buf.drain(start..start + 4);
            self.buf[start] = (len - 4) as u8;
        } else {
            self.buf[start + 1..start + 5].copy_from_slice(&(len as i32).to_be_bytes());
        }
        self.commands.push((command, has_value));
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

impl Traci {
    /// Connects to SUMO on `addr`, retrying while it starts up (for at most `wait`), and
    /// checks its API version. Answers slower than `io_timeout` fail.
    pub fn connect(
        addr: SocketAddr,
        wait: Duration,
        io_timeout: Duration,
    ) -> Result<Traci, TraciError> {
        let began = Instant::now();
        let stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(source) if began.elapsed() >= wait => {
                    return Err(TraciError::Connect {
                        addr,
                        waited: began.elapsed(),
                        source,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let io = |source| TraciError::Io {
            what: "configuring the socket",
            source,
        };
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(io_timeout)).map_err(io)?;
        stream.set_write_timeout(Some(io_timeout)).map_err(io)?;
        let mut traci = Traci {
            stream,
            answer: Vec::with_capacity(4096),
        };
        traci.check_version()?;
        Ok(traci)
    }

    fn check_version(&mut self) -> Result<(), TraciError> {
        self.send_raw(&[2, CMD_GETVERSION])?;
        let mut r = Reader::new(&self.answer);
        r.status(CMD_GETVERSION)?;
        r.length()?;
        r.expect_id(CMD_GETVERSION)?;
        let found = r.i32()?;
        let name = r.string()?;
        if found < MIN_API_VERSION {
            return Err(TraciError::Version { found, name });
        }
        Ok(())
    }

    /// Sends `batch` and fills `values` with one entry per "get" in it, in order.
    pub fn send(&mut self, batch: &Batch, values: &mut Vec<Value>) -> Result<(), TraciError> {
        values.clear();
        self.send_raw(&batch.buf)?;
        let mut r = Reader::new(&self.answer);
        for &(command, has_value) in &batch.commands {
            r.status(command)?;
            if !has_value {
                continue;
            }
            if command == CMD_SIMSTEP {
                let subscriptions = r.i32()?;
                if subscriptions != 0 {
                    return Err(TraciError::Malformed(format!(
                        "{subscriptions} subscription results, but none were made"
                    )));
                }
                continue;
            }
            r.length()?;
            r.expect_id(command + 0x10)?;
            let _var = r.u8()?;
            let _id = r.string()?;
            values.push(r.value()?);
        }
        if r.remaining() != 0 {
            return Err(TraciError::Malformed(format!(
                "{} bytes left over after the last answer",
                r.remaining()
            )));
        }
        Ok(())
    }

    /// Ends the session; SUMO then writes its outputs and exits.
    pub fn close(mut self) -> Result<(), TraciError> {
        self.send_raw(&[2, CMD_CLOSE])?;
        Reader::new(&self.answer).status(CMD_CLOSE)
    }

    /// Writes one message (the length prefix added here) and reads the whole answer.
    fn send_raw(&mut self, commands: &[u8]) -> Result<(), TraciError> {
        let total = (commands.len() + 4) as u32;
        let write = |source| TraciError::Io {
            what: "sending to SUMO",
            source,
        };
        self.stream
            .write_all(&total.to_be_bytes())
            .and_then(|()| self.stream.write_all(commands))
            .map_err(write)?;
        let read = |source| TraciError::Io {
            what: "reading SUMO's answer",
            source,
        };
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(read)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(TraciError::Malformed(format!("message length {len}")));
        }
        self.answer.resize(len - 4, 0);
        self.stream.read_exact(&mut self.answer).map_err(read)
    }
}

/// Reads SUMO's answers; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TraciError> {
        if self.remaining() < n {
            return Err(TraciError::Malformed(format!(
                "answer ends at byte {} of {}; {n} more needed",
                self.buf.len(),
                self.pos + n
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, TraciError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, TraciError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, TraciError> {
        let len = self.i32()?;
        let len = usize::try_from(len)
            .map_err(|_| TraciError::Malformed(format!("string length {len}")))?;
        let bytes = self.take(len)?;
        // SUMO sends Latin-1: every byte maps to the code point of the same value.
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    }

    /// A command length: one byte, or zero and a 4-byte length.
    fn length(&mut self) -> Result<(), TraciError> {
        if self.u8()? == 0 {
            self.i32()?;
        }
        Ok(())
    }

    fn expect_id(&mut self, id: u8) -> Result<(), TraciError> {
        let got = self.u8()?;
        if got != id {
            return Err(TraciError::Malformed(format!(
                "answer 0x{got:02x} where 0x{id:02x} was expected"
            )));
        }
        Ok(())
    }

    /// A status: length, command identifier, result and message.
    fn status(&mut self, command: u8) -> Result<(), TraciError> {
        self.length()?;
        self.expect_id(command)?;
        let result = self.u8()?;
        let message = self.string()?;
        if result != RTYPE_OK {
            return Err(TraciError::Refused { command, message });
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value, TraciError> {
        match self.u8()? {
            TYPE_INTEGER => Ok(Value::Int(self.i32()?)),
            TYPE_STRING => Ok(Value::Str(self.string()?)),
            TYPE_STRINGLIST => {
                let n = self.i32()?;
                let n = usize::try_from(n)
                    .map_err(|_| TraciError::Malformed(format!("list length {n}")))?;
                // Each entry takes at least 4 bytes: bound the capacity by what was received.
                let mut list = Vec::with_capacity(n.min(self.remaining() / 4));
                for _ in 0..n {
                    list.push(self.string()?);
                }
                Ok(Value::List(list))
            }
            other => Err(TraciError::Malformed(format!("value type 0x{other:02x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_commands_are_framed() {
        let mut b = Batch::default();
        b.set_tl_state("C", "GrG");
        // len, id, var, "C", type, "GrG"
        assert_eq!(b.buf[0] as usize, b.buf.len());
        assert_eq!(&b.buf[1..3], &[SET_TL, TL_RED_YELLOW_GREEN_STATE]);
        b.clear();
        let long = "r".repeat(300);
        b.set_tl_state("C", &long);
        assert_eq!(b.buf[0], 0);
        let len = i32::from_be_bytes([b.buf[1], b.buf[2], b.buf[3], b.buf[4]]) as usize;
        assert_eq!(len, b.buf.len());
        assert_eq!(b.buf[5], SET_TL);
    }

    #[test]
    fn refused_status_names_the_message() {
        let mut ans = vec![0, CMD_SIMSTEP, 0xff];
        ans.extend_from_slice(&4i32.to_be_bytes());
        ans.extend_from_slice(b"oops");
        ans[0] = ans.len() as u8;
        let err = Reader::new(&ans).status(CMD_SIMSTEP).unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
    }

    #[test]
    fn truncated_answer_is_an_error_not_a_panic() {
        let ans = [TYPE_STRINGLIST, 0, 0, 0, 9, 0, 0];
        let err = Reader::new(&ans).value().unwrap_err();
        assert!(matches!(err, TraciError::Malformed(_)), "{err}");
    }
}
