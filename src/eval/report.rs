//! The evaluation's result: what was counted, what was expected, and whether it held; printed
//! as a table or as one JSON object.

use std::io::{self, Write};

use super::mot::{MotMetrics, MotSequence};
use super::truth::{class_indexes, Truth};
use super::{class_label, EvalOptions, Observed};
use crate::json;
use crate::scene::LineCount;

/// How fast the pipeline ran (wall clock; these vary from run to run, the counts do not).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Seconds the run took.
    pub wall_s: f64,
    /// Frames processed per second of wall time.
    pub fps: f64,
    /// Detector invoke, mean, in milliseconds.
    pub invoke_ms_mean: f64,
    /// Detector invoke, median.
    pub invoke_ms_p50: f64,
    /// Detector invoke, 99th percentile.
    pub invoke_ms_p99: f64,
    /// A whole frame (preprocess to scene), mean.
    pub frame_ms_mean: f64,
}

/// One `[[lines]]` expectation and what was counted.
#[derive(Debug, Clone, PartialEq)]
pub struct LineCheck {
    /// The line.
    pub line: String,
    /// `in` or `out`.
    pub direction: &'static str,
    /// The classes summed, `+`-joined.
    pub classes: String,
    /// Crossings counted.
    pub counted: u64,
    /// Bounds expected.
    pub min: Option<u64>,
    /// Upper bound expected.
    pub max: Option<u64>,
    /// Whether the count is within the bounds.
    pub pass: bool,
}

/// One `[[tracks]]` expectation and what was created.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackCheck {
    /// The classes counted, `+`-joined.
    pub classes: String,
    /// Tracks of those classes.
    pub created: u64,
    /// Most tracks accepted.
    pub max: Option<u64>,
    /// True objects.
    pub objects: Option<u64>,
    /// Tracks per true object.
    pub per_object: Option<f64>,
    /// Most tracks per object accepted.
    pub max_per_object: Option<f64>,
    /// Whether every bound holds.
    pub pass: bool,
}

/// Presence in one zone over the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneStat {
    /// Free -> occupied transitions.
    pub occupied_periods: u64,
    /// Most objects in it at once.
    pub max_objects: u64,
    /// Processed frames in which it was occupied.
    pub occupied_frames: u64,
}

impl ZoneStat {
    /// Presence from per-frame occupancy, summing `classes`.
    fn from_frames(frames: &[[u32; crate::config::MAX_CLASSES]], classes: &[usize]) -> ZoneStat {
        let mut s = ZoneStat {
            occupied_periods: 0,
            max_objects: 0,
            occupied_frames: 0,
        };
        let mut was = false;
        for occ in frames {
            let n: u64 = classes.iter().map(|&c| u64::from(occ[c])).sum();
            let now = n > 0;
            s.occupied_periods += u64::from(now && !was);
            s.occupied_frames += u64::from(now);
            s.max_objects = s.max_objects.max(n);
            was = now;
        }
        s
    }
}

/// One `[[zones]]` expectation and what was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneCheck {
    /// The zone.
    pub zone: String,
    /// The classes counted, `+`-joined.
    pub classes: String,
    /// What was seen.
    pub seen: ZoneStat,
    /// Periods expected.
    pub occupied_periods: Option<u64>,
    /// Most objects accepted.
    pub max_objects: Option<u64>,
    /// Whether both hold.
    pub pass: bool,
}

/// Everything `eval` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The recording.
    pub recording: String,
    /// Its frame rate.
    pub fps: f64,
    /// One frame in this many was processed.
    pub every: u32,
    /// Frames read from the recording (processed or skipped).
    pub frames_read: u64,
    /// Frames that went through the pipeline.
    pub frames_processed: u64,
    /// Counted classes, in count order.
    pub classes: Vec<String>,
    /// Every line of the camera with its counts.
    pub lines: Vec<(String, LineCount)>,
    /// Tracks the tracker created (its own counter).
    pub tracks_created: u64,
    /// Distinct tracks seen, per counted class (the class each had when last seen).
    pub tracks_per_class: Vec<u64>,
    /// Every zone of the camera, all classes summed.
    pub zones: Vec<(String, ZoneStat)>,
    /// Line expectations.
    pub line_checks: Vec<LineCheck>,
    /// Track expectations.
    pub track_checks: Vec<TrackCheck>,
    /// Zone expectations.
    pub zone_checks: Vec<ZoneCheck>,
    /// MOT metrics, with `--gt`.
    pub mot: Option<MotMetrics>,
    /// Speed.
    pub figures: Figures,
}

