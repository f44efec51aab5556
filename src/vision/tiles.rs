//! Tiling for small and far objects: the region of interest split into a grid of overlapping
//! tiles (`cameras[].tiles`), each resized into the model input on its own, so an object
//! covers `cols` (`rows`) times more of the input than in one whole-frame pass. It costs one
//! invoke per tile.
//!
//! The tiles' detections are merged in frame coordinates by [`TileMerge`]:
//!
//! 1. a box that touches a tile edge shared with a neighbour is *cut*: the object may go on
//!    beyond it;
//! 2. a cut piece mostly inside a larger, uncut box of its class is dropped in favour of that
//!    whole one (the object fits in the overlap, so some tile saw all of it);
//! 3. the cut pieces left, of objects larger than the overlap, are joined into their union
//!    when they come from neighbouring tiles, face each other across the seam, overlap there
//!    and line up along it. Dropping first keeps two objects in one lane, each cut on
//!    another side of the seam, from being joined into one;
//! 4. class-aware non-maximum suppression ([`non_max_suppression`]) removes the duplicates of
//!    objects seen whole in two tiles.
//!
//! With `full_frame` (the default) the whole region is one more pass, a tile sharing no edge:
//! objects larger than the overlap are seen whole there, so step 2 drops their cut pieces
//! even when the neighbouring tile missed its part, which step 3 cannot mend.
//!
//! Every buffer is sized in [`TileMerge::new`]; a frame allocates nothing.

use crate::config::TilesConfig;
use crate::geometry::{BBox, Roi};

use super::detection::{Detection, Detections, MAX_DETECTIONS};
use super::ssd::{non_max_suppression, Candidate, NmsOptions};

/// A tile edge shared with a neighbouring tile, as a bit of [`Tile::inner`].
pub const LEFT: u8 = 1;
/// See [`LEFT`].
pub const TOP: u8 = 2;
/// See [`LEFT`].
pub const RIGHT: u8 = 4;
/// See [`LEFT`].
pub const BOTTOM: u8 = 8;

/// How close to a shared edge (as a share of the tile's width or height) a box edge must lie
/// for the box to count as cut by it. SSD and YOLOX boxes of truncated objects end within a
/// pixel or two of the input border.
const EDGE_MARGIN: f32 = 0.02;
/// Two cut pieces are one object when their extents along the seam overlap by this much
/// (intersection over union along that axis).
const SEAM_ALIGNMENT: f32 = 0.5;
/// A cut piece whose area lies this much inside a larger box of its class is part of it.
const CONTAINED: f32 = 0.6;
/// Boxes of one class from two tiles overlapping by more than this IoU are one object.
const MERGE_IOU: f32 = 0.5;

/// One tile: the frame region it samples, the region its whole input tensor stands for
/// (boxes map back through it), and which of its edges it shares with a neighbour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    /// The frame region sampled, in frame-normalized coordinates.
    pub rect: Roi,
    /// The frame region the tensor stands for: `rect`, extended over any letterbox padding.
    pub region: Roi,
    /// Edges shared with a neighbouring tile ([`LEFT`], [`TOP`], [`RIGHT`], [`BOTTOM`]).
    pub inner: u8,
}

/// `n` spans of equal length over `[start, start + len]`, each overlapping the next by
/// `overlap` of its own length: `(start, length)` pairs, the last ending exactly at the end.
fn spans(start: f32, len: f32, n: u32, overlap: f32) -> impl Iterator<Item = (f32, f32)> {
    let n = n.max(1);
    let size = len / (n as f32 - (n - 1) as f32 * overlap);
    let step = size * (1.0 - overlap);
    (0..n).map(move |i| {
        let s = if i == 0 {
            start
        } else if i + 1 == n {
            start + len - size
        } else {
            start + i as f32 * step
        };
        (s, size)
    })
}

