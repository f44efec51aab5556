//! Draws a [`ViewFrame`] into an RGB canvas allocated at start-up: the frame, zone polygons
//! (shaded while occupied), counting lines with their in/out counts, track boxes labelled
//! "id class score", and the signal groups' states. Text is the 8x8 bitmap font of `font8x8`.
//! Drawing allocates nothing: labels are formatted into fixed stack strings.

use std::fmt::Write as _;

use crate::capture::convert::{to_rgb, ConvertError};
use crate::capture::FrameFormat;
use crate::control::SignalStatus;
use crate::geometry::Point;
use crate::signal::GroupState;

use super::slot::ViewFrame;

/// A zone as drawn: its name and polygon (normalized).
#[derive(Debug, Clone)]
pub struct ZoneShape {
    /// Zone name.
    pub name: String,
    /// Polygon corners, normalized.
    pub points: Vec<Point>,
}

/// A counting line as drawn.
#[derive(Debug, Clone)]
pub struct LineShape {
    /// Line name.
    pub name: String,
    /// Start, normalized.
    pub from: Point,
    /// End, normalized.
    pub to: Point,
}

/// What is fixed about one camera's picture: its size and format, its zones and lines (in
/// its scene's order) and the counted class names.
#[derive(Debug, Clone)]
pub struct CameraLayout {
    /// Camera name.
    pub name: String,
    /// The frames' format.
    pub format: FrameFormat,
    /// Zones drawn on this camera.
    pub zones: Vec<ZoneShape>,
    /// Lines drawn on this camera.
    pub lines: Vec<LineShape>,
    /// Counted class labels, by class index.
    pub classes: Vec<String>,
}

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const ZONE_FREE: Rgb = [80, 160, 255];
const ZONE_BUSY: Rgb = [255, 140, 0];
const LINE: Rgb = [255, 0, 255];
/// Box colours by class index.
const CLASS_COLOURS: [Rgb; 6] = [
    [0, 230, 64],
    [255, 64, 64],
    [255, 220, 0],
    [0, 200, 255],
    [200, 120, 255],
    [255, 255, 255],
];

/// Most polygon corners (config allows 64), so edge crossings fit a fixed array.
const MAX_CROSSINGS: usize = 64;

/// Trail slots, by track id modulo this; a track whose slot another took starts a new trail.
const TRAILS: usize = 256;
/// Points kept per trail.
const TRAIL_POINTS: usize = 12;

/// Where one track's box touched the ground over its last view frames (a ring).
#[derive(Debug, Clone, Copy, Default)]
struct Trail {
    id: u64,
    seq: u64,
    points: [Point; TRAIL_POINTS],
    len: usize,
    head: usize,
}

impl Trail {
    /// Adds the track's point of view frame `seq` (once per frame, however often it is drawn).
    fn add(&mut self, id: u64, seq: u64, p: Point) {
        if self.id != id || self.len == 0 {
            *self = Trail {
                id,
                ..Trail::default()
            };
        } else if self.seq == seq {
            return;
        }
        self.seq = seq;
        self.points[self.head] = p;
        self.head = (self.head + 1) % TRAIL_POINTS;
        self.len = (self.len + 1).min(TRAIL_POINTS);
    }

    /// The points, oldest first.
    fn points(&self) -> impl Iterator<Item = Point> + '_ {
        let start = (self.head + TRAIL_POINTS - self.len) % TRAIL_POINTS;
        (0..self.len).map(move |i| self.points[(start + i) % TRAIL_POINTS])
    }
}

/// A label formatted without allocating; text past its capacity is cut.
type Label = heapless::String<64>;

/// One camera's canvas, allocated at start-up and redrawn in place.
#[derive(Debug)]
pub struct Renderer {
    layout: CameraLayout,
    canvas: Vec<u8>,
    /// Text scale: 1 below 480 pixels wide, 2 above.
    scale: usize,
    trails: Box<[Trail]>,
}

