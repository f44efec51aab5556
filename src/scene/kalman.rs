//! Constant-velocity Kalman filter on a box, stepped by the real time between frames.
//!
//! The state is centre x, centre y, width and height, each with its velocity. Process and
//! measurement noise are diagonal per axis, so the 8-state filter splits exactly into four
//! independent 2-state filters `[value, rate]`, each a handful of multiplications in closed
//! form: no matrices, no allocation. Noise scales with the box size (x and width with the
//! width, y and height with the height), so one tuning serves a distant person and a bus
//! filling the frame.

use crate::geometry::{BBox, Point};

/// A measured width or height this far (as a fraction) from the estimate is a different box
/// around the object, not the object moving.
const SIZE_JUMP: f32 = 0.3;

/// Noise model, in box sizes and seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionNoise {
    /// Measurement noise of the centre, as a fraction of the box size (standard deviation).
    pub position: f32,
    /// Measurement noise of width and height, as a fraction of the box size.
    pub size: f32,
    /// Random acceleration of the centre, in box sizes per second squared.
    pub acceleration: f32,
    /// Random rate of change of width and height, in box sizes per second squared.
    pub size_acceleration: f32,
    /// Uncertainty of a new track's centre velocity, in box sizes per second: how fast an
    /// object seen once may plausibly move before the filter has seen it move.
    pub initial_speed: f32,
    /// The most a prediction's centre uncertainty counts for in gating, in box sizes.
    pub max_gate_std: f32,
}

impl Default for MotionNoise {
    fn default() -> Self {
        MotionNoise {
            position: 0.05,
            size: 0.1,
            acceleration: 1.0,
            size_acceleration: 0.3,
            initial_speed: 3.0,
            max_gate_std: 0.6,
        }
    }
}

/// One axis: value, rate, and their covariance `[[pp, pv], [pv, vv]]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Axis {
    value: f32,
    rate: f32,
    pp: f32,
    pv: f32,
    vv: f32,
}

impl Axis {
    fn new(value: f32, value_std: f32, rate_std: f32) -> Axis {
        Axis {
            value,
            rate: 0.0,
            pp: value_std * value_std,
            pv: 0.0,
            vv: rate_std * rate_std,
        }
    }

    /// Moves `dt` seconds ahead under white-noise acceleration of spectral density `q`.
    fn predict(&mut self, dt: f32, q: f32) {
        self.value += self.rate * dt;
        let dt2 = dt * dt;
        self.pp += 2.0 * dt * self.pv + dt2 * self.vv + q * dt2 * dt / 3.0;
        self.pv += dt * self.vv + q * dt2 / 2.0;
        self.vv += q * dt;
    }

    /// Folds in a measurement `z` of variance `r` that says nothing about the rate: the value
    /// moves towards it, the rate stays as it was.
    fn update_value(&mut self, z: f32, r: f32) {
        let k0 = self.pp / (self.pp + r);
        self.value += k0 * (z - self.value);
        self.pp *= 1.0 - k0;
        self.pv *= 1.0 - k0;
    }

    /// Folds in a measurement `z` of variance `r`.
    fn update(&mut self, z: f32, r: f32) {
        let s = self.pp + r;
        let (k0, k1) = (self.pp / s, self.pv / s);
        let residual = z - self.value;
        self.value += k0 * residual;
        self.rate += k1 * residual;
        // Joseph-free form; stays symmetric positive definite because r > 0.
        let (pp, pv) = (self.pp, self.pv);
        self.pp = (1.0 - k0) * pp;
        self.pv = (1.0 - k0) * pv;
        self.vv -= k1 * pv;
    }
}

/// A box's motion state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxFilter {
    cx: Axis,
    cy: Axis,
    w: Axis,
    h: Axis,
}

impl BoxFilter {
    /// A filter that starts at `b`, at rest but with a velocity as uncertain as
    /// `noise.initial_speed` says.
    pub fn new(b: &BBox, noise: &MotionNoise) -> BoxFilter {
        let (w, h) = (b.width().max(1e-4), b.height().max(1e-4));
        let c = b.center();
        BoxFilter {
            cx: Axis::new(c.x, noise.position * w, noise.initial_speed * w),
            cy: Axis::new(c.y, noise.position * h, noise.initial_speed * h),
            w: Axis::new(w, noise.size * w, noise.size_acceleration * w),
            h: Axis::new(h, noise.size * h, noise.size_acceleration * h),
        }
    }