/// The tiles of `grid` over `roi`, row by row, then the whole `roi` (no shared edges) with
/// `grid.full_frame`. Each tile's `region` is its `rect` until the preprocessor snaps it to
/// pixels.
pub fn grid(roi: Roi, grid: &TilesConfig) -> Vec<Tile> {
    let mut tiles = Vec::with_capacity(grid.invokes());
    for (row, (y, height)) in spans(roi.y, roi.height, grid.rows, grid.overlap).enumerate() {
        for (col, (x, width)) in spans(roi.x, roi.width, grid.cols, grid.overlap).enumerate() {
            let (col, row) = (col as u32, row as u32);
            let mut inner = 0;
            for (shared, edge) in [
                (col > 0, LEFT),
                (row > 0, TOP),
                (col + 1 < grid.cols, RIGHT),
                (row + 1 < grid.rows, BOTTOM),
            ] {
                if shared {
                    inner |= edge;
                }
            }
            let rect = Roi {
                x,
                y,
                width,
                height,
            };
            tiles.push(Tile {
                rect,
                region: rect,
                inner,
            });
        }
    }
    if grid.full_frame && grid.count() > 1 {
        tiles.push(Tile {
            rect: roi,
            region: roi,
            inner: 0,
        });
    }
    tiles
}

/// One tile's detection, in frame coordinates.
#[derive(Debug, Clone, Copy)]
struct Piece {
    detection: Detection,
    tile: usize,
    /// Shared tile edges the box touches.
    cut: u8,
    alive: bool,
}

/// Collects the detections of every tile of a frame and merges them into one list; sized
/// for `tiles` tiles at start-up.
#[derive(Debug)]
pub struct TileMerge {
    pieces: Vec<Piece>,
    candidates: Vec<Candidate>,
    nms: NmsOptions,
}

impl TileMerge {
    /// A merge for up to `tiles` tiles of up to [`MAX_DETECTIONS`] detections each.
    pub fn new(tiles: usize) -> TileMerge {
        let capacity = tiles.max(1) * MAX_DETECTIONS;
        TileMerge {
            pieces: Vec::with_capacity(capacity),
            candidates: Vec::with_capacity(capacity),
            nms: NmsOptions {
                iou_threshold: MERGE_IOU,
                weighted: false,
                class_aware: true,
            },
        }
    }

    /// Forgets the previous frame.
    pub fn clear(&mut self) {
        self.pieces.clear();
    }

    /// Adds tile number `index`'s detections, boxes normalized to its tensor.
    pub fn add(&mut self, index: usize, tile: &Tile, detections: &[Detection]) {
        let r = tile.rect;
        let (mx, my) = (EDGE_MARGIN * r.width, EDGE_MARGIN * r.height);
        for d in detections {
            // Never past the capacity reserved at start-up.
            if self.pieces.len() == self.pieces.capacity() {
                return;
            }
            let b = tile.region.to_frame(d.bbox);
            let mut cut = 0;
            for (touches, edge) in [
                (b.xmin <= r.x + mx, LEFT),
                (b.ymin <= r.y + my, TOP),
                (b.xmax >= r.x + r.width - mx, RIGHT),
                (b.ymax >= r.y + r.height - my, BOTTOM),
            ] {
                if touches && tile.inner & edge != 0 {
                    cut |= edge;
                }
            }
            self.pieces.push(Piece {
                detection: Detection { bbox: b, ..*d },
                tile: index,
                cut,
                alive: true,
            });
        }
    }

    /// Merges everything added since [`TileMerge::clear`] into `out` (cleared first): cut
    /// pieces joined or dropped for the whole box, then duplicates suppressed.
    pub fn finish(&mut self, out: &mut Detections) {
        self.drop_contained_pieces();
        self.join_pieces();
        // Fragments inside a joined object.
        self.drop_contained_pieces();
        self.candidates.clear();
        for (i, p) in self.pieces.iter().enumerate().filter(|(_, p)| p.alive) {
            self.candidates.push(Candidate {
                class: p.detection.class,
                score: p.detection.score,
                anchor: i as u32,
                bbox: p.detection.bbox,
            });
        }
        out.clear();
        non_max_suppression(&mut self.candidates, &self.nms, out.capacity(), out);
    }

