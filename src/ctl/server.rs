//! The control socket's thread: one connection at a time, a request line of at most
//! [`MAX_REQUEST`] bytes read within [`READ_TIMEOUT`], one answer line written within
//! [`WRITE_TIMEOUT`]. The socket file is mode 0660, group `edgewatch` when that group exists,
//! and each peer's credentials are checked too (`SO_PEERCRED`): root, the socket's owner (the
//! service user) and members of its group only.

use std::fs::{self, Permissions};
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::link::{CommandLink, Outcome, SignalRequest};
use super::request::{Request, MAX_REQUEST};
use super::CtlCounters;
use crate::config::Config;
use crate::control::SignalStatus;

/// The group whose members may use the socket, when it exists.
pub const SOCKET_GROUP: &str = "edgewatch";
/// The socket file's mode: owner and group read and write, nobody else.
pub const SOCKET_MODE: u32 = 0o660;
/// How long a client has to send its whole request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing the answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the control loop has to answer (it answers on its next tick).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// After refusing a request: how long, and how many bytes, the rest of it is read and dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 64 * 1024;
/// How often the idle thread looks for a connection or the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A live server answers on the path already.
    #[error("control.socket: {0} is in use by another running process")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way; it is left alone.
    #[error("control.socket: {0} exists and is not a socket; not removing it")]
    NotSocket(PathBuf),
    /// Creating the folder, binding, or setting the mode failed.
    #[error("control.socket: cannot create {0}: {1}")]
    Create(PathBuf, io::Error),
    /// The thread could not be started.
    #[error("cannot start the control socket thread: {0}")]
    Thread(io::Error),
}

/// What the socket thread needs to answer requests.
#[derive(Debug)]
pub struct CtlContext {
    /// The control loop's mailbox; `None` on a site without signals.
    pub link: Option<Arc<CommandLink>>,
    /// What the lamps show; `None` on a site without signals.
    pub status: Option<Arc<SignalStatus>>,
    /// The config file `reload` re-reads.
    pub config_path: PathBuf,
    /// Set once a `reload` was accepted: the process restarts to apply it.
    pub reload: Arc<AtomicBool>,
    /// The process's stop flag, set with `reload`.
    pub stop: Arc<AtomicBool>,
    /// Requests served, refused and malformed.
    pub counters: Arc<CtlCounters>,
}

/// The running control socket. Stopping it (or dropping it) removes the socket file.
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    /// The socket file's device and inode: only this file is removed at the end.
    file: (u64, u64),
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Who may connect: the socket file's owner and group.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl CtlServer {
    /// Binds `path` (removing a stale socket file left by a process that died), sets its
    /// mode and group and starts serving.
    pub fn start(path: &Path, ctx: CtlContext) -> Result<CtlServer, ServerError> {
        let create = |e| ServerError::Create(path.to_path_buf(), e);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(create)?;
        }
        clear_stale(path)?;
        let listener = UnixListener::bind(path).map_err(create)?;
        fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE)).map_err(create)?;
        if let Some(gid) = group_id(SOCKET_GROUP) {
            if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
                log::warn!(
                    "control socket {}: cannot give it to group `{SOCKET_GROUP}`: {e}",
                    path.display()
                );
            }
        }
        let meta = fs::metadata(path).map_err(create)?;
        let owner = Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        };
        listener.set_nonblocking(true).map_err(create)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("ctl".into())
            .spawn(move || accept_loop(&listener, &ctx, owner, &thread_stop))
            .map_err(ServerError::Thread)?;
        Ok(CtlServer {
            path: path.to_path_buf(),
            file: (meta.dev(), meta.ino()),
            stop,
            handle: Some(handle),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving (after the request in hand, within a few seconds) and removes the file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("the control socket thread panicked");
            }
        }
        // Only our own file: a newer process may have bound the path since.
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                log::warn!("control socket {}: cannot remove: {e}", self.path.display());
            }
        }
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.shutdown();
        }
    }
}

/// Removes a socket file nobody answers on; refuses a live one or a file of another kind.
fn clear_stale(path: &Path) -> Result<(), ServerError> {
    let create = |e| ServerError::Create(path.to_path_buf(), e);
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(create(e)),
        Ok(m) if !m.file_type().is_socket() => Err(ServerError::NotSocket(path.to_path_buf())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(ServerError::InUse(path.to_path_buf())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                log::warn!(
                    "control socket {}: removing the stale file of a process that is gone",
                    path.display()
                );
                fs::remove_file(path).map_err(create)
            }
            Err(e) => Err(create(e)),
        },
    }
}