impl Renderer {
    /// A renderer with a canvas for `layout`'s frames.
    pub fn new(layout: CameraLayout) -> Renderer {
        let f = layout.format;
        Renderer {
            canvas: vec![0; f.width as usize * f.height as usize * 3],
            scale: if f.width >= 480 { 2 } else { 1 },
            trails: vec![Trail::default(); TRAILS].into_boxed_slice(),
            layout,
        }
    }

    /// The camera this renderer draws.
    pub fn layout(&self) -> &CameraLayout {
        &self.layout
    }

    /// The canvas: packed RGB24, the camera's width and height.
    pub fn canvas(&self) -> &[u8] {
        &self.canvas
    }

    /// Converts `frame` to RGB and, with `annotate`, draws the scene and `signals` on it.
    pub fn render(
        &mut self,
        frame: &ViewFrame,
        signals: Option<&SignalStatus>,
        annotate: bool,
    ) -> Result<(), ConvertError> {
        let f = self.layout.format;
        to_rgb(
            f.pixel_format,
            f.width,
            f.height,
            &frame.pixels,
            &mut self.canvas,
        )?;
        if !annotate {
            return Ok(());
        }
        let mut c = Canvas {
            px: &mut self.canvas,
            w: f.width as i32,
            h: f.height as i32,
            scale: self.scale,
        };
        for (i, zone) in self.layout.zones.iter().enumerate() {
            let count: u32 = frame.zones.get(i).map_or(0, |z| z.iter().sum());
            c.zone(zone, count);
        }
        for (i, line) in self.layout.lines.iter().enumerate() {
            let (inb, outb) = frame
                .lines
                .get(i)
                .map_or((0, 0), |l| (l.total_inbound(), l.total_outbound()));
            c.line(line, inb, outb);
        }
        for t in &frame.tracks {
            let colour = CLASS_COLOURS[t.class_index as usize % CLASS_COLOURS.len()];
            let trail = &mut self.trails[(t.id % TRAILS as u64) as usize];
            trail.add(t.id, frame.seq, t.bbox.ground_point());
            let mut last = None;
            for p in trail.points() {
                let p = c.to_px(p);
                if let Some(q) = last {
                    c.segment(q, p, colour, 1);
                }
                last = Some(p);
            }
            let (x0, y0) = c.to_px(Point::new(t.bbox.xmin, t.bbox.ymin));
            let (x1, y1) = c.to_px(Point::new(t.bbox.xmax, t.bbox.ymax));
            c.rect(x0, y0, x1, y1, colour);
            let class = self
                .layout
                .classes
                .get(t.class_index as usize)
                .map_or("?", String::as_str);
            let mut label = Label::new();
            let _ = write!(label, "{} {} {:.2}", t.id, class, t.score);
            let th = c.text_height();
            c.text(x0, (y0 - th - 1).max(0), &label, BLACK, colour);
        }
        if let Some(signals) = signals {
            let mut y = 2;
            for (name, state) in signals.states() {
                let mut label = Label::new();
                let _ = write!(label, "{name}: {}", state.as_str());
                c.text(2, y, &label, WHITE, state_colour(state));
                y += c.text_height() + 2;
            }
        }
        Ok(())
    }
}

/// A background colour that says what a signal group shows.
fn state_colour(state: GroupState) -> Rgb {
    match state {
        GroupState::Green | GroupState::Walk | GroupState::BusGo => [0, 140, 0],
        GroupState::Amber | GroupState::AmberFlash | GroupState::PedClearance => [180, 120, 0],
        GroupState::On => [0, 90, 200],
        GroupState::Dark | GroupState::Invalid => [60, 60, 60],
        _ => [190, 0, 0],
    }
}

/// Drawing primitives over a borrowed RGB buffer; everything is clipped to it.
struct Canvas<'a> {
    px: &'a mut [u8],
    w: i32,
    h: i32,
    scale: usize,
}