    /// Joins cut pieces of one object from neighbouring tiles into their union, each piece
    /// with the one across the seam that lines up best with it, until no two pieces join (an
    /// object across three tiles joins twice). A joined edge is no longer cut, so a piece
    /// joins once per seam.
    fn join_pieces(&mut self) {
        let n = self.pieces.len();
        loop {
            let mut joined = false;
            for i in 0..n {
                let a = self.pieces[i];
                if !a.alive || a.cut == 0 {
                    continue;
                }
                let mut best: Option<(usize, u8, f32)> = None;
                for (j, b) in self.pieces.iter().enumerate() {
                    let partner = j != i
                        && b.alive
                        && b.cut != 0
                        && b.tile != a.tile
                        && b.detection.class == a.detection.class;
                    let Some((cut, fit)) = partner.then(|| seam(&a, b)).flatten() else {
                        continue;
                    };
                    if best.is_none_or(|(_, _, f)| fit > f) {
                        best = Some((j, cut, fit));
                    }
                }
                let Some((j, cut, _)) = best else {
                    continue;
                };
                let (x, y) = (a.detection.bbox, self.pieces[j].detection.bbox);
                let score = a.detection.score.max(self.pieces[j].detection.score);
                let p = &mut self.pieces[i];
                p.detection.bbox = BBox::new(
                    x.xmin.min(y.xmin),
                    x.ymin.min(y.ymin),
                    x.xmax.max(y.xmax),
                    x.ymax.max(y.ymax),
                );
                p.detection.score = score;
                p.cut = cut;
                self.pieces[j].alive = false;
                joined = true;
            }
            if !joined {
                return;
            }
        }
    }

    /// Drops each cut piece that lies mostly inside a larger, uncut box of its class.
    fn drop_contained_pieces(&mut self) {
        let n = self.pieces.len();
        for i in 0..n {
            let a = self.pieces[i];
            if !a.alive || a.cut == 0 {
                continue;
            }
            let (ab, area) = (a.detection.bbox, a.detection.bbox.area());
            let whole = self.pieces.iter().enumerate().any(|(j, b)| {
                let bb = b.detection.bbox;
                j != i
                    && b.alive
                    && b.cut == 0
                    && b.detection.class == a.detection.class
                    && bb.area() > area
                    && ab.overlap_of_smaller(&bb) >= CONTAINED
            });
            if whole {
                self.pieces[i].alive = false;
            }
        }
    }
}

/// Whether `a` and `b` are two pieces of one object cut by the seam between their tiles
/// (`a` left of or above `b`); if so, the shared edges the union is still cut by and how
/// well they line up along the seam.
fn seam(a: &Piece, b: &Piece) -> Option<(u8, f32)> {
    let (x, y) = (a.detection.bbox, b.detection.bbox);
    let across = a.cut & RIGHT != 0 && b.cut & LEFT != 0 && x.xmin < y.xmin && x.xmax > y.xmin;
    let down = a.cut & BOTTOM != 0 && b.cut & TOP != 0 && x.ymin < y.ymin && x.ymax > y.ymin;
    let (fit, cut) = if across {
        (
            overlap_1d(x.ymin, x.ymax, y.ymin, y.ymax),
            (a.cut & !RIGHT) | (b.cut & !LEFT),
        )
    } else if down {
        (
            overlap_1d(x.xmin, x.xmax, y.xmin, y.xmax),
            (a.cut & !BOTTOM) | (b.cut & !TOP),
        )
    } else {
        return None;
    };
    (fit >= SEAM_ALIGNMENT).then_some((cut, fit))
}

