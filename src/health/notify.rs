//! systemd's notify protocol: `READY=1` after start-up, `WATCHDOG=1` while healthy,
//! `WATCHDOG=trigger` on a breach. One datagram socket, connected once at start-up, so a
//! ping allocates nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A connected socket to systemd's notify endpoint.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    ping_interval: Duration,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); `None`
    /// when it is not set, as when running outside systemd.
    pub fn from_env() -> Option<io::Result<Notifier>> {
        let target = std::env::var_os(NOTIFY_SOCKET_ENV).filter(|v| !v.is_empty())?;
        // systemd asks for pings at least every WatchdogSec; send them twice as often.
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        let ping_interval = usec.map_or(Duration::from_secs(1), |u| Duration::from_micros(u / 2));
        Some(Self::connect(&target).map(|socket| Notifier {
            socket,
            ping_interval,
        }))
    }

    fn connect(target: &std::ffi::OsStr) -> io::Result<UnixDatagram> {
        use std::os::unix::ffi::OsStrExt;
        let socket = UnixDatagram::unbound()?;
        let bytes = target.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.connect_addr(&addr)?;
        } else {
            socket.connect(target)?;
        }
        Ok(socket)
    }

    /// Sends one notify message, e.g. `b"READY=1"`.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        self.socket.send(message).map(|_| ())
    }

    /// How often `WATCHDOG=1` should be sent.
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let socket = Notifier::connect(path.as_os_str()).unwrap();
        let n = Notifier {
            socket,
            ping_interval: Duration::from_secs(1),
        };
        n.send(b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }
}