/// The id of group `name` from `/etc/group` (a system group, as the package creates it).
fn group_id(name: &str) -> Option<u32> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

fn accept_loop(listener: &UnixListener, ctx: &CtlContext, owner: Owner, stop: &AtomicBool) {
    let mut errors = 0u64;
    while !stop.load(SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve(stream, ctx, owner),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                errors += 1;
                if errors.is_power_of_two() {
                    log::warn!("control socket: accept failed ({errors} times so far): {e}");
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// The peer's process id, user and group (`SO_PEERCRED`, taken by the kernel at connect).
fn peer_cred(stream: &UnixStream) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is open for the call (borrowed from `stream`); `cred` is a writable
    // `ucred` and `len` its size, so the kernel writes within it.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

/// True when process `pid` has `gid` among its supplementary groups (`/proc/PID/status`).
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
}

/// Root, the socket's owner and members of its group pass (their credentials are returned);
/// anyone else is told why not.
fn check_peer(stream: &UnixStream, owner: Owner) -> Result<libc::ucred, String> {
    let cred = peer_cred(stream).map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    let allowed = cred.uid == 0
        || cred.uid == owner.uid
        || cred.gid == owner.gid
        || in_group(cred.pid, owner.gid);
    match allowed {
        true => Ok(cred),
        false => Err(format!(
            "permission denied: uid {} is not root, uid {} or a member of gid {}",
            cred.uid, owner.uid, owner.gid
        )),
    }
}

/// Reads one request line within [`READ_TIMEOUT`]; `Ok(None)` when the peer closed without
/// sending anything (a liveness probe).
fn read_line<'a>(
    stream: &mut UnixStream,
    buf: &'a mut [u8; MAX_REQUEST + 1],
) -> io::Result<Option<&'a [u8]>> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            return Ok(Some(&buf[..end]));
        }
        if len == buf.len() {
            // Longer than the limit: the parser says so.
            return Ok(Some(&buf[..]));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) if len == 0 => return Ok(None),
            Ok(0) => return Ok(Some(&buf[..len])),
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(ErrorKind::TimedOut.into()),
            Err(e) => return Err(e),
        }
    }
}

fn serve(mut stream: UnixStream, ctx: &CtlContext, owner: Owner) {
    let ready = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = ready {
        log::warn!("control socket: {e}");
        return;
    }
    let peer = match check_peer(&stream, owner) {
        Ok(cred) => cred,
        Err(why) => {
            CtlCounters::bump(&ctx.counters.refused);
            log::warn!("control socket: refused a connection: {why}");
            answer(&mut stream, false, &why);
            return;
        }
    };
    let mut buf = [0u8; MAX_REQUEST + 1];
    let line = match read_line(&mut stream, &mut buf) {
        Ok(Some(line)) => line,
        Ok(None) => return,
        Err(e) => {
            CtlCounters::bump(&ctx.counters.malformed);
            let why = match e.kind() {
                ErrorKind::TimedOut => format!("no request line within {READ_TIMEOUT:?}"),
                _ => format!("cannot read the request: {e}"),
            };
            answer(&mut stream, false, &why);
            drain(&mut stream);
            return;
        }
    };
    let request = match Request::parse(line) {
        Ok(r) => r,
        Err(e) => {
            CtlCounters::bump(&ctx.counters.malformed);
            answer(&mut stream, false, &e.to_string());
            drain(&mut stream);
            return;
        }
    };
    CtlCounters::bump(&ctx.counters.requests);
    let (ok, text) = handle(request, ctx);
    if request.changes_signals() {
        // Who changed what, for the journal.
        log::warn!(
            "ctl: `{}` from uid {} (pid {}): {}{text}",
            request.as_str(),
            peer.uid,
            peer.pid,
            if ok { "" } else { "refused: " }
        );
    }
    answer(&mut stream, ok, &text);
}

/// Writes `ok: TEXT` or `error: TEXT` as one line; a client that does not read is dropped.
fn answer(stream: &mut UnixStream, ok: bool, text: &str) {
    let line = format!(
        "{}: {}\n",
        if ok { "ok" } else { "error" },
        text.replace(['\n', '\r'], " ")
    );
    let _ = stream.write_all(line.as_bytes());
}