    /// Moves the state `dt` seconds ahead.
    pub fn predict(&mut self, dt: f32, noise: &MotionNoise) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        let (w, h) = self.size();
        let (qa, qs) = (noise.acceleration.powi(2), noise.size_acceleration.powi(2));
        self.cx.predict(dt, qa * w * w);
        self.cy.predict(dt, qa * h * h);
        self.w.predict(dt, qs * w * w);
        self.h.predict(dt, qs * h * h);
        // A box shrinking through zero is not a box; keep it small instead.
        self.w.value = self.w.value.max(1e-4);
        self.h.value = self.h.value.max(1e-4);
    }

    /// Folds in a measured box.
    pub fn update(&mut self, b: &BBox, noise: &MotionNoise) {
        let (w, h) = (b.width().max(1e-4), b.height().max(1e-4));
        let c = b.center();
        let (rx, ry) = self.center_noise(b, noise);
        let rs = noise.size.powi(2);
        // A box whose size jumped (one box around two cars side by side, then one per car)
        // moved its centre for a reason other than motion: take its position, not its speed.
        let jumped =
            |measured: f32, estimate: f32| (measured - estimate).abs() > SIZE_JUMP * estimate;
        if jumped(w, self.w.value) {
            self.cx.update_value(c.x, rx);
        } else {
            self.cx.update(c.x, rx);
        }
        if jumped(h, self.h.value) {
            self.cy.update_value(c.y, ry);
        } else {
            self.cy.update(c.y, ry);
        }
        self.w.update(w, rs * w * w);
        self.h.update(h, rs * h * h);
        self.w.value = self.w.value.max(1e-4);
        self.h.value = self.h.value.max(1e-4);
    }

    /// Measurement variance of `b`'s centre, `(x, y)`. A box that is much larger or smaller
    /// than the estimate (one box around two cars side by side, then one per car) moves its
    /// centre by up to half the difference without the object moving at all; that much of the
    /// jump is not evidence of motion, or the velocity would learn it.
    fn center_noise(&self, b: &BBox, noise: &MotionNoise) -> (f32, f32) {
        let (w, h) = (b.width().max(1e-4), b.height().max(1e-4));
        let rp = noise.position.powi(2);
        let (dw, dh) = ((w - self.w.value) / 2.0, (h - self.h.value) / 2.0);
        (rp * w * w + dw * dw, rp * h * h + dh * dh)
    }

    /// The estimated box.
    pub fn bbox(&self) -> BBox {
        BBox::from_center(self.cx.value, self.cy.value, self.w.value, self.h.value)
    }

    /// The estimated centre.
    pub fn center(&self) -> Point {
        Point::new(self.cx.value, self.cy.value)
    }

    /// Estimated centre velocity, per second.
    pub fn velocity(&self) -> Point {
        Point::new(self.cx.rate, self.cy.rate)
    }

    /// `(width, height)` estimate.
    pub fn size(&self) -> (f32, f32) {
        (self.w.value, self.h.value)
    }

    /// The prediction as association reads it, computed once per update rather than once per
    /// detection.
    pub fn gate(&self, noise: &MotionNoise) -> Gate {
        let (w, h) = self.size();
        // However long a track has coasted, it does not reach further than this many of its
        // sizes: past that, a lost car would take over the one in the next lane.
        let cap = noise.max_gate_std.powi(2);
        Gate {
            bbox: self.bbox(),
            w,
            h,
            sx: self.cx.pp.min(cap * w * w),
            sy: self.cy.pp.min(cap * h * h),
            rp: noise.position.powi(2),
        }
    }

    /// Standard deviation of the centre estimate, `(x, y)`.
    pub fn center_std(&self) -> (f32, f32) {
        (self.cx.pp.max(0.0).sqrt(), self.cy.pp.max(0.0).sqrt())
    }
}

/// A track's predicted box and centre uncertainty, for gating detections against it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gate {
    /// The predicted box.
    pub bbox: BBox,
    /// Predicted width.
    pub w: f32,
    /// Predicted height.
    pub h: f32,
    sx: f32,
    sy: f32,
    rp: f32,
}

