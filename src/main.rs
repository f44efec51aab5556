//! `edgewatch`: the command line. Thin on purpose: parse, load the config, hand over to the
//! library, and turn any error into one readable line and a non-zero exit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use edgewatch::clock::{Clock, MonotonicClock};
use edgewatch::config::Config;
use edgewatch::pipeline::PipelineError;
use edgewatch::report::Reporter;
use edgewatch::service::{Service, ServiceError};
use edgewatch::{bench, soak};

#[derive(Parser, Debug)]
#[command(
    name = "edgewatch",
    version = edgewatch::version::LONG_VERSION,
    about = "Edge vision controller: counts from a camera, safe signal outputs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline and print a summary line every interval.
    Run {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many processed frames.
        #[arg(long)]
        frames: Option<u64>,
        /// Print one JSON object per summary line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration and print it with defaults and paths resolved.
    CheckConfig {
        /// Site configuration (TOML).
        config: PathBuf,
    },
    /// Clear the persistent signal fault latch (`control.fault_file`) after the fault has been
    /// found and fixed. Restart the unit afterwards: it comes up through start-up flash. A
    /// running unit keeps its fault until then; `ctl reset-fault` clears it in the unit too.
    ResetFault {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Send a command to the running unit over its control socket (`control.socket`):
    /// `status`, `flash on`, `flash off`, `reset-fault` (clears a latched fault in the running
    /// controller and its file, if the monitor no longer sees it; a fault file the running
    /// unit does not hold is only removed) or `reload` (validates the
    /// config file, then restarts to apply it). Root, the service user and group
    /// `edgewatch` only. Exit status 1 when the unit refuses.
    Ctl {
        /// Site configuration (TOML): where the socket is (only `control.socket` is read).
        #[arg(long, short, required_unless_present = "socket")]
        config: Option<PathBuf>,
        /// The control socket, instead of reading it from the config.
        #[arg(long, conflicts_with = "config")]
        socket: Option<PathBuf>,
        /// The command and its argument, e.g. `flash on`.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Time every stage: preprocess on synthetic 640x480 frames, then the whole pipeline.
    Bench {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Frames to run through the whole pipeline.
        #[arg(long, default_value_t = 100)]
        frames: u64,
    },
    /// Run many frames as fast as possible and report resident memory along the way.
    Soak {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Frames in all.
        #[arg(long, default_value_t = 10_000)]
        frames: u64,
        /// Frame count at which the baseline RSS is taken.
        #[arg(long, default_value_t = 1_000)]
        checkpoint: u64,
    },
    /// Run a recording through the whole pipeline, in video time, and check the counts
    /// against a truth file. Exit status 0 when every expectation holds, 1 when one fails,
    /// 2 for a bad config, truth file or option.
    Eval {
        /// Site configuration (TOML); its first camera's source is replaced by the recording.
        #[arg(long, short)]
        config: PathBuf,
        /// Truth file (TOML): expected crossings, tracks and zone presence.
        #[arg(long)]
        truth: PathBuf,
        /// Y4M file, MJPEG file (.mjpeg), image folder or image.
        recording: PathBuf,
        /// Process one frame in N (emulates a slower detector on the same footage).
        #[arg(long, default_value_t = 1)]
        every: u32,
        /// The recording's frame rate (overrides the truth file and the Y4M header).
        #[arg(long)]
        fps: Option<f64>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// MOT-format ground truth (frame,id,x,y,w,h,conf,class,vis in pixels) to score the
        /// tracks: MOTA, IDF1, ID switches, FP, FN.
        #[arg(long)]
        gt: Option<PathBuf>,
    },
    /// Write one annotated frame of a camera as a JPEG: boxes, zones, lines and counts as the
    /// tracker sees them after a few frames, for drawing zones and lines at the desk.
    Snapshot {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The camera (default: the first).
        #[arg(long)]
        camera: Option<String>,
        /// Frames to run first, so tracks are confirmed.
        #[arg(long, default_value_t = 10)]
        frames: u64,
        /// The frame without annotations.
        #[arg(long)]
        raw: bool,
        /// Where to write the JPEG.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Closed-loop benchmark: edgewatch's signal controller drives SUMO over TraCI, then SUMO's
    /// own actuated controller runs the same network and demand; prints both sets of figures.
    /// Exit status 1 on conflicting greens or a collision under edgewatch.
    Sim {
        /// Benchmark site file (tools/sim/site.toml).
        #[arg(long)]
        site: PathBuf,
        /// Simulated seconds.
        #[arg(long, default_value_t = 3600.0)]
        end: f64,
        /// SUMO's random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where the network and SUMO's outputs go.
        #[arg(long, default_value = "target/sim")]
        out: PathBuf,
    },
    /// Print the site's traffic data bins (CSV, header first) from the files in `bins.dir`:
    /// rows whose bin starts at or after --from and before --to.
    Bins {
        /// Site configuration (TOML) with a `[bins]` section.
        #[arg(long, short)]
        config: PathBuf,
        /// UTC time (`2026-12-07T10:00:00Z`) or date (`2026-12-07`, from its start).
        #[arg(long)]
        from: Option<String>,
        /// UTC time (excluded) or date (included: up to the end of that day).
        #[arg(long)]
        to: Option<String>,
    },
    /// List what a V4L2 camera offers: driver, capabilities, formats, sizes and frame rates.
    Probe {
        /// The device: `/dev/videoN`, a `/dev/v4l/by-id/` path, or just the by-id name.
        device: String,
    },
}

/// Exit status for a configuration the program refuses.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a failure while starting or running.
const EXIT_RUNTIME: u8 = 1;
/// Exit status of `eval` when an expectation of the truth file does not hold.
const EXIT_FAILED_CHECK: u8 = 1;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run {
            config,
            frames,
            json,
        } => run(&config, frames, json),
        Command::ResetFault { config } => reset_fault(&config),
        Command::Ctl {
            config,
            socket,
            command,
        } => ctl(config.as_deref(), socket, &command.join(" ")),
        Command::Bench { config, frames } => {
            load(&config).and_then(|c| bench::run(&c, frames).map_err(pipeline_fail))
        }
        Command::Soak {
            config,
            frames,
            checkpoint,
        } => load(&config).and_then(|c| {
            soak::run(&c, frames, checkpoint)
                .map(|_| ())
                .map_err(pipeline_fail)
        }),
        Command::Probe { device } => probe(&device),
        Command::Sim {
            site,
            end,
            seed,
            out,
        } => sim(&site, end, seed, out),
        Command::Bins { config, from, to } => bins(&config, from.as_deref(), to.as_deref()),
        Command::Snapshot {
            config,
            camera,
            frames,
            raw,
            output,
        } => load(&config).and_then(|c| snapshot(&c, camera.as_deref(), frames, raw, &output)),
        Command::Eval {
            config,
            truth,
            recording,
            every,
            fps,
            json,
            gt,
        } => {
            let opts = edgewatch::eval::EvalOptions {
                config,
                truth,
                recording,
                every,
                fps,
                gt,
            };
            eval(&opts, json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("edgewatch: error: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

/// One line naming the error and every cause under it.
fn fail(code: u8, e: impl std::error::Error) -> Failure {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    (code, message)
}

/// A config that does not fit the model is the config's fault: exit as for a bad config.
fn pipeline_fail(e: PipelineError) -> Failure {
    let code = if matches!(e, PipelineError::Config(_)) {
        EXIT_CONFIG
    } else {
        EXIT_RUNTIME
    };
    fail(code, e)
}

fn load(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| fail(EXIT_CONFIG, e))
}

fn reset_fault(path: &Path) -> Result<(), Failure> {
    let config = load(path)?;
    let latch = edgewatch::signal::FaultLatch::new(config.control.fault_file);
    match latch.clear().map_err(|e| fail(EXIT_RUNTIME, e))? {
        Some(fault) => {
            log::warn!("signals: fault latch cleared by reset-fault (was: {fault})");
            println!(
                "cleared {}: {fault}\nrestart the unit (systemctl restart edgewatch) to leave flash; \
                 on a running unit, `edgewatch ctl --config SITE reset-fault` clears the running \
                 controller and the file at once",
                latch.path().display()
            );
        }
        None => println!("no fault latched in {}", latch.path().display()),
    }
    Ok(())
}

fn ctl(config: Option<&Path>, socket: Option<PathBuf>, line: &str) -> Result<(), Failure> {
    use edgewatch::ctl::{client, Request};
    // Refused here already, with the same message the unit would give.
    Request::parse(line.as_bytes()).map_err(|e| fail(EXIT_CONFIG, e))?;
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => client::socket_of(c).map_err(|e| fail(EXIT_CONFIG, e))?,
        (None, None) => return Err((EXIT_CONFIG, "ctl: give --config or --socket".into())),
    };
    let timeout = std::time::Duration::from_secs(15);
    let answer = client::send(&socket, line, timeout).map_err(|e| fail(EXIT_RUNTIME, e))?;
    if answer.ok {
        println!("{}", answer.text);
        Ok(())
    } else {
        Err((EXIT_RUNTIME, format!("refused: {}", answer.text)))
    }
}

fn check_config(path: &Path) -> Result<(), Failure> {
    let config = load(path)?;
    print!("{}", config.to_toml());
    eprintln!("{}: ok", path.display());
    Ok(())
}

fn bins(path: &Path, from: Option<&str>, to: Option<&str>) -> Result<(), Failure> {
    use edgewatch::bins::store::{copy_range, TimeRange};
    let config = load(path)?;
    let Some(b) = &config.bins else {
        return Err((
            EXIT_CONFIG,
            format!("{}: the site has no [bins] section", path.display()),
        ));
    };
    let range = TimeRange::parse(from, to).map_err(|e| (EXIT_CONFIG, format!("--{e}")))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut buf = vec![0u8; 64 * 1024];
    copy_range(&b.dir, range, &mut buf, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| (EXIT_RUNTIME, format!("bins.dir: {}: {e}", b.dir.display())))
}

fn probe(device: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    edgewatch::capture::v4l2::probe(device, &mut out).map_err(|e| fail(EXIT_RUNTIME, e))?;
    out.flush().map_err(|e| fail(EXIT_RUNTIME, e))
}

fn run(path: &Path, frames: Option<u64>, json: bool) -> Result<(), Failure> {
    let config = load(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| fail(EXIT_RUNTIME, e))?;
    }
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let mut service = Service::start(&config, path, stop.clone(), clock).map_err(service_fail)?;
    log::info!("{}: running {}", config.site, path.display());
    let mut reporter = Reporter::new(json, service.signal_status());
    let stdout = std::io::stdout();
    let mut io_result = Ok(());
    let result = service.run(frames, &stop, |p, now, last| {
        let mut out = stdout.lock();
        if io_result.is_ok() {
            io_result = reporter
                .write(&mut out, p, now, last)
                .and_then(|()| out.flush());
        }
    });
    // Whatever ended the run, the signals clear to all red before the process exits.
    let reload = service.reload_requested();
    service.shut_down();
    if reload && result.is_ok() {
        let _ = std::io::stdout().lock().flush();
        let under_systemd = std::env::var_os("NOTIFY_SOCKET").is_some();
        edgewatch::health::restart::reload(under_systemd);
    }
    result.map_err(pipeline_fail)?;
    io_result.map_err(|e| fail(EXIT_RUNTIME, e))
}

/// Runs `eval`; an unmet expectation is exit status 1 with the report printed, not an error
/// message.
fn eval(opts: &edgewatch::eval::EvalOptions, json: bool) -> Result<(), Failure> {
    let report = edgewatch::eval::run(opts).map_err(|e| {
        let code = if e.is_input() {
            EXIT_CONFIG
        } else {
            EXIT_RUNTIME
        };
        fail(code, e)
    })?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        report.write_json(&mut out)
    } else {
        report.write_table(&mut out)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| fail(EXIT_RUNTIME, e))?;
    if report.passed() {
        Ok(())
    } else {
        Err((
            EXIT_FAILED_CHECK,
            format!(
                "eval: {} of the truth file's expectations failed",
                report.failures()
            ),
        ))
    }
}

fn snapshot(
    config: &Config,
    camera: Option<&str>,
    frames: u64,
    raw: bool,
    output: &Path,
) -> Result<(), Failure> {
    use edgewatch::view::shot::SnapshotError;
    match edgewatch::view::shot::snapshot(config, camera, frames, raw, output) {
        Ok(bytes) => {
            eprintln!("{}: {bytes} bytes", output.display());
            Ok(())
        }
        Err(SnapshotError::Config(e)) => Err(fail(EXIT_CONFIG, e)),
        Err(SnapshotError::Pipeline(e)) => Err(pipeline_fail(e)),
        Err(e) => Err(fail(EXIT_RUNTIME, e)),
    }
}

fn sim(site: &Path, end_s: f64, seed: u64, out_dir: PathBuf) -> Result<(), Failure> {
    use edgewatch::sim::{compare, Options, SimError, SimSite};
    let site_cfg = SimSite::load(site).map_err(|e| fail(EXIT_CONFIG, e))?;
    if !(end_s > 0.0 && end_s <= 86_400.0) {
        return Err((EXIT_CONFIG, format!("--end {end_s}: 0 < seconds <= 86400")));
    }
    let opts = Options {
        end_s,
        seed,
        out_dir,
    };
    let cmp = compare(&site_cfg, &opts).map_err(|e| match e {
        SimError::Config(_) | SimError::Site(_) | SimError::Signal(_) => fail(EXIT_CONFIG, e),
        other => fail(EXIT_RUNTIME, other),
    })?;
    println!(
        "{}: {end_s} s simulated, seed {seed}, outputs in {}",
        site.display(),
        opts.out_dir.display()
    );
    let mut out = std::io::stdout().lock();
    cmp.write_table(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| fail(EXIT_RUNTIME, e))?;
    let problems = cmp.problems();
    if problems.is_empty() {
        return Ok(());
    }
    Err((EXIT_RUNTIME, format!("sim: {}", problems.join("; "))))
}

fn service_fail(e: ServiceError) -> Failure {
    match e {
        ServiceError::Pipeline(e) => pipeline_fail(e),
        // A TLS file named in the config that cannot be read: a config error.
        ServiceError::Mqtt(e @ edgewatch::mqtt::MqttError::TlsFile { .. }) => fail(EXIT_CONFIG, e),
        other => fail(EXIT_RUNTIME, other),
    }
}
