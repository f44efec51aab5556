//! Multi-object tracking metrics against an MOT-format ground truth (`gt.txt`): CLEAR MOT
//! (MOTA, false positives, misses, identity switches) and the identity metric IDF1.
//!
//! Boxes match when their IoU is at least the threshold (0.5). Per frame, a ground-truth
//! object keeps the track it matched last if they still overlap enough; the rest are matched
//! by a minimum-cost assignment on 1 − IoU that first maximises the number of matches. An
//! identity switch is a ground-truth object matched to another track than the one it was
//! last matched to. IDF1 matches identities once for the whole sequence: the one-to-one pairing
//! of ground-truth and track ids with the most frames in which their boxes match.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::assign::min_cost_assignment;

/// The IoU at or above which a track's box matches a ground-truth box.
pub const IOU_MATCH: f64 = 0.5;

/// Why a ground-truth file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MotError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not `frame,id,x,y,w,h[,conf,class,visibility]`.
    #[error("{path}: line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One box of one object in one frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotBox {
    /// Object (or track) id.
    pub id: u64,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl MotBox {
    /// Intersection over union with `o`.
    pub fn iou(&self, o: &MotBox) -> f64 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.w * self.h + o.w * o.h - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// Boxes per frame number (MOT frames count from 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MotSequence {
    /// Frame number -> the boxes in it.
    pub frames: BTreeMap<u64, Vec<MotBox>>,
}

impl MotSequence {
    /// Adds a box to frame `frame`.
    pub fn push(&mut self, frame: u64, b: MotBox) {
        self.frames.entry(frame).or_default().push(b);
    }

    /// Reads an MOT `gt.txt`: one `frame,id,x,y,w,h,conf,class,visibility` line per box
    /// (only the first six are required). Rows with `conf` 0 are marked "ignore" in MOT
    /// ground truth and are left out.
    pub fn load(path: &Path) -> Result<MotSequence, MotError> {
        let text = std::fs::read_to_string(path).map_err(|source| MotError::Read {
            path: path.into(),
            source,
        })?;
        MotSequence::parse(&text, path)
    }

    /// Parses MOT text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<MotSequence, MotError> {
        let mut seq = MotSequence::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| MotError::Line {
                path: path.into(),
                line: i + 1,
                message,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() < 6 {
                return Err(err(format!(
                    "{} fields; want frame,id,x,y,w,h[,conf,class,visibility]",
                    fields.len()
                )));
            }
            let num = |k: usize, name: &str| -> Result<f64, MotError> {
                fields[k]
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(format!("{name} `{}` is not a number", fields[k])))
            };
            let whole = |k: usize, name: &str| -> Result<u64, MotError> {
                let v = num(k, name)?;
                if v < 0.0 || v.fract() != 0.0 {
                    return Err(err(format!(
                        "{name} `{}` is not a whole number ≥ 0",
                        fields[k]
                    )));
                }
                Ok(v as u64)
            };
            let frame = whole(0, "frame")?;
            let id = whole(1, "id")?;
            let b = MotBox {
                id,
                x: num(2, "x")?,
                y: num(3, "y")?,
                w: num(4, "width")?,
                h: num(5, "height")?,
            };
            if b.w <= 0.0 || b.h <= 0.0 {
                return Err(err("width and height must be above 0".into()));
            }
            let conf = if fields.len() > 6 {
                num(6, "conf")?
            } else {
                1.0
            };
            if conf != 0.0 {
                if seq
                    .frames
                    .get(&frame)
                    .is_some_and(|f| f.iter().any(|o| o.id == id))
                {
                    return Err(err(format!("id {id} appears twice in frame {frame}")));
                }
                seq.push(frame, b);
            }
        }
        Ok(seq)
    }
}

/// CLEAR MOT and identity metrics of a tracker's output against ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MotMetrics {
    /// Frames evaluated.
    pub frames: u64,
    /// Ground-truth boxes in them.
    pub gt: u64,
    /// Track boxes in them.
    pub hyp: u64,
    /// Matched pairs.
    pub matches: u64,
    /// Track boxes matching no ground truth.
    pub false_positives: u64,
    /// Ground-truth boxes matching no track.
    pub misses: u64,
    /// Ground-truth objects matched to another track than before.
    pub id_switches: u64,
    /// 1 − (misses + false positives + switches) / ground-truth boxes.
    pub mota: f64,
    /// Mean IoU of the matched pairs.
    pub mean_iou: f64,
    /// Boxes matched under the best global id-to-id pairing.
    pub idtp: u64,
    /// Track boxes outside it.
    pub idfp: u64,
    /// Ground-truth boxes outside it.
    pub idfn: u64,
    /// 2 IDTP / (2 IDTP + IDFP + IDFN).
    pub idf1: f64,
}

