//! Closed-loop simulation benchmark: edgewatch's signal controller against SUMO traffic, and
//! SUMO's own `actuated` controller on the same network and demand for comparison.
//!
//! - [`site`]: the benchmark's site file (`[sim]` plus edgewatch's `[signals]`).
//! - [`net`]: the traffic light's links and foes, read from the network netconvert built.
//! - [`traci`]: the TraCI commands used, over TCP.
//! - [`closed_loop`]: the step loop and the independent conflict check.
//! - [`trips`]: the figures, from SUMO's tripinfo and collision outputs.
//!
//! [`compare`] builds the network, runs both controllers and returns both sets of figures.
//! `tools/sim/README.md` says how to run it.

pub mod closed_loop;
pub mod net;
pub mod site;
pub mod sumo;
pub mod traci;
pub mod trips;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use closed_loop::LoopReport;
pub use site::SimSite;
pub use trips::Figures;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The site file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The site file does not fit the network.
    #[error("sim site: {0}")]
    Site(String),
    /// edgewatch's signal system could not be built.
    #[error(transparent)]
    Signal(#[from] crate::signal::SignalError),
    /// The network lacks what the benchmark needs.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Talking to SUMO failed.
    #[error(transparent)]
    Traci(#[from] traci::TraciError),
    /// A SUMO program could not be started (is the `sumo` package installed?).
    #[error("{program}: cannot start it ({source}); install SUMO: apt-get install sumo")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A SUMO program failed.
    #[error("{program} failed: {message}")]
    Failed {
        /// The program.
        program: &'static str,
        /// Its error output.
        message: String,
    },
    /// An output file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An output file could not be created.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A SUMO output file did not have the expected form.
    #[error("{path}:{line}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// How long and with what seed to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulated seconds.
    pub end_s: f64,
    /// SUMO's random seed.
    pub seed: u64,
    /// Where the network and the outputs go.
    pub out_dir: PathBuf,
}

/// Both controllers' figures from one invocation.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// edgewatch driving SUMO over TraCI.
    pub edgewatch: Figures,
    /// What the closed loop itself saw (conflicts, monitor faults, greens).
    pub closed_loop: LoopReport,
    /// The longest cycle edgewatch's plan allows: every phase at its longest green (max green,
    /// or walk and pedestrian clearance if longer) with its amber and all-red, each interval
    /// up to one tick late.
    pub edgewatch_cycle_bound_s: f64,
    /// SUMO's `actuated` program on the same network and demand.
    pub actuated: Figures,
    /// The same bound for SUMO's program: every phase at its `maxDur`.
    pub actuated_cycle_bound_s: f64,
    /// Wall time of the edgewatch run.
    pub edgewatch_wall: Duration,
}

impl Comparison {
    /// edgewatch's mean delay over SUMO actuated's (below 1: edgewatch is better).
    pub fn delay_ratio(&self) -> f64 {
        self.edgewatch.mean_delay_s / self.actuated.mean_delay_s
    }
}

/// Builds the network from the site's node and edge files, then runs SUMO's actuated program
/// and edgewatch on it, with the same demand and seed.
pub fn compare(site: &SimSite, opts: &Options) -> Result<Comparison, SimError> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| SimError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let net_path = opts.out_dir.join("net.xml");
    let sim = &site.sim;
    sumo::netconvert(&sim.nodes, &sim.edges, &sim.netconvert_args, &net_path)?;
    let junction = net::Junction::load(&net_path, &sim.tls)?;
    let actuated_cycle_bound_s = actuated_cycle(&net_path, &sim.tls)?;
    let args = sumo::SumoArgs {
        net: &net_path,
        routes: &sim.routes,
        additional: &sim.additional,
        end_s: opts.end_s,
        step_s: sim.step_s,
        seed: opts.seed,
    };

    let files = sumo::RunFiles::new(&opts.out_dir, "actuated");
    sumo::run_to_end(sumo::sumo_command(&args, &files)?, &files)?;
    let actuated = Figures::load(&files.tripinfo, &files.collisions)?;

    let files = sumo::RunFiles::new(&opts.out_dir, "edgewatch");
    let began = Instant::now();
    let steps = (opts.end_s / sim.step_s).round() as u64;
    let mut attempts = 0;
    let (sumo, traci, closed_loop) = loop {
        let sumo = sumo::Sumo::start(sumo::sumo_command(&args, &files)?, &files)?;
        attempts += 1;
        match closed_loop::run(site, &junction, &sumo, steps) {
            Ok((traci, report)) => break (sumo, traci, report),
            // The free port was taken before sumo could bind it: start over on another.
            Err(SimError::Traci(traci::TraciError::Connect { .. })) if attempts < 3 => {}
            Err(SimError::Traci(e)) => return Err(sumo.failure(&e.to_string())),
            Err(e) => return Err(e),
        }
    };
    traci.close()?;
    sumo.wait(Duration::from_secs(60))?;
    let edgewatch_wall = began.elapsed();
    let edgewatch = Figures::load(&files.tripinfo, &files.collisions)?;
    let plan = crate::signal::SignalPlan::new(&site.signals, &site.zone_names(), &site::CLASSES)?;
    Ok(Comparison {
        edgewatch,
        closed_loop,
        edgewatch_cycle_bound_s: edgewatch_cycle(&plan, sim.step_s),
        actuated,
        actuated_cycle_bound_s,
        edgewatch_wall,
    })
}

