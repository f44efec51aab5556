//! MQTT end to end: a real `mosquitto` on a free loopback port, the real `edgewatch` binary on
//! the demo site publishing to it, and a real client (rumqttc) subscribed to every topic.
//! Kills the broker and checks that the unit keeps running, holds exactly its queue bound and
//! counts every message it had to drop; restarts the broker and checks that publishing resumes
//! and that every message the broker acknowledged reached the subscriber. Killing the unit
//! makes the broker publish its last will.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// The unit's queue bound in this test.
const CAPACITY: u64 = 16;
/// Patience for anything to happen (a bound on waiting, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(90);

/// A mosquitto broker on `port` with persistence in `dir` (the subscriber's session and its
/// queued messages survive a broker restart, as on a fleet broker).
struct Broker {
    child: Child,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Broker {
        Broker::with_config(dir, port, "")
    }

    /// A broker with `extra` lines of mosquitto configuration (more listeners, each with its
    /// own settings).
    fn with_config(dir: &Path, port: u16, extra: &str) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: as root, stay root (the default drops to the `mosquitto` user,
                // which cannot read this test's temp folder); no effect as another user.
                "user root\nper_listener_settings true\npersistence true\n\
                 persistence_location {}/\nlog_dest stderr\n\
                 listener {port} 127.0.0.1\nallow_anonymous true\n{extra}",
                dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto is installed (scripts/setup.sh installs it)");
        let mut broker = Broker { child };
        wait_for("the broker to listen", || {
            if let Ok(Some(status)) = broker.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                panic!("mosquitto exited ({status}):\n{log}");
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        broker
    }

    /// SIGTERM, so mosquitto saves its persistence file, then waits for it to exit.
    fn stop(mut self) {
        signal(&self.child, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One message as the subscriber got it.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: String,
    /// Set only on retained messages replayed at subscription time.
    retain: bool,
}

/// A subscriber with a persistent session (QoS 1, clean session off) on `prefix/#`.
struct Subscriber {
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Subscriber {
    fn start(port: u16, prefix: &str) -> Subscriber {
        Subscriber::start_as("edgewatch-test-subscriber", false, port, prefix)
    }

    /// A subscriber with its own client id; with a clean session it subscribes afresh and
    /// gets the retained messages.
    fn start_as(id: &str, clean: bool, port: u16, prefix: &str) -> Subscriber {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(clean);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(opts, 16);
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let filter = format!("{prefix}/#");
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match connection.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                        if !ack.session_present {
                            client
                                .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        g.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                        });
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Subscriber { got, stop }
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn on(&self, topic: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Unit {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_unit(dir: &Path, port: u16) -> Unit {
    start_unit_with(dir, port, "", |_| {})
}

/// The demo with `[mqtt]` on `port` plus `extra` keys; `on_log` sees every stderr line.
fn start_unit_with(
    dir: &Path,
    port: u16,
    extra: &str,
    on_log: impl Fn(&str) + Send + 'static,
) -> Unit {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/demo.toml")).unwrap();
    let path: PathBuf = dir.join("site.toml");
    std::fs::write(
        &path,
        format!(
            "{demo}\n[health]\nbind = \"127.0.0.1:0\"\n\n[mqtt]\nenabled = true\n\
             host = \"127.0.0.1\"\nport = {port}\nstats_interval_s = 1\n\
             queue_capacity = {CAPACITY}\nreconnect_min_ms = 100\nreconnect_max_ms = 400\n{extra}"
        ),
    )
    .unwrap();
    let (child, addr) = util::spawn_unit(&path, on_log);
    Unit { child, addr }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

fn health(addr: SocketAddr) -> Value {
    serde_json::from_str(&get(addr, "/health")).unwrap()
}

fn mqtt(h: &Value) -> (bool, [u64; 6]) {
    let m = &h["mqtt"];
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("mqtt.{k} in {h}"));
    (
        m["connected"].as_bool().unwrap(),
        [
            n("enqueued"),
            n("published"),
            n("dropped"),
            n("queued"),
            n("in_flight"),
            n("reconnects"),
        ],
    )
}

#[test]
fn publishes_every_topic_survives_a_broker_outage_and_leaves_a_last_will() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Broker::start(dir.path(), port);
    let prefix = "edgewatch/demo";
    let sub = Subscriber::start(port, prefix);
    wait_for("the subscriber to subscribe", || {
        // Its subscription is in place once a probe message comes back.
        let probe = MqttOptions::new("edgewatch-test-probe", "127.0.0.1", port);
        let (c, mut conn) = Client::new(probe, 4);
        c.publish(format!("{prefix}/probe"), QoS::AtLeastOnce, false, "x")
            .unwrap();
        for _ in 0..20 {
            if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                conn.recv_timeout(Duration::from_millis(100))
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        !sub.on(&format!("{prefix}/probe")).is_empty()
    });
    let probes = sub.all().len();

    let unit = start_unit(dir.path(), port);
    let classes = ["car", "truck", "bus", "motorcycle", "bicycle", "person"];
    let topics: Vec<String> = ["available", "lines/gantry/crossing", "stats"]
        .iter()
        .map(|t| t.to_string())
        .chain(["traffic", "walkers", "bus-coming"].map(|g| format!("signals/{g}")))
        .chain(
            classes
                .iter()
                .flat_map(|c| ["road", "crossing"].map(|z| format!("zones/{z}/{c}"))),
        )
        .map(|t| format!("{prefix}/{t}"))
        .collect();
    wait_for("a message on every topic", || {
        topics.iter().all(|t| !sub.on(t).is_empty())
    });

    // What each topic says.
    assert_eq!(sub.on(&format!("{prefix}/available"))[0].payload, "online");
    // Every indication a group can show (GroupState::as_str), but never `invalid`.
    let shown = [
        "red",
        "amber",
        "green",
        "red-flash",
        "amber-flash",
        "walk",
        "ped-clearance",
        "dont-walk",
        "bus-go",
        "bus-stop",
        "on",
        "dark",
    ];
    for group in ["traffic", "walkers", "bus-coming"] {
        for m in sub.on(&format!("{prefix}/signals/{group}")) {
            assert!(shown.contains(&m.payload.as_str()), "{m:?}");
        }
    }
    for t in topics.iter().filter(|t| t.contains("/zones/")) {
        for m in sub.on(t) {
            m.payload.parse::<u32>().unwrap_or_else(|_| panic!("{m:?}"));
        }
    }
    let crossing: Value =
        serde_json::from_str(&sub.on(&format!("{prefix}/lines/gantry/crossing"))[0].payload)
            .unwrap();
    assert_eq!(crossing["line"], "gantry");
    assert!(
        classes.contains(&crossing["class"].as_str().unwrap()),
        "{crossing}"
    );
    assert!(["in", "out"].contains(&crossing["direction"].as_str().unwrap()));
    assert!(crossing["count"].as_u64().unwrap() >= 1);
    assert!(crossing["total"].as_u64().unwrap() >= crossing["count"].as_u64().unwrap());
    assert!(
        crossing["time"].as_str().unwrap().ends_with('Z'),
        "{crossing}"
    );
    let stats: Value =
        serde_json::from_str(&sub.on(&format!("{prefix}/stats"))[0].payload).unwrap();
    assert!(stats["zones"]["road"]["car"].is_number(), "{stats}");
    assert_eq!(stats["version"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(stats["version"]["git"].is_string() && stats["version"]["backend"].is_string());
    let metrics = get(unit.addr, "/metrics");
    for name in [
        "mqtt_published_total",
        "mqtt_dropped_total",
        "mqtt_reconnects_total",
    ] {
        assert!(
            metrics.contains(&format!("edgewatch_{name} ")),
            "{name} in {metrics}"
        );
    }
    assert!(
        metrics.contains("edgewatch_build_info{version="),
        "{metrics}"
    );
    let (connected, _) = mqtt(&health(unit.addr));
    assert!(connected);

    // The broker goes away.
    broker.stop();
    let before = loop {
        let h = health(unit.addr);
        if !mqtt(&h).0 {
            break h;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let [enq0, pub0, drop0, q0, inflight0, _] = mqtt(&before).1;
    assert_eq!(
        inflight0, 0,
        "losses are counted before `connected` clears: {before}"
    );
    assert_eq!(enq0, pub0 + drop0 + q0, "{before}");
    // Wait until the queue has overflowed by a few messages.
    let during = loop {
        let h = health(unit.addr);
        let (connected, [_, _, dropped, ..]) = mqtt(&h);
        assert!(!connected, "no broker, yet connected: {h}");
        if dropped >= drop0 + 3 && dropped > drop0 + (CAPACITY - q0.min(CAPACITY)) {
            break h;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let [enq1, pub1, drop1, q1, inflight1, _] = mqtt(&during).1;
    assert_eq!(q1, CAPACITY, "the queue holds exactly its bound: {during}");
    assert_eq!((pub1, inflight1), (pub0, 0), "{during}");
    // Every message offered during the outage is queued or counted dropped, nothing else.
    assert_eq!(drop1 - drop0, (enq1 - enq0) + q0 - CAPACITY, "{during}");
    // The unit kept running its frames.
    assert!(unit.child.id() > 0);
    let frames0 = before["frames"].as_u64().unwrap();
    wait_for("frames during the outage", || {
        health(unit.addr)["frames"].as_u64().unwrap() > frames0 + 10
    });

    // The broker comes back: publishing resumes, the backlog goes out first.
    let stats_before = sub.on(&format!("{prefix}/stats")).len();
    let broker = Broker::start(dir.path(), port);
    wait_for("the unit to reconnect and publish its backlog", || {
        let (connected, [_, published, _, _, _, reconnects]) = mqtt(&health(unit.addr));
        connected && reconnects >= 1 && published >= pub1 + CAPACITY
    });
    wait_for("new stats after the outage", || {
        sub.on(&format!("{prefix}/stats")).len() > stats_before
    });
    let online = sub.on(&format!("{prefix}/available"));
    assert!(
        online.iter().filter(|m| m.payload == "online").count() >= 2,
        "{online:?}"
    );

    // Nothing the broker acknowledged was lost on the way to the subscriber: count what it
    // got live (not replayed retained messages, not the probe) against `published`.
    let (_, [_, published, ..]) = mqtt(&health(unit.addr));
    wait_for("every acknowledged message at the subscriber", || {
        let live = sub.all().iter().filter(|m| !m.retain).count();
        live - probes >= published as usize
    });

    // Killed without a goodbye: the broker publishes the last will.
    signal(&unit.child, libc::SIGKILL);
    wait_for("the last will", || {
        sub.on(&format!("{prefix}/available"))
            .last()
            .is_some_and(|m| m.payload == "offline")
    });
    drop(unit);
    drop(broker);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA `name`.crt/.key in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

#[test]
fn publishes_over_tls_to_a_broker_with_a_private_ca_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other-ca");
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    let (plain, tls) = (free_port(), free_port());
    let _broker = Broker::with_config(
        d,
        plain,
        &format!(
            "listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {0}/ca.crt\n\
             certfile {0}/server.crt\n\
             keyfile {0}/server.key\n",
            d.display()
        ),
    );
    let prefix = "edgewatch/demo";
    let sub = Subscriber::start(plain, prefix);
    wait_for("the TLS listener", || {
        TcpStream::connect(("127.0.0.1", tls)).is_ok()
    });

    // Trusting another CA: the unit refuses the broker's certificate and says so.
    let refused = Arc::new(AtomicBool::new(false));
    let seen = refused.clone();
    let unit = start_unit_with(
        d,
        tls,
        &format!("tls = true\nca_file = \"{}/other-ca.crt\"\n", d.display()),
        move |line| {
            if line.contains("mqtt:") && line.to_lowercase().contains("certificate") {
                seen.store(true, Ordering::Relaxed);
            }
        },
    );
    wait_for("the certificate to be refused", || {
        refused.load(Ordering::Relaxed)
    });
    let (connected, [.., reconnects]) = mqtt(&health(unit.addr));
    assert!(!connected && reconnects == 0);
    drop(unit);
    assert!(sub.on(&format!("{prefix}/available")).is_empty());

    // Trusting the broker's CA: it publishes over TLS.
    let unit = start_unit_with(
        d,
        tls,
        &format!("tls = true\nca_file = \"{}/ca.crt\"\n", d.display()),
        |_| {},
    );
    wait_for("online and stats over TLS", || {
        sub.on(&format!("{prefix}/available"))
            .iter()
            .any(|m| m.payload == "online")
            && !sub.on(&format!("{prefix}/stats")).is_empty()
    });
    assert!(mqtt(&health(unit.addr)).0);
}

/// A TCP proxy to `upstream` that holds every chunk the broker sends for `delay`, as a distant
/// broker would: each round trip of the connection handshake takes that long.
fn slow_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(c, server, Duration::ZERO));
            std::thread::spawn(move || pipe(s, client, delay));
        }
    });
    port
}

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        std::thread::sleep(delay);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

#[test]
fn connects_to_a_broker_whose_answers_take_longer_than_the_link_poll() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port);
    let proxy = slow_proxy(port, Duration::from_millis(300));
    let unit = start_unit(dir.path(), proxy);
    wait_for("a connection through the slow link", || {
        let (connected, [_, published, ..]) = mqtt(&health(unit.addr));
        connected && published > 0
    });
}

#[test]
fn a_password_broker_refuses_a_wrong_one_and_a_clean_stop_publishes_red_then_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let passwords = d.join("passwords");
    let out = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwords)
        .args(["unit", "s3cret"])
        .output()
        .expect("mosquitto_passwd is installed (with mosquitto)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (open, guarded) = (free_port(), free_port());
    // The subscriber uses the open listener; the unit the one that wants a password.
    let _broker = Broker::with_config(
        d,
        open,
        &format!(
            "listener {guarded} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    );
    let prefix = "edgewatch/demo";
    let sub = Subscriber::start(open, prefix);

    let refused = Arc::new(AtomicBool::new(false));
    let seen = refused.clone();
    let unit = start_unit_with(
        d,
        guarded,
        "username = \"unit\"\npassword = \"wrong\"\n",
        move |line| {
            if line.contains("mqtt:") && line.contains("refused") {
                seen.store(true, Ordering::Relaxed);
            }
        },
    );
    wait_for("the wrong password to be refused", || {
        refused.load(Ordering::Relaxed)
    });
    assert!(!mqtt(&health(unit.addr)).0);
    drop(unit);

    let unit = start_unit_with(
        d,
        guarded,
        "username = \"unit\"\npassword = \"s3cret\"\n",
        |_| {},
    );
    wait_for("online with the right password", || {
        sub.on(&format!("{prefix}/available"))
            .iter()
            .any(|m| m.payload == "online")
    });
    assert!(mqtt(&health(unit.addr)).0);

    // A clean stop once the traffic heads are green: they clear to red, that is published,
    // then `offline`.
    wait_for("a green", || {
        sub.on(&format!("{prefix}/signals/traffic"))
            .last()
            .is_some_and(|m| m.payload == "green")
    });
    let mut unit = unit;
    signal(&unit.child, libc::SIGTERM);
    assert!(unit.child.wait().unwrap().success());
    wait_for("offline after a clean stop", || {
        sub.on(&format!("{prefix}/available"))
            .last()
            .is_some_and(|m| m.payload == "offline")
    });
    let all = sub.all();
    let offline = all
        .iter()
        .rposition(|m| m.topic == format!("{prefix}/available"))
        .unwrap();
    let last_traffic = all[..offline]
        .iter()
        .rev()
        .find(|m| m.topic == format!("{prefix}/signals/traffic"))
        .unwrap();
    assert_eq!(last_traffic.payload, "red", "{all:?}");
}

/// Issue 14: each detector output's status goes out in NTCIP 1202 terms, retained, on
/// `detectors/<output>` (and `/health` says the same).
#[test]
fn detector_outputs_are_published_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Broker::start(dir.path(), port);
    let prefix = "edgewatch/demo";
    let sub = Subscriber::start(port, prefix);
    let unit = start_unit_with(
        dir.path(),
        port,
        "\n[[detector_outputs]]\nname = \"road-call\"\npin = 24\nzones = [\"road\"]\n",
        |_| {},
    );
    let topic = format!("{prefix}/detectors/road-call");
    wait_for("the detector output's topic", || !sub.on(&topic).is_empty());
    for m in sub.on(&topic) {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        assert!(v["call"].is_boolean(), "{v}");
        assert!(
            v["fail_safe"].is_null() || v["fail_safe"].is_string(),
            "{v}"
        );
        assert!(v["volume"].is_u64(), "{v}");
        let occupancy = v["occupancy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&occupancy), "{v}");
    }
    // Retained: a subscriber that comes later gets the status at once.
    let late = Subscriber::start_as("edgewatch-test-late", true, port, prefix);
    wait_for("the retained status", || {
        late.on(&topic).iter().any(|m| m.retain)
    });
    let health = health(unit.addr);
    assert!(
        health["detector_outputs"]["road-call"]["call"].is_boolean(),
        "{health}"
    );
}