impl Canvas<'_> {
    fn to_px(&self, p: Point) -> (i32, i32) {
        (
            (p.x * self.w as f32).round() as i32,
            (p.y * self.h as f32).round() as i32,
        )
    }

    fn text_height(&self) -> i32 {
        8 * self.scale as i32
    }

    fn put(&mut self, x: i32, y: i32, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = (y as usize * self.w as usize + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Mixes `c` into the pixel at `alpha`/256.
    fn blend(&mut self, x: i32, y: i32, c: Rgb, alpha: u16) {
        if x >= 0 && y >= 0 && x < self.w && y < self.h {
            let i = (y as usize * self.w as usize + x as usize) * 3;
            for (dst, src) in self.px[i..i + 3].iter_mut().zip(c) {
                *dst = ((*dst as u16 * (256 - alpha) + src as u16 * alpha) >> 8) as u8;
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham, with a square pen).
    fn segment(&mut self, (x0, y0): (i32, i32), (x1, y1): (i32, i32), c: Rgb, thick: i32) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        // Bounded: at most dx + dy + 1 steps.
        loop {
            for oy in 0..thick {
                for ox in 0..thick {
                    self.put(x + ox - thick / 2, y + oy - thick / 2, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn rect(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb) {
        let t = self.scale as i32 + 1;
        self.segment((x0, y0), (x1, y0), c, t);
        self.segment((x1, y0), (x1, y1), c, t);
        self.segment((x1, y1), (x0, y1), c, t);
        self.segment((x0, y1), (x0, y0), c, t);
    }

    /// Text on a filled background, 8x8 glyphs times the scale; non-ASCII shows as `?`.
    fn text(&mut self, x: i32, y: i32, s: &str, fg: Rgb, bg: Rgb) {
        let k = self.scale as i32;
        let mut cx = x;
        for ch in s.chars() {
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    let on = bits >> col & 1 == 1;
                    for oy in 0..k {
                        for ox in 0..k {
                            let (px, py) = (cx + col * k + ox, y + row as i32 * k + oy);
                            self.put(px, py, if on { fg } else { bg });
                        }
                    }
                }
            }
            cx += 8 * k;
            if cx >= self.w {
                break;
            }
        }
    }

    /// The zone's outline and name with its count; its inside shaded while occupied.
    fn zone(&mut self, zone: &ZoneShape, count: u32) {
        let colour = if count > 0 { ZONE_BUSY } else { ZONE_FREE };
        if count > 0 {
            self.fill_polygon(&zone.points, colour, 90);
        }
        let n = zone.points.len();
        for i in 0..n {
            let a = self.to_px(zone.points[i]);
            let b = self.to_px(zone.points[(i + 1) % n]);
            self.segment(a, b, colour, self.scale as i32);
        }
        if let Some(&p) = zone.points.first() {
            let (x, y) = self.to_px(p);
            let mut label = Label::new();
            let _ = write!(label, "{} {count}", zone.name);
            let th = self.text_height();
            let x = x.clamp(0, (self.w - 8).max(0));
            let y = (y + 2).clamp(0, (self.h - th).max(0));
            self.text(x, y, &label, BLACK, colour);
        }
    }

    /// Even-odd scanline fill through pixel centres, blended at `alpha`/256.
    fn fill_polygon(&mut self, points: &[Point], c: Rgb, alpha: u16) {
        let n = points.len().min(MAX_CROSSINGS);
        if n < 3 {
            return;
        }
        let (w, h) = (self.w as f32, self.h as f32);
        for y in 0..self.h {
            let fy = (y as f32 + 0.5) / h;
            let mut xs = [0f32; MAX_CROSSINGS];
            let mut k = 0;
            for i in 0..n {
                let (a, b) = (points[i], points[(i + 1) % n]);
                if (a.y <= fy) != (b.y <= fy) {
                    xs[k] = a.x + (fy - a.y) / (b.y - a.y) * (b.x - a.x);
                    k += 1;
                }
            }
            let xs = &mut xs[..k];
            xs.sort_unstable_by(f32::total_cmp);
            for pair in xs.chunks_exact(2) {
                let x0 = ((pair[0] * w - 0.5).ceil() as i32).max(0);
                let x1 = ((pair[1] * w - 0.5).floor() as i32).min(self.w - 1);
                for x in x0..=x1 {
                    self.blend(x, y, c, alpha);
                }
            }
        }
    }

    fn line(&mut self, line: &LineShape, inbound: u64, outbound: u64) {
        let (a, b) = (self.to_px(line.from), self.to_px(line.to));
        self.segment(a, b, LINE, self.scale as i32 + 1);
        let mut label = Label::new();
        let _ = write!(label, "{} in {inbound} out {outbound}", line.name);
        let th = self.text_height();
        let x = ((a.0 + b.0) / 2 + 3).clamp(0, (self.w - 8).max(0));
        let y = ((a.1 + b.1) / 2).clamp(0, (self.h - th).max(0));
        self.text(x, y, &label, WHITE, [120, 0, 120]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::PixelFormat;
    use crate::geometry::BBox;
    use crate::view::slot::ViewTrack;

    fn layout() -> CameraLayout {
        CameraLayout {
            name: "cam".into(),
            format: FrameFormat {
                width: 64,
                height: 48,
                pixel_format: PixelFormat::Rgb24,
            },
            zones: vec![ZoneShape {
                name: "z".into(),
                points: vec![
                    Point::new(0.5, 0.5),
                    Point::new(1.0, 0.5),
                    Point::new(1.0, 1.0),
                    Point::new(0.5, 1.0),
                ],
            }],
            lines: vec![],
            classes: vec!["car".into()],
        }
    }

    #[test]
    fn trails_keep_one_point_per_frame_and_the_newest_few() {
        let mut t = Trail::default();
        t.add(5, 1, Point::new(0.1, 0.0));
        t.add(5, 1, Point::new(0.9, 0.0)); // the same frame drawn again
        assert_eq!(t.points().count(), 1);
        for seq in 2..=20 {
            t.add(5, seq, Point::new(seq as f32, 0.0));
        }
        let xs: Vec<f32> = t.points().map(|p| p.x).collect();
        assert_eq!(xs.len(), TRAIL_POINTS);
        assert_eq!(xs.first(), Some(&(20.0 - TRAIL_POINTS as f32 + 1.0)));
        assert_eq!(xs.last(), Some(&20.0));
        // Another track in the slot starts over.
        t.add(5 + TRAILS as u64, 21, Point::new(0.5, 0.5));
        assert_eq!(t.points().count(), 1);
    }

    fn pixel(r: &Renderer, x: usize, y: usize) -> [u8; 3] {
        let i = (y * 64 + x) * 3;
        r.canvas()[i..i + 3].try_into().unwrap()
    }

    #[test]
    fn raw_is_the_frame_and_annotation_draws_boxes_and_shades_occupied_zones() {
        let mut r = Renderer::new(layout());
        let mut frame = ViewFrame::new(r.layout().format);
        frame.pixels.fill(10);
        r.render(&frame, None, false).unwrap();
        assert!(r.canvas().iter().all(|&p| p == 10));
        // Free zone: only its outline; the inside stays the frame.
        frame.zones.push([0; crate::config::MAX_CLASSES]).unwrap();
        r.render(&frame, None, true).unwrap();
        assert_eq!(pixel(&r, 56, 44), [10, 10, 10]);
        // Occupied: shaded towards orange.
        frame.zones[0][0] = 1;
        frame
            .tracks
            .push(ViewTrack {
                id: 7,
                class_index: 0,
                score: 0.9,
                bbox: BBox::new(0.1, 0.5, 0.3, 0.9),
                stationary: false,
            })
            .unwrap();
        r.render(&frame, None, true).unwrap();
        let shaded = pixel(&r, 56, 44);
        assert!(shaded[0] > 50 && shaded[2] < shaded[0], "{shaded:?}");
        // The box's left edge (x = 6.4 -> 6) is drawn in the class colour.
        assert_eq!(pixel(&r, 6, 35), CLASS_COLOURS[0]);
        // Outside everything: untouched.
        assert_eq!(pixel(&r, 30, 30), [10, 10, 10]);
    }
}