/// Reads and drops what the client still sends, within [`DRAIN_TIMEOUT`] and [`DRAIN_BYTES`]:
/// closing a Unix socket with unread input resets the connection, and the client could lose
/// the answer.
fn drain(stream: &mut UnixStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut buf = [0u8; 512];
    let mut total = 0;
    while total < DRAIN_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Carries out `request`: `(true, what happened)` or `(false, why not)`.
fn handle(request: Request, ctx: &CtlContext) -> (bool, String) {
    let signal = match request {
        Request::Status => return (true, status_line(ctx.status.as_deref())),
        Request::Reload => return reload(ctx),
        Request::Flash(on) => SignalRequest::Flash(on),
        Request::ResetFault => SignalRequest::ResetFault,
    };
    let Some(link) = &ctx.link else {
        return (false, "this site has no [signals]".into());
    };
    match link.call(signal, REPLY_TIMEOUT) {
        Ok(Outcome::Done(text)) => (true, text),
        Ok(Outcome::Refused(text)) => (false, text),
        Err(e) => (false, e.to_string()),
    }
}

/// Validates the config file and, when it is valid, stops the process to restart with it;
/// an invalid file is refused and the running config stays.
fn reload(ctx: &CtlContext) -> (bool, String) {
    let path = ctx.config_path.display();
    if let Err(e) = Config::load(&ctx.config_path) {
        let mut why = format!("reload refused, the running config stays: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why.push_str(&format!(": {s}"));
            source = s.source();
        }
        return (false, why);
    }
    ctx.reload.store(true, SeqCst);
    ctx.stop.store(true, SeqCst);
    (
        true,
        format!(
            "{path} is valid; restarting to apply it (the signals clear to all red first, \
             then come up through start-up flash)"
        ),
    )
}

/// `traffic=green walkers=dont-walk maintenance=off degraded=no fault=none`.
fn status_line(status: Option<&SignalStatus>) -> String {
    use std::fmt::Write as _;
    let Some(s) = status else {
        return "no signals at this site".into();
    };
    let mut line = String::new();
    for (name, state) in s.states() {
        let _ = write!(line, "{name}={state} ");
    }
    let yes_no = |b| if b { "yes" } else { "no" };
    let _ = write!(
        line,
        "maintenance={} fault-flash={} degraded={} fault={}",
        if s.maintenance() { "on" } else { "off" },
        yes_no(s.fault_flash()),
        yes_no(s.degraded()),
        s.fault().as_deref().unwrap_or("none")
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dir: &Path) -> CtlContext {
        CtlContext {
            link: None,
            status: None,
            config_path: dir.join("missing.toml"),
            reload: Arc::default(),
            stop: Arc::default(),
            counters: Arc::default(),
        }
    }

    fn ask(path: &Path, line: &str) -> String {
        let answer = crate::ctl::client::send(path, line, Duration::from_secs(10)).unwrap();
        format!("{} {}", answer.ok, answer.text)
    }

    #[test]
    fn stale_files_are_replaced_live_ones_and_other_files_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ctl.sock");
        // A stale socket of a killed process: replaced.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        let server = CtlServer::start(&path, context(dir.path())).unwrap();
        assert_eq!(ask(&path, "status"), "true no signals at this site");
        assert_eq!(ask(&path, "flash on"), "false this site has no [signals]");
        let reload = ask(&path, "reload");
        assert!(
            reload.starts_with("false reload refused, the running config stays:")
                && reload.contains("missing.toml"),
            "{reload}"
        );
        // A live one: refused, and not taken over.
        let second = CtlServer::start(&path, context(dir.path())).unwrap_err();
        assert!(matches!(second, ServerError::InUse(_)), "{second}");
        assert_eq!(ask(&path, "status"), "true no signals at this site");
        server.stop();
        assert!(!path.exists(), "removed on stop");
        // Not a socket: left alone.
        fs::write(&path, "keep me").unwrap();
        let err = CtlServer::start(&path, context(dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "control.socket: {} exists and is not a socket; not removing it",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn finds_a_group_in_etc_group() {
        // Root's group is 0 on every Linux system.
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-edgewatch-test"), None);
    }
}