pub(super) fn build(
    opts: &EvalOptions,
    truth: &Truth,
    fps: f64,
    o: Observed,
    gt: Option<MotSequence>,
) -> Report {
    let classes = o.classes.clone();
    let mut tracks_per_class = vec![0u64; classes.len()];
    for &c in o.track_class.values() {
        if let Some(n) = tracks_per_class.get_mut(c) {
            *n += 1;
        }
    }
    let line_checks = truth
        .lines
        .iter()
        .map(|t| {
            let idx = class_indexes(t.class.as_ref(), &classes);
            let count = o.lines.iter().find(|(n, _)| *n == t.name).map(|(_, c)| c);
            let counted = count.map_or(0, |c| {
                let per = match t.direction {
                    super::truth::Direction::In => &c.inbound,
                    super::truth::Direction::Out => &c.outbound,
                };
                idx.iter().map(|&i| per[i]).sum()
            });
            LineCheck {
                line: t.name.clone(),
                direction: t.direction.name(),
                classes: class_label(&idx, &classes),
                counted,
                min: t.min,
                max: t.max,
                pass: t.min.is_none_or(|m| counted >= m) && t.max.is_none_or(|m| counted <= m),
            }
        })
        .collect();
    let track_checks = truth
        .tracks
        .iter()
        .map(|t| {
            let idx = class_indexes(t.class.as_ref(), &classes);
            let created: u64 = idx.iter().map(|&i| tracks_per_class[i]).sum();
            let per_object = t.objects.map(|n| created as f64 / n as f64);
            let ok_max = t.max.is_none_or(|m| created <= m);
            let ok_per = match (per_object, t.max_per_object) {
                (Some(p), Some(m)) => p <= m + 1e-12,
                _ => true,
            };
            TrackCheck {
                classes: class_label(&idx, &classes),
                created,
                max: t.max,
                objects: t.objects,
                per_object,
                max_per_object: t.max_per_object,
                pass: ok_max && ok_per,
            }
        })
        .collect();
    let all: Vec<usize> = (0..classes.len()).collect();
    let zone_checks = truth
        .zones
        .iter()
        .map(|t| {
            let idx = class_indexes(t.class.as_ref(), &classes);
            let frames = o
                .zones
                .iter()
                .find(|(n, _)| *n == t.name)
                .map_or(&[][..], |(_, f)| f.as_slice());
            let seen = ZoneStat::from_frames(frames, &idx);
            let pass = t
                .occupied_periods
                .is_none_or(|p| seen.occupied_periods == p)
                && t.max_objects.is_none_or(|m| seen.max_objects <= m);
            ZoneCheck {
                zone: t.name.clone(),
                classes: class_label(&idx, &classes),
                seen,
                occupied_periods: t.occupied_periods,
                max_objects: t.max_objects,
                pass,
            }
        })
        .collect();
    let zones = o
        .zones
        .iter()
        .map(|(n, f)| (n.clone(), ZoneStat::from_frames(f, &all)))
        .collect();
    let mot = gt.map(|gt| super::mot::evaluate(&gt, &o.hyp, &o.processed));
    Report {
        recording: opts.recording.display().to_string(),
        fps,
        every: opts.every,
        frames_read: o.frames_read,
        frames_processed: o.frames_processed,
        classes,
        lines: o.lines,
        tracks_created: o.tracks_created,
        tracks_per_class,
        zones,
        line_checks,
        track_checks,
        zone_checks,
        mot,
        figures: o.figures,
    }
}

fn bounds(min: Option<u64>, max: Option<u64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) if a == b => format!("{a}"),
        (Some(a), Some(b)) => format!("{a}..{b}"),
        (Some(a), None) => format!(">= {a}"),
        (None, Some(b)) => format!("<= {b}"),
        (None, None) => "any".into(),
    }
}