/// A cost no real match reaches: pairs under the IoU threshold.
const FORBIDDEN: f64 = 1e9;

/// Compares `hyp` with `gt` over `frames` (MOT frame numbers; other frames are ignored, so a
/// tracker that saw every second frame is judged on those frames only).
pub fn evaluate(gt: &MotSequence, hyp: &MotSequence, frames: &[u64]) -> MotMetrics {
    let mut m = MotMetrics::default();
    let none: Vec<MotBox> = Vec::new();
    // Ground-truth id -> the track id it was matched to last.
    let mut last: HashMap<u64, u64> = HashMap::new();
    // (gt id, track id) -> frames in which their boxes match.
    let mut pair_frames: HashMap<(u64, u64), u64> = HashMap::new();
    let mut gt_ids: BTreeMap<u64, ()> = BTreeMap::new();
    let mut hyp_ids: BTreeMap<u64, ()> = BTreeMap::new();
    let mut iou_sum = 0.0;
    let mut frames: Vec<u64> = frames.to_vec();
    frames.sort_unstable();
    frames.dedup();
    for &f in &frames {
        let g = gt.frames.get(&f).unwrap_or(&none);
        let h = hyp.frames.get(&f).unwrap_or(&none);
        m.frames += 1;
        m.gt += g.len() as u64;
        m.hyp += h.len() as u64;
        let iou: Vec<f64> = g.iter().flat_map(|a| h.iter().map(|b| a.iou(b))).collect();
        for (i, a) in g.iter().enumerate() {
            gt_ids.insert(a.id, ());
            for (j, b) in h.iter().enumerate() {
                if iou[i * h.len() + j] >= IOU_MATCH {
                    *pair_frames.entry((a.id, b.id)).or_default() += 1;
                }
            }
        }
        for b in h {
            hyp_ids.insert(b.id, ());
        }
        let mut gt_match: Vec<Option<usize>> = vec![None; g.len()];
        let mut hyp_taken = vec![false; h.len()];
        // Correspondences that still hold are kept.
        for (i, a) in g.iter().enumerate() {
            let Some(&prev) = last.get(&a.id) else {
                continue;
            };
            if let Some(j) = h.iter().position(|b| b.id == prev) {
                if !hyp_taken[j] && iou[i * h.len() + j] >= IOU_MATCH {
                    gt_match[i] = Some(j);
                    hyp_taken[j] = true;
                }
            }
        }
        // The rest: most matches first, then the least total 1 - IoU.
        let free_g: Vec<usize> = (0..g.len()).filter(|&i| gt_match[i].is_none()).collect();
        let free_h: Vec<usize> = (0..h.len()).filter(|&j| !hyp_taken[j]).collect();
        let cost: Vec<f64> = free_g
            .iter()
            .flat_map(|&i| {
                let iou = &iou;
                free_h.iter().map(move |&j| {
                    let v = iou[i * h.len() + j];
                    if v >= IOU_MATCH {
                        1.0 - v
                    } else {
                        FORBIDDEN
                    }
                })
            })
            .collect();
        for (r, c) in min_cost_assignment(&cost, free_g.len(), free_h.len())
            .into_iter()
            .enumerate()
        {
            let Some(c) = c else { continue };
            if cost[r * free_h.len() + c] >= FORBIDDEN {
                continue;
            }
            let (i, j) = (free_g[r], free_h[c]);
            if last.get(&g[i].id).is_some_and(|&p| p != h[j].id) {
                m.id_switches += 1;
            }
            gt_match[i] = Some(j);
            hyp_taken[j] = true;
        }
        for (i, j) in gt_match.iter().enumerate() {
            match j {
                Some(j) => {
                    m.matches += 1;
                    iou_sum += iou[i * h.len() + j];
                    last.insert(g[i].id, h[*j].id);
                }
                None => m.misses += 1,
            }
        }
        m.false_positives += hyp_taken.iter().filter(|t| !**t).count() as u64;
    }
    m.mota = if m.gt > 0 {
        1.0 - (m.misses + m.false_positives + m.id_switches) as f64 / m.gt as f64
    } else {
        0.0
    };
    m.mean_iou = if m.matches > 0 {
        iou_sum / m.matches as f64
    } else {
        0.0
    };
    m.idtp = best_identity_pairing(&gt_ids, &hyp_ids, &pair_frames);
    m.idfp = m.hyp - m.idtp;
    m.idfn = m.gt - m.idtp;
    m.idf1 = if m.gt + m.hyp > 0 {
        2.0 * m.idtp as f64 / (m.gt + m.hyp) as f64
    } else {
        0.0
    };
    m
}