impl Gate {
    /// Squared Mahalanobis distance of `b`'s centre from the predicted centre, with the
    /// innovation covariance (state plus measurement noise, including the centre shift a size
    /// change explains) of each axis: about 2 on average for a detection of this object,
    /// larger the less likely.
    pub fn distance2(&self, b: &BBox) -> f32 {
        let (w, h) = (b.width().max(1e-4), b.height().max(1e-4));
        let c = self.bbox.center();
        let dx = (b.xmin + b.xmax) / 2.0 - c.x;
        let dwx = (w - self.w) / 2.0;
        let d2x = dx * dx / (self.sx + self.rp * w * w + dwx * dwx);
        let dy = (b.ymin + b.ymax) / 2.0 - c.y;
        let dhy = (h - self.h) / 2.0;
        d2x + dy * dy / (self.sy + self.rp * h * h + dhy * dhy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 99 % gate for two degrees of freedom.
    const GATE: f32 = 9.21;

    fn noise() -> MotionNoise {
        MotionNoise::default()
    }

    #[test]
    fn prediction_follows_the_learned_velocity_and_real_time() {
        let n = noise();
        let mut f = BoxFilter::new(&BBox::from_center(0.1, 0.5, 0.1, 0.1), &n);
        // 0.3 per second to the right, frames every 100 ms.
        for i in 1..=20 {
            f.predict(0.1, &n);
            f.update(&BBox::from_center(0.1 + 0.03 * i as f32, 0.5, 0.1, 0.1), &n);
        }
        assert!((f.velocity().x - 0.3).abs() < 0.02, "{:?}", f.velocity());
        assert!(f.velocity().y.abs() < 1e-4);
        // Half a second without a frame: the prediction moves 0.15 along, not one frame's 0.03.
        let before = f.center().x;
        f.predict(0.5, &n);
        assert!((f.center().x - before - 0.15).abs() < 0.01);
        // Uncertainty grows while predicting and shrinks with a measurement.
        let grown = f.center_std().0;
        f.update(&BBox::from_center(f.center().x, 0.5, 0.1, 0.1), &n);
        assert!(f.center_std().0 < grown);
    }

    #[test]
    fn a_zero_or_negative_step_changes_nothing() {
        let n = noise();
        let mut f = BoxFilter::new(&BBox::from_center(0.5, 0.5, 0.2, 0.1), &n);
        let before = f;
        f.predict(0.0, &n);
        f.predict(-1.0, &n);
        f.predict(f32::NAN, &n);
        assert_eq!(f, before);
    }

    #[test]
    fn the_gate_distance_widens_while_a_track_coasts() {
        let n = noise();
        let mut f = BoxFilter::new(&BBox::from_center(0.5, 0.5, 0.1, 0.1), &n);
        let away = BBox::from_center(0.6, 0.5, 0.1, 0.1);
        let fresh = f.gate(&n).distance2(&away);
        f.predict(1.0, &n);
        let later = f.gate(&n).distance2(&away);
        assert!(later < fresh / 4.0, "{fresh} -> {later}");
        // ... up to a point: after a minute of coasting a box four sizes away is still out.
        f.predict(60.0, &n);
        let far = BBox::from_center(f.center().x + 0.4, f.center().y, 0.1, 0.1);
        assert!(
            f.gate(&n).distance2(&far) > GATE,
            "{}",
            f.gate(&n).distance2(&far)
        );
        // The same box measured where it is predicted is close.
        assert!(f.gate(&n).distance2(&f.bbox()) < 1e-6);
    }

    #[test]
    fn a_centre_jump_from_a_size_change_is_not_taken_for_motion() {
        let n = noise();
        // One box around two cars side by side (tall), then a box around the upper car only:
        // the centre jumps up by a quarter of the tall box without anything moving up.
        let mut f = BoxFilter::new(&BBox::from_center(0.2, 0.6, 0.25, 0.4), &n);
        f.predict(0.167, &n);
        f.update(&BBox::from_center(0.25, 0.5, 0.25, 0.2), &n);
        let v = f.velocity();
        assert!(v.y.abs() < 0.1, "{v:?}");
        // Motion along x, with a steady size, is learned as before.
        assert!(v.x > 0.2, "{v:?}");
    }

    #[test]
    fn size_follows_measurements_and_stays_positive() {
        let n = noise();
        let mut f = BoxFilter::new(&BBox::from_center(0.5, 0.5, 0.1, 0.1), &n);
        for i in 1..=10 {
            f.predict(0.1, &n);
            let s = 0.1 + 0.01 * i as f32;
            f.update(&BBox::from_center(0.5, 0.5, s, s), &n);
        }
        assert!((f.size().0 - 0.2).abs() < 0.02, "{:?}", f.size());
        // A shrinking box predicted far ahead bottoms out at a tiny positive size.
        for _ in 1..=10 {
            f.predict(0.1, &n);
            f.update(&BBox::from_center(0.5, 0.5, 0.01, 0.01), &n);
        }
        f.predict(100.0, &n);
        assert!(f.size().0 > 0.0 && f.size().1 > 0.0);
    }
}
