//! The once-a-second summary line: fps, dropped frames, per-stage latency p50/p99, zone and
//! line counts; as text for people or as one JSON object a line for scripts.

use std::io::{self, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::control::SignalStatus;
use crate::health::stats::{Histogram, PipelineStats, Stage};
use crate::json;
use crate::pipeline::Pipeline;

/// Stages shown in summaries (capture wait is left out: it is idle time, not work).
const SHOWN: [Stage; 5] = [
    Stage::Preprocess,
    Stage::Invoke,
    Stage::Decode,
    Stage::Scene,
    Stage::Frame,
];

/// Writes summary lines, remembering what it reported last to compute rates.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    signals: Option<Arc<SignalStatus>>,
    last_time: Duration,
    last_frames: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Reporter {
    /// A reporter writing text, or JSON lines when `json` is set; with `signals`, each line
    /// also shows what the signal lamps show.
    pub fn new(json: bool, signals: Option<Arc<SignalStatus>>) -> Reporter {
        Reporter {
            json,
            signals,
            last_time: Duration::ZERO,
            last_frames: 0,
        }
    }

    /// Writes one summary of `p` at clock time `now`.
    pub fn write(
        &mut self,
        w: &mut impl Write,
        p: &Pipeline,
        now: Duration,
        last: bool,
    ) -> io::Result<()> {
        let stats = p.stats();
        let frames = stats.frames.load(Relaxed);
        let span = now.saturating_sub(self.last_time).as_secs_f64();
        let fps = if span > 0.0 {
            (frames - self.last_frames) as f64 / span
        } else {
            0.0
        };
        self.last_time = now;
        self.last_frames = frames;
        stats.set_recent_fps(fps);
        // The final line summarizes the whole run, the others the last window.
        let hist = |s: Stage| {
            if last {
                stats.total(s)
            } else {
                stats.window(s)
            }
        };
        if self.json {
            self.write_json(w, p, stats, now, fps, last, hist)
        } else {
            self.write_text(w, p, stats, now, fps, last, hist)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_text<'a>(
        &self,
        w: &mut impl Write,
        p: &Pipeline,
        stats: &PipelineStats,
        now: Duration,
        fps: f64,
        last: bool,
        hist: impl Fn(Stage) -> &'a Histogram,
    ) -> io::Result<()> {
        let tag = if last { "final" } else { "" };
        write!(
            w,
            "[{:7.1}s]{tag} frames {} fps {:.1} dropped {} errors {} |",
            now.as_secs_f64(),
            stats.frames.load(Relaxed),
            fps,
            stats.dropped.load(Relaxed),
            stats.errors.load(Relaxed)
        )?;
        for s in SHOWN {
            let h = hist(s);
            write!(
                w,
                " {} {:.2}/{:.2}ms",
                s.name(),
                ms(h.quantile(0.5)),
                ms(h.quantile(0.99))
            )?;
        }
        let many = p.cameras().nth(1).is_some();
        for cam in p.cameras() {
            let c = cam.capture;
            if many {
                write!(
                    w,
                    " | cam {}: frames {} dropped {}",
                    cam.name, cam.frames, c.dropped
                )?;
            }
            if c.corrupt > 0 || c.reconnects > 0 {
                write!(w, " corrupt {} reconnects {}", c.corrupt, c.reconnects)?;
            }
            if !c.online {
                write!(w, " OFFLINE")?;
            }
        }
        let classes = p.class_names();
        for (name, counts) in p.zones() {
            write!(w, " | zone {name}:")?;
            let mut any = false;
            for (class, &n) in classes.iter().zip(counts.iter()).filter(|(_, &n)| n > 0) {
                write!(w, " {class} {n}")?;
                any = true;
            }
            if !any {
                write!(w, " empty")?;
            }
        }
        for (name, counts) in p.lines() {
            write!(w, " | line {name}:")?;
            let mut any = false;
            for (i, class) in classes.iter().enumerate() {
                let (i_n, o_n) = (counts.inbound[i], counts.outbound[i]);
                if i_n + o_n > 0 {
                    write!(w, " {class} in {i_n} out {o_n}")?;
                    any = true;
                }
            }
            if !any {
                write!(w, " none")?;
            }
        }
        write!(w, " | tracks {}", p.tracker_stats().live)?;
        if let Some(status) = &self.signals {
            write!(w, " | signals")?;
            for (name, state) in status.states() {
                write!(w, " {name}={state}")?;
            }
            if status.fault_flash() {
                write!(w, " [FAULT FLASH]")?;
            } else if status.degraded() {
                write!(w, " [degraded: fixed-time]")?;
            }
        }
        writeln!(w)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_json<'a>(
        &self,
        w: &mut impl Write,
        p: &Pipeline,
        stats: &PipelineStats,
        now: Duration,
        fps: f64,
        last: bool,
        hist: impl Fn(Stage) -> &'a Histogram,
    ) -> io::Result<()> {
        write!(
            w,
            "{{\"t\":{:.3},\"final\":{last},\"frames\":{},\"fps\":{:.2},\"dropped\":{},\"errors\":{},\"detections\":{}",
            now.as_secs_f64(),
            stats.frames.load(Relaxed),
            fps,
            stats.dropped.load(Relaxed),
            stats.errors.load(Relaxed),
            stats.detections.load(Relaxed)
        )?;
        let classes = p.class_names();
        w.write_all(b",\"latency_ms\":")?;
        json::latency(w, &SHOWN, hist)?;
        w.write_all(b",\"cameras\":")?;
        json::object(w, p.cameras().map(|c| (c.name, c)), |w, cam| {
            let c = cam.capture;
            write!(
                w,
                "{{\"frames\":{},\"delivered\":{},\"dropped\":{},\"corrupt\":{},\"reconnects\":{},\"online\":{},\"tracks\":{}}}",
                cam.frames,
                c.delivered,
                c.dropped,
                c.corrupt,
                c.reconnects,
                c.online,
                cam.scene.stats().live
            )
        })?;
        w.write_all(b",\"zones\":")?;
        json::object(w, p.zones(), |w, counts| {
            json::class_counts(w, classes, counts.iter().map(|&n| u64::from(n)))
        })?;
        w.write_all(b",\"lines\":")?;
        json::object(w, p.lines(), |w, c| {
            json::line_counts(
                w,
                classes,
                c.inbound.iter().copied(),
                c.outbound.iter().copied(),
            )
        })?;
        let t = p.tracker_stats();
        write!(
            w,
            ",\"tracker\":{{\"live\":{},\"created\":{},\"evicted\":{},\"tentative_dropped\":{},\"dropped\":{}}}",
            t.live, t.created, t.evicted, t.tentative_dropped, t.dropped_full
        )?;
        if let Some(status) = &self.signals {
            w.write_all(b",\"signals\":{\"groups\":")?;
            json::signal_groups(w, status)?;
            let (fault, degraded) = (status.fault_flash(), status.degraded());
            let mode = status.mode().as_str();
            write!(
                w,
                ",\"mode\":\"{mode}\",\"fault_flash\":{fault},\"degraded\":{degraded}}}"
            )?;
        }
        writeln!(w, "}}")
    }
}