fn mark(pass: bool) -> &'static str {
    if pass {
        "ok  "
    } else {
        "FAIL"
    }
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    /// Expectations that did not hold.
    pub fn failures(&self) -> usize {
        self.line_checks.iter().filter(|c| !c.pass).count()
            + self.track_checks.iter().filter(|c| !c.pass).count()
            + self.zone_checks.iter().filter(|c| !c.pass).count()
    }

    fn checks(&self) -> usize {
        self.line_checks.len() + self.track_checks.len() + self.zone_checks.len()
    }

    /// The human-readable table.
    pub fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let f = &self.figures;
        writeln!(
            w,
            "eval {}: {} of {} frames processed (one in {}), video {:.3} fps",
            self.recording, self.frames_processed, self.frames_read, self.every, self.fps
        )?;
        writeln!(
            w,
            "pipeline: {:.1} fps, invoke {:.1} ms mean (p50 {:.1}, p99 {:.1}), frame {:.1} ms, {:.1} s",
            f.fps, f.invoke_ms_mean, f.invoke_ms_p50, f.invoke_ms_p99, f.frame_ms_mean, f.wall_s
        )?;
        writeln!(w)?;
        writeln!(
            w,
            "{:<16} {:<4} {:<12} {:>7}",
            "line", "dir", "class", "counted"
        )?;
        for (name, c) in &self.lines {
            for (dir, per) in [("in", &c.inbound), ("out", &c.outbound)] {
                for (i, class) in self.classes.iter().enumerate() {
                    writeln!(w, "{name:<16} {dir:<4} {class:<12} {:>7}", per[i])?;
                }
            }
        }
        writeln!(w)?;
        let per_class: Vec<String> = self
            .classes
            .iter()
            .zip(&self.tracks_per_class)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        writeln!(
            w,
            "tracks created: {} ({})",
            self.tracks_created,
            per_class.join(", ")
        )?;
        for (name, z) in &self.zones {
            writeln!(
                w,
                "zone {name}: {} occupied periods, at most {} at once, occupied in {} frames",
                z.occupied_periods, z.max_objects, z.occupied_frames
            )?;
        }
        if let Some(m) = &self.mot {
            writeln!(
                w,
                "mot: MOTA {:.3}, IDF1 {:.3}, ID switches {}, FP {}, FN {}, matches {} of {} (mean IoU {:.3})",
                m.mota, m.idf1, m.id_switches, m.false_positives, m.misses, m.matches, m.gt, m.mean_iou
            )?;
        }
        writeln!(w)?;
        writeln!(w, "checks")?;
        for c in &self.line_checks {
            writeln!(
                w,
                "  {} line {} {} {}: {} counted, expected {}",
                mark(c.pass),
                c.line,
                c.direction,
                c.classes,
                c.counted,
                bounds(c.min, c.max)
            )?;
        }
        for c in &self.track_checks {
            let mut text = format!("{} tracks", c.created);
            if let Some(m) = c.max {
                text.push_str(&format!(" (at most {m})"));
            }
            if let (Some(p), Some(n)) = (c.per_object, c.objects) {
                text.push_str(&format!(", {p:.2} per object of {n}"));
                if let Some(m) = c.max_per_object {
                    text.push_str(&format!(" (at most {m:.2})"));
                }
            }
            writeln!(w, "  {} tracks {}: {text}", mark(c.pass), c.classes)?;
        }
        for c in &self.zone_checks {
            writeln!(
                w,
                "  {} zone {} {}: {} occupied periods (expected {}), at most {} at once (expected <= {})",
                mark(c.pass),
                c.zone,
                c.classes,
                c.seen.occupied_periods,
                c.occupied_periods
                    .map_or("any".into(), |p| p.to_string()),
                c.seen.max_objects,
                c.max_objects.map_or("any".into(), |m| m.to_string())
            )?;
        }
        if self.passed() {
            writeln!(w, "result: PASS ({} checks)", self.checks())
        } else {
            writeln!(
                w,
                "result: FAIL ({} of {} checks failed)",
                self.failures(),
                self.checks()
            )
        }
    }

    /// The same as one JSON object on one line.
    pub fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let optf = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.4}"));
        w.write_all(b"{\"recording\":")?;
        json::string(w, &self.recording)?;
        write!(
            w,
            ",\"fps\":{:.3},\"every\":{},\"frames\":{{\"read\":{},\"processed\":{}}},\"lines\":",
            self.fps, self.every, self.frames_read, self.frames_processed
        )?;
        json::object(
            w,
            self.lines.iter().map(|(n, c)| (n.as_str(), c)),
            |w, c| {
                json::line_counts(
                    w,
                    &self.classes,
                    c.inbound.iter().copied(),
                    c.outbound.iter().copied(),
                )
            },
        )?;
        write!(
            w,
            ",\"tracks\":{{\"created\":{},\"per_class\":",
            self.tracks_created
        )?;
        json::class_counts(w, &self.classes, self.tracks_per_class.iter().copied())?;
        w.write_all(b"},\"zones\":")?;
        json::object(
            w,
            self.zones.iter().map(|(n, z)| (n.as_str(), z)),
            |w, z| {
                write!(
                    w,
                    "{{\"occupied_periods\":{},\"max_objects\":{},\"occupied_frames\":{}}}",
                    z.occupied_periods, z.max_objects, z.occupied_frames
                )
            },
        )?;
        w.write_all(b",\"checks\":[")?;
        let mut first = true;
        let mut sep = |w: &mut dyn Write| -> io::Result<()> {
            if !std::mem::take(&mut first) {
                w.write_all(b",")?;
            }
            Ok(())
        };
        for c in &self.line_checks {
            sep(w)?;
            w.write_all(b"{\"kind\":\"line\",\"name\":")?;
            json::string(w, &c.line)?;
            write!(w, ",\"direction\":\"{}\",\"classes\":", c.direction)?;
            json::string(w, &c.classes)?;
            write!(
                w,
                ",\"counted\":{},\"min\":{},\"max\":{},\"pass\":{}}}",
                c.counted,
                opt(c.min),
                opt(c.max),
                c.pass
            )?;
        }
        for c in &self.track_checks {
            sep(w)?;
            w.write_all(b"{\"kind\":\"tracks\",\"classes\":")?;
            json::string(w, &c.classes)?;
            write!(
                w,
                ",\"created\":{},\"max\":{},\"objects\":{},\"per_object\":{},\"max_per_object\":{},\"pass\":{}}}",
                c.created,
                opt(c.max),
                opt(c.objects),
                optf(c.per_object),
                optf(c.max_per_object),
                c.pass
            )?;
        }
        for c in &self.zone_checks {
            sep(w)?;
            w.write_all(b"{\"kind\":\"zone\",\"name\":")?;
            json::string(w, &c.zone)?;
            w.write_all(b",\"classes\":")?;
            json::string(w, &c.classes)?;
            write!(
                w,
                ",\"occupied_periods\":{},\"expected_periods\":{},\"max_objects\":{},\"expected_max_objects\":{},\"pass\":{}}}",
                c.seen.occupied_periods,
                opt(c.occupied_periods),
                c.seen.max_objects,
                opt(c.max_objects),
                c.pass
            )?;
        }
        w.write_all(b"],\"mot\":")?;
        match &self.mot {
            None => w.write_all(b"null")?,
            Some(m) => write!(
                w,
                "{{\"mota\":{:.4},\"idf1\":{:.4},\"id_switches\":{},\"false_positives\":{},\"misses\":{},\"matches\":{},\"gt\":{},\"hyp\":{},\"idtp\":{},\"mean_iou\":{:.4}}}",
                m.mota,
                m.idf1,
                m.id_switches,
                m.false_positives,
                m.misses,
                m.matches,
                m.gt,
                m.hyp,
                m.idtp,
                m.mean_iou
            )?,
        }
        let f = &self.figures;
        write!(
            w,
            ",\"pipeline\":{{\"wall_s\":{:.3},\"fps\":{:.2},\"invoke_ms\":{{\"mean\":{:.2},\"p50\":{:.2},\"p99\":{:.2}}},\"frame_ms\":{:.2}}},\"pass\":{}}}",
            f.wall_s,
            f.fps,
            f.invoke_ms_mean,
            f.invoke_ms_p50,
            f.invoke_ms_p99,
            f.frame_ms_mean,
            self.passed()
        )?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_CLASSES;

    fn occ(person: u32, car: u32) -> [u32; MAX_CLASSES] {
        let mut a = [0; MAX_CLASSES];
        a[0] = person;
        a[1] = car;
        a
    }

    #[test]
    fn zone_periods_count_free_to_occupied_transitions() {
        let frames = [
            occ(1, 0), // occupied from the start: a period
            occ(1, 1),
            occ(0, 0),
            occ(0, 2), // cars only
            occ(2, 0),
            occ(0, 0),
        ];
        let people = ZoneStat::from_frames(&frames, &[0]);
        assert_eq!(
            (
                people.occupied_periods,
                people.max_objects,
                people.occupied_frames
            ),
            (2, 2, 3)
        );
        let all = ZoneStat::from_frames(&frames, &[0, 1]);
        assert_eq!(
            (all.occupied_periods, all.max_objects, all.occupied_frames),
            (2, 2, 4)
        );
        let none = ZoneStat::from_frames(&[], &[0]);
        assert_eq!(none.occupied_periods, 0);
    }
}