fn edgewatch_cycle(plan: &crate::signal::SignalPlan, tick_s: f64) -> f64 {
    plan.phases
        .iter()
        .map(|p| {
            let green = p.max_green.max(p.walk + p.ped_clearance).as_secs_f64();
            // Min green is part of max green; each interval may end one tick late.
            green + p.amber.as_secs_f64() + p.all_red.as_secs_f64() + 3.0 * tick_s
        })
        .sum()
}

/// The sum of the program's phases at their longest (`maxDur`, else `duration`).
fn actuated_cycle(net: &Path, tls: &str) -> Result<f64, SimError> {
    let text = std::fs::read_to_string(net).map_err(|source| SimError::Read {
        path: net.to_owned(),
        source,
    })?;
    let open = format!("<tlLogic id=\"{tls}\" type=\"actuated\"");
    let bad = |line, message: String| SimError::Output {
        path: net.to_owned(),
        line,
        message,
    };
    let start = text
        .lines()
        .position(|l| l.trim_start().starts_with(&open))
        .ok_or_else(|| {
            bad(
                0,
                format!(
                    "no actuated program for {tls}: give netconvert --tls.default-type actuated"
                ),
            )
        })?;
    let mut total = 0.0;
    for (n, line) in text.lines().enumerate().skip(start + 1) {
        let line = line.trim_start();
        if !line.starts_with("<phase ") {
            break;
        }
        let v = net::attr(line, "maxDur")
            .or_else(|| net::attr(line, "duration"))
            .ok_or_else(|| bad(n + 1, "a phase without duration".into()))?;
        total += v
            .parse::<f64>()
            .map_err(|_| bad(n + 1, format!("duration {v:?}")))?;
    }
    Ok(total)
}

impl Comparison {
    /// Safety failures under edgewatch: conflicting greens, a monitor fault, or a collision.
    /// Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let l = &self.closed_loop;
        if l.conflicts > 0 {
            out.push(format!(
                "{} states with conflicting greens, e.g. {:?}",
                l.conflicts, l.conflict_examples
            ));
        }
        if l.monitor_faults > 0 {
            out.push(format!(
                "edgewatch's monitor latched {} faults",
                l.monitor_faults
            ));
        }
        // SUMO's own program is only compared against: its collisions are reported, not ours.
        if self.edgewatch.collisions > 0 {
            out.push(format!(
                "SUMO reported {} collisions under edgewatch",
                self.edgewatch.collisions
            ));
        }
        out
    }

    /// Approaches where some vehicle under edgewatch stood still longer than the cycle bound,
    /// with that wait.
    pub fn over_cycle_bound(&self) -> Vec<(String, f64)> {
        let bound = self.edgewatch_cycle_bound_s;
        self.edgewatch
            .max_wait_by_approach
            .iter()
            .filter(|(_, wait)| *wait > bound)
            .cloned()
            .collect()
    }

    /// The figures side by side, for people.
    pub fn write_table(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let (e, a) = (&self.edgewatch, &self.actuated);
        writeln!(
            out,
            "{:<34} {:>12} {:>14}",
            "", "edgewatch", "sumo-actuated"
        )?;
        let mut row = |name: &str, x: String, y: String| -> std::io::Result<()> {
            writeln!(out, "{name:<34} {x:>12} {y:>14}")
        };
        row("vehicles (unfinished)", count(e), count(a))?;
        row(
            "mean delay per vehicle (s)",
            s(e.mean_delay_s),
            s(a.mean_delay_s),
        )?;
        row("p95 wait (s)", s(e.p95_wait_s), s(a.p95_wait_s))?;
        for (approach, wait) in &e.max_wait_by_approach {
            let other = a
                .max_wait_by_approach
                .iter()
                .find(|(x, _)| x == approach)
                .map_or("-".into(), |(_, w)| s(*w));
            row(&format!("max wait from {approach} (s)"), s(*wait), other)?;
        }
        row(
            "cycle bound (s)",
            s(self.edgewatch_cycle_bound_s),
            s(self.actuated_cycle_bound_s),
        )?;
        row(
            "pedestrians",
            e.pedestrians.to_string(),
            a.pedestrians.to_string(),
        )?;
        row(
            "mean pedestrian wait (s)",
            s(e.mean_ped_wait_s),
            s(a.mean_ped_wait_s),
        )?;
        row(
            "max pedestrian wait (s)",
            s(e.max_ped_wait_s),
            s(a.max_ped_wait_s),
        )?;
        row(
            "collisions",
            e.collisions.to_string(),
            a.collisions.to_string(),
        )?;
        let l = &self.closed_loop;
        row("conflicting greens", l.conflicts.to_string(), "-".into())?;
        for (approach, wait) in self.over_cycle_bound() {
            writeln!(
                out,
                "over the cycle bound: a vehicle from {approach} stood {wait:.1} s (bound {:.1} s)",
                self.edgewatch_cycle_bound_s
            )?;
        }
        let greens: Vec<String> = l.greens.iter().map(|(g, n)| format!("{g} {n}")).collect();
        writeln!(out, "edgewatch greens: {}", greens.join(", "))?;
        let ratio = self.delay_ratio();
        let verdict = if ratio <= 1.0 {
            format!("{:.1} % better", (1.0 - ratio) * 100.0)
        } else {
            format!("{:.1} % worse", (ratio - 1.0) * 100.0)
        };
        writeln!(
            out,
            "edgewatch / actuated mean delay: {ratio:.3} ({verdict}); {} steps in {:.1} s wall",
            l.steps,
            self.edgewatch_wall.as_secs_f64()
        )
    }
}

fn s(v: f64) -> String {
    format!("{v:.1}")
}

fn count(f: &Figures) -> String {
    format!("{} ({})", f.vehicles, f.unfinished)
}