/// Intersection over union of the intervals `[a0, a1]` and `[b0, b1]`.
fn overlap_1d(a0: f32, a1: f32, b0: f32, b1: f32) -> f32 {
    let inter = (a1.min(b1) - a0.max(b0)).max(0.0);
    let union = a1.max(b1) - a0.min(b0);
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAR: u16 = 2;
    const PERSON: u16 = 0;

    /// The grid alone: the merge tests below give each tile's detections by hand.
    fn tiles(cols: u32, rows: u32, overlap: f32) -> TilesConfig {
        TilesConfig {
            cols,
            rows,
            overlap,
            full_frame: false,
        }
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn one_tile_is_the_roi() {
        let roi = Roi {
            x: 0.1,
            y: 0.2,
            width: 0.5,
            height: 0.6,
        };
        let t = grid(roi, &tiles(1, 1, 0.2));
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].rect, t[0].region, t[0].inner), (roi, roi, 0));
    }

    #[test]
    fn tiles_overlap_by_the_share_asked_and_cover_the_roi() {
        let roi = Roi {
            x: 0.1,
            y: 0.0,
            width: 0.8,
            height: 1.0,
        };
        let t = grid(roi, &tiles(3, 2, 0.25));
        assert_eq!(t.len(), 6);
        // Equal tiles, row by row; the first at the ROI's corner, the last at the other one.
        let (w, h) = (t[0].rect.width, t[0].rect.height);
        assert!(t
            .iter()
            .all(|t| close(t.rect.width, w) && close(t.rect.height, h)));
        assert!(close(t[0].rect.x, 0.1) && close(t[0].rect.y, 0.0));
        let last = t[5].rect;
        assert!(close(last.x + last.width, 0.9) && close(last.y + last.height, 1.0));
        // Neighbours share a quarter of a tile.
        assert!(close(t[0].rect.x + w - t[1].rect.x, 0.25 * w));
        assert!(close(t[1].rect.x + w - t[2].rect.x, 0.25 * w));
        assert!(close(t[0].rect.y + h - t[3].rect.y, 0.25 * h));
        // 3 tiles less 2 overlaps span the ROI.
        assert!(close(3.0 * w - 2.0 * 0.25 * w, 0.8));
        // Every point of the ROI is in some tile.
        for i in 0..=40 {
            for j in 0..=40 {
                let (px, py) = (0.1 + 0.8 * i as f32 / 40.0, j as f32 / 40.0);
                assert!(t.iter().any(|t| {
                    let r = t.rect;
                    px >= r.x - 1e-6
                        && px <= r.x + r.width + 1e-6
                        && py >= r.y - 1e-6
                        && py <= r.y + r.height + 1e-6
                }));
            }
        }
        // Only edges between tiles are shared; the ROI's border is not.
        assert_eq!(t[0].inner, RIGHT | BOTTOM);
        assert_eq!(t[1].inner, LEFT | RIGHT | BOTTOM);
        assert_eq!(t[5].inner, LEFT | TOP);
    }

    /// Two tiles side by side over the frame, [0, 0.625] and [0.375, 1] (overlap 0.4).
    fn two_tiles() -> Vec<Tile> {
        let t = grid(Roi::FULL, &tiles(2, 1, 0.4));
        assert!(close(t[0].rect.width, 0.625) && close(t[1].rect.x, 0.375));
        t
    }

    /// A detection of `class` at frame box `b`, as tile `tile` reports it (tensor coords).
    fn seen(tile: &Tile, class: u16, score: f32, b: BBox) -> Detection {
        let r = tile.region;
        let clip = |v: f32, o: f32, l: f32| ((v - o) / l).clamp(0.0, 1.0);
        Detection {
            class,
            score,
            bbox: BBox::new(
                clip(b.xmin, r.x, r.width),
                clip(b.ymin, r.y, r.height),
                clip(b.xmax, r.x, r.width),
                clip(b.ymax, r.y, r.height),
            ),
        }
    }

    fn merge(tiles: &[Tile], per_tile: &[Vec<Detection>]) -> Detections {
        let mut m = TileMerge::new(tiles.len());
        m.clear();
        for (i, (t, d)) in tiles.iter().zip(per_tile).enumerate() {
            m.add(i, t, d);
        }
        let mut out = Detections::new();
        m.finish(&mut out);
        out
    }

    #[test]
    fn an_object_larger_than_the_overlap_split_across_two_tiles_is_one_box() {
        let t = two_tiles();
        // A bus from x 0.2 to 0.8: each tile sees the part up to its shared edge.
        let bus = BBox::new(0.2, 0.3, 0.8, 0.5);
        let out = merge(
            &t,
            &[
                vec![seen(&t[0], CAR, 0.6, bus)],
                vec![seen(&t[1], CAR, 0.7, bus)],
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].bbox.close_to(&bus), "{:?}", out[0].bbox);
        assert_eq!(out[0].score, 0.7);
    }

    #[test]
    fn a_piece_cut_by_a_tile_edge_gives_way_to_the_whole_box() {
        let t = two_tiles();
        // Inside the right tile, crossing the left tile's right edge at 0.625.
        let car = BBox::new(0.55, 0.3, 0.7, 0.4);
        let out = merge(
            &t,
            &[
                vec![seen(&t[0], CAR, 0.9, car)],
                vec![seen(&t[1], CAR, 0.6, car)],
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].bbox.close_to(&car), "{:?}", out[0].bbox);
    }

    #[test]
    fn objects_seen_whole_twice_are_one_and_others_stay_apart() {
        let t = two_tiles();
        let both = BBox::new(0.45, 0.3, 0.55, 0.4);
        let left = BBox::new(0.05, 0.6, 0.15, 0.7);
        let right = BBox::new(0.85, 0.6, 0.95, 0.7);
        // A person where the car is, and a second car just next to the cut one: other
        // objects, kept.
        let out = merge(
            &t,
            &[
                vec![
                    seen(&t[0], CAR, 0.8, both),
                    seen(&t[0], CAR, 0.7, left),
                    seen(&t[0], PERSON, 0.6, both),
                ],
                vec![seen(&t[1], CAR, 0.75, both), seen(&t[1], CAR, 0.7, right)],
            ],
        );
        assert_eq!(out.len(), 4, "{out:?}");
        let cars: Vec<BBox> = out
            .iter()
            .filter(|d| d.class == CAR)
            .map(|d| d.bbox)
            .collect();
        assert_eq!(cars.len(), 3);
        for b in [both, left, right] {
            assert!(cars.iter().any(|c| c.close_to(&b)), "{b:?} in {cars:?}");
        }
    }

    #[test]
    fn pieces_in_two_lanes_are_not_joined() {
        let t = two_tiles();
        // Two long vehicles in different lanes, each cut at the seam from its own side only
        // in part: their extents along the seam do not line up.
        let upper = BBox::new(0.2, 0.1, 0.8, 0.2);
        let lower = BBox::new(0.2, 0.25, 0.8, 0.35);
        let out = merge(
            &t,
            &[
                vec![seen(&t[0], CAR, 0.8, upper)],
                vec![seen(&t[1], CAR, 0.8, lower)],
            ],
        );
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn an_object_on_the_corner_of_four_tiles_is_one_box() {
        let t = grid(Roi::FULL, &tiles(2, 2, 0.2));
        let truck = BBox::new(0.3, 0.3, 0.7, 0.7);
        let per_tile: Vec<Vec<Detection>> =
            t.iter().map(|t| vec![seen(t, CAR, 0.5, truck)]).collect();
        let out = merge(&t, &per_tile);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].bbox.close_to(&truck), "{:?}", out[0].bbox);
    }

    #[test]
    fn the_full_frame_pass_is_one_more_tile_sharing_no_edge() {
        let whole = TilesConfig {
            full_frame: true,
            ..tiles(2, 2, 0.2)
        };
        let t = grid(Roi::FULL, &whole);
        assert_eq!((t.len(), whole.count(), whole.invokes()), (5, 4, 5));
        assert_eq!((t[4].rect, t[4].inner), (Roi::FULL, 0));
        // One tile is the whole region already: no second pass of it.
        let one = TilesConfig {
            full_frame: true,
            ..tiles(1, 1, 0.2)
        };
        assert_eq!((grid(Roi::FULL, &one).len(), one.invokes()), (1, 1));
    }

    #[test]
    fn a_piece_whose_other_half_no_tile_saw_gives_way_to_the_full_frame_box() {
        // Found on traffic.mjpeg: a car crossing a seam is detected cut in one tile and not at
        // all in the other; alone, the cut piece shrinks as the car moves on and the track
        // breaks. The whole region's pass sees the car whole.
        let grid_only = grid(Roi::FULL, &tiles(2, 1, 0.2));
        let whole = Tile {
            rect: Roi::FULL,
            region: Roi::FULL,
            inner: 0,
        };
        let t = [grid_only[0], grid_only[1], whole];
        let car = BBox::new(0.45, 0.4, 0.7, 0.55);
        let out = merge(
            &t,
            &[
                vec![seen(&t[0], CAR, 0.7, car)],
                vec![],
                vec![seen(&t[2], CAR, 0.5, car)],
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].bbox.close_to(&car), "{:?}", out[0].bbox);
        // Without the whole pass the cut piece is all there is.
        let out = merge(&t[..2], &[vec![seen(&t[0], CAR, 0.7, car)], vec![]]);
        assert_eq!(out.len(), 1);
        assert!(out[0].bbox.xmax < car.xmax - 0.05, "{:?}", out[0].bbox);
    }
}