/// The most matched frames any one-to-one pairing of ground-truth and track ids achieves.
fn best_identity_pairing(
    gt_ids: &BTreeMap<u64, ()>,
    hyp_ids: &BTreeMap<u64, ()>,
    pair_frames: &HashMap<(u64, u64), u64>,
) -> u64 {
    let g: Vec<u64> = gt_ids.keys().copied().collect();
    let h: Vec<u64> = hyp_ids.keys().copied().collect();
    let cost: Vec<f64> = g
        .iter()
        .flat_map(|&a| {
            h.iter()
                .map(move |&b| -(pair_frames.get(&(a, b)).copied().unwrap_or(0) as f64))
        })
        .collect();
    min_cost_assignment(&cost, g.len(), h.len())
        .into_iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| pair_frames.get(&(g[r], h[c])).copied().unwrap_or(0)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10x10 box at `(x, 0)` for object `id`.
    fn at(id: u64, x: f64) -> MotBox {
        MotBox {
            id,
            x,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        }
    }

    /// A sequence from `(frame, id, x)` triples.
    fn seq(rows: &[(u64, u64, f64)]) -> MotSequence {
        let mut s = MotSequence::default();
        for &(f, id, x) in rows {
            s.push(f, at(id, x));
        }
        s
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn iou_of_shifted_boxes() {
        // Shifted by 2 of 10: intersection 80, union 120.
        assert!(close(at(1, 0.0).iou(&at(2, 2.0)), 80.0 / 120.0));
        assert_eq!(at(1, 0.0).iou(&at(2, 10.0)), 0.0);
    }

    #[test]
    fn perfect_tracking_scores_one() {
        let gt = seq(&[(1, 1, 0.0), (1, 2, 50.0), (2, 1, 5.0), (2, 2, 45.0)]);
        let hyp = seq(&[(1, 7, 0.0), (1, 8, 50.0), (2, 7, 5.0), (2, 8, 45.0)]);
        let m = evaluate(&gt, &hyp, &[1, 2]);
        assert_eq!((m.gt, m.hyp, m.matches), (4, 4, 4));
        assert_eq!((m.misses, m.false_positives, m.id_switches), (0, 0, 0));
        assert!(close(m.mota, 1.0) && close(m.idf1, 1.0) && close(m.mean_iou, 1.0));
    }

    #[test]
    fn one_switch_halfway() {
        // One object, four frames; the tracker calls it 1, then 2.
        let gt = seq(&[(1, 1, 0.0), (2, 1, 0.0), (3, 1, 0.0), (4, 1, 0.0)]);
        let hyp = seq(&[(1, 1, 0.0), (2, 1, 0.0), (3, 2, 0.0), (4, 2, 0.0)]);
        let m = evaluate(&gt, &hyp, &[1, 2, 3, 4]);
        assert_eq!((m.misses, m.false_positives, m.id_switches), (0, 0, 1));
        // MOTA = 1 - 1/4; IDF1: object 1 pairs with one track for 2 of 4 frames: 2*2/(4+4).
        assert!(close(m.mota, 0.75), "{}", m.mota);
        assert_eq!((m.idtp, m.idfp, m.idfn), (2, 2, 2));
        assert!(close(m.idf1, 0.5));
    }

    #[test]
    fn a_miss_a_false_positive_and_a_box_too_far_off() {
        // Frame 2: the object is missed and a track appears elsewhere. Frame 3: the track is
        // back with the same id (no switch). Frame 4: its box overlaps with IoU 1/3 < 0.5, a
        // miss and a false positive.
        let gt = seq(&[(1, 1, 0.0), (2, 1, 0.0), (3, 1, 0.0), (4, 1, 0.0)]);
        let hyp = seq(&[(1, 5, 0.0), (2, 9, 80.0), (3, 5, 1.0), (4, 5, 5.0)]);
        let m = evaluate(&gt, &hyp, &[1, 2, 3, 4]);
        assert_eq!(
            (m.matches, m.misses, m.false_positives, m.id_switches),
            (2, 2, 2, 0)
        );
        // MOTA = 1 - (2 + 2 + 0)/4 = 0; IDTP = 2 (object 1 with track 5): IDF1 = 4/8.
        assert!(close(m.mota, 0.0));
        assert_eq!((m.idtp, m.idfp, m.idfn), (2, 2, 2));
        assert!(close(m.idf1, 0.5));
        // IoU of the match in frame 3: 90/110.
        assert!(close(m.mean_iou, (1.0 + 90.0 / 110.0) / 2.0));
    }

    #[test]
    fn two_objects_swapping_tracks_are_two_switches() {
        // Objects 1 and 2 are 20 px apart; at frame 3 the tracks' ids swap.
        let gt = seq(&[
            (1, 1, 0.0),
            (1, 2, 20.0),
            (2, 1, 0.0),
            (2, 2, 20.0),
            (3, 1, 0.0),
            (3, 2, 20.0),
            (4, 1, 0.0),
            (4, 2, 20.0),
        ]);
        let hyp = seq(&[
            (1, 10, 0.0),
            (1, 11, 20.0),
            (2, 10, 0.0),
            (2, 11, 20.0),
            (3, 11, 0.0),
            (3, 10, 20.0),
            (4, 11, 0.0),
            (4, 10, 20.0),
        ]);
        let m = evaluate(&gt, &hyp, &[1, 2, 3, 4]);
        assert_eq!((m.misses, m.false_positives, m.id_switches), (0, 0, 2));
        assert!(close(m.mota, 1.0 - 2.0 / 8.0));
        // Each pairing holds for 2 of 4 frames: IDTP 4 of 8 + 8 boxes.
        assert_eq!(m.idtp, 4);
        assert!(close(m.idf1, 0.5));
    }

    #[test]
    fn a_kept_match_wins_over_a_better_newcomer() {
        // Frame 2: track 2 fits object 1 better (IoU 1) than track 1 does (IoU 90/110), but
        // object 1 keeps track 1, so no switch; track 2 is a false positive.
        let gt = seq(&[(1, 1, 0.0), (2, 1, 0.0)]);
        let hyp = seq(&[(1, 1, 0.0), (2, 1, 1.0), (2, 2, 0.0)]);
        let m = evaluate(&gt, &hyp, &[1, 2]);
        assert_eq!((m.matches, m.false_positives, m.id_switches), (2, 1, 0));
        // IDF1: object 1 with track 1, 2 frames: 2*2 / (2 + 3).
        assert!(close(m.idf1, 4.0 / 5.0));
    }

    #[test]
    fn the_assignment_maximises_matches_not_greed() {
        // 10 px boxes d px apart have IoU (10 - d) / (10 + d): a match up to d = 3.3.
        // Object 2 fits track 1 perfectly, but object 1 can only match track 1 (d = 3), and
        // object 2 can also match track 2 (d = 3): taking the best pair first would match one
        // object, the assignment matches both.
        let gt = seq(&[(1, 1, -3.0), (1, 2, 0.0)]);
        let hyp = seq(&[(1, 1, 0.0), (1, 2, 3.0)]);
        let m = evaluate(&gt, &hyp, &[1]);
        assert_eq!((m.matches, m.misses, m.false_positives), (2, 0, 0));
        assert!(close(m.mean_iou, 7.0 / 13.0));
    }

    #[test]
    fn only_the_frames_asked_for_count() {
        let gt = seq(&[(1, 1, 0.0), (2, 1, 0.0), (3, 1, 0.0), (4, 1, 0.0)]);
        let hyp = seq(&[(1, 1, 0.0), (3, 1, 0.0)]);
        let m = evaluate(&gt, &hyp, &[1, 3]);
        assert_eq!((m.frames, m.gt, m.misses), (2, 2, 0));
        assert!(close(m.mota, 1.0));
    }

    #[test]
    fn gt_files_parse_and_bad_lines_are_named() {
        let text = "1,1,10,20,30,40,1,1,1.0\n1,2,0,0,5,5,0,1,1\n\n2,1,11,20,30,40,1,1,0.8\n";
        let s = MotSequence::parse(text, Path::new("gt.txt")).unwrap();
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.frames[&1].len(), 1, "conf 0 rows are ignored");
        assert_eq!(s.frames[&2][0].x, 11.0);
        for (bad, want) in [
            ("1,1,10,20\n", "line 1: 4 fields"),
            ("1,1,10,20,30,40\n2,x,1,1,1,1\n", "line 2: id `x`"),
            ("1,1,10,20,0,40\n", "width and height"),
            (
                "1,1,0,0,5,5\n1,1,3,3,5,5\n",
                "id 1 appears twice in frame 1",
            ),
        ] {
            let e = MotSequence::parse(bad, Path::new("gt.txt")).unwrap_err();
            assert!(e.to_string().contains(want), "{bad:?}: {e}");
        }
    }
}
