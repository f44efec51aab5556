//! Frozen and dark video: a cheap per-frame signature (a hash and the mean luma of pixels
//! sampled on a fixed grid) tells a camera that keeps sending the same picture, or black ones.
//! Either is an incident: it shows in `/health` and puts the controller into fixed-time.

use std::time::Duration;

use crate::capture::{FrameFormat, PixelFormat};
use crate::config::WatchdogConfig;

/// Sample points per side of the grid (so 32 x 32 pixels a frame).
const GRID: usize = 32;

/// What the video looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoState {
    /// Pictures change and are not dark.
    Ok,
    /// The same picture for longer than `watchdog.freeze_s`.
    Frozen,
    /// Dark pictures for longer than `watchdog.dark_s`.
    Dark,
}

impl VideoState {
    /// Lower-case name for summaries and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoState::Ok => "ok",
            VideoState::Frozen => "frozen",
            VideoState::Dark => "dark",
        }
    }
}

/// Watches the frames of one camera for freezes and darkness, with offsets computed at
/// start-up; [`VideoCheck::observe`] allocates nothing.
#[derive(Debug)]
pub struct VideoCheck {
    /// Byte offset of each sample's luma (or of its R for RGB24).
    offsets: Vec<usize>,
    rgb: bool,
    freeze_after: Duration,
    dark_after: Duration,
    dark_luma: u8,
    last_hash: u64,
    /// When the current run of identical pictures began.
    same_since: Option<Duration>,
    /// When the current run of dark pictures began.
    dark_since: Option<Duration>,
    state: VideoState,
    incidents: u64,
}

impl VideoCheck {
    /// A check for frames of `format`, with the limits from `cfg`.
    pub fn new(format: FrameFormat, cfg: &WatchdogConfig) -> VideoCheck {
        let (w, h) = (format.width as usize, format.height as usize);
        let offset = |x: usize, y: usize| match format.pixel_format {
            PixelFormat::Rgb24 => (y * w + x) * 3,
            PixelFormat::Yuyv => (y * w + x) * 2,
            PixelFormat::Nv12 => y * w + x,
        };
        let offsets = (0..GRID * GRID)
            .map(|i| {
                let (gx, gy) = (i % GRID, i / GRID);
                offset((2 * gx + 1) * w / (2 * GRID), (2 * gy + 1) * h / (2 * GRID))
            })
            .collect();
        VideoCheck {
            offsets,
            rgb: format.pixel_format == PixelFormat::Rgb24,
            freeze_after: Duration::from_secs_f32(cfg.freeze_s),
            dark_after: Duration::from_secs_f32(cfg.dark_s),
            dark_luma: cfg.dark_luma,
            last_hash: 0,
            same_since: None,
            dark_since: None,
            state: VideoState::Ok,
            incidents: 0,
        }
    }

    /// Looks at one frame taken at `now` and returns the video's state.
    pub fn observe(&mut self, frame: &[u8], now: Duration) -> VideoState {
        // FNV-1a over the samples; the mean luma on the side.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut luma_sum = 0u32;
        for &o in &self.offsets {
            let luma = if self.rgb {
                match frame.get(o..o + 3) {
                    Some(&[r, g, b]) => {
                        ((77 * r as u32 + 150 * g as u32 + 29 * b as u32) >> 8) as u8
                    }
                    _ => 0,
                }
            } else {
                frame.get(o).copied().unwrap_or(0)
            };
            hash = (hash ^ u64::from(luma)).wrapping_mul(0x100_0000_01b3);
            luma_sum += u32::from(luma);
        }
        let mean = luma_sum / self.offsets.len().max(1) as u32;
        if hash != self.last_hash {
            self.last_hash = hash;
            self.same_since = Some(now);
        }
        let same_since = *self.same_since.get_or_insert(now);
        self.dark_since = if mean < u32::from(self.dark_luma) {
            Some(self.dark_since.unwrap_or(now))
        } else {
            None
        };
        let state = if now.saturating_sub(same_since) >= self.freeze_after {
            VideoState::Frozen
        } else if self
            .dark_since
            .is_some_and(|t| now.saturating_sub(t) >= self.dark_after)
        {
            VideoState::Dark
        } else {
            VideoState::Ok
        };
        if state != self.state {
            if state != VideoState::Ok {
                self.incidents += 1;
                log::warn!(
                    "video {} (incident {}): signals fall back to fixed-time",
                    state.as_str(),
                    self.incidents
                );
            } else {
                log::info!("video good again");
            }
            self.state = state;
        }
        state
    }

    /// Frozen or dark episodes so far.
    pub fn incidents(&self) -> u64 {
        self.incidents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pf: PixelFormat) -> VideoCheck {
        let format = FrameFormat {
            width: 64,
            height: 48,
            pixel_format: pf,
        };
        VideoCheck::new(
            format,
            &WatchdogConfig {
                freeze_s: 2.0,
                dark_s: 3.0,
                ..Default::default()
            },
        )
    }

    fn s(secs: f32) -> Duration {
        Duration::from_secs_f32(secs)
    }

    #[test]
    fn changing_pictures_are_ok_and_a_repeated_one_freezes() {
        for pf in [PixelFormat::Rgb24, PixelFormat::Yuyv, PixelFormat::Nv12] {
            let mut c = check(pf);
            let len = pf.frame_len(64, 48);
            let mut t = 0.0;
            for i in 0..50u32 {
                let frame: Vec<u8> = (0..len)
                    .map(|j| (j as u32 * 7 + i * 13) as u8 | 0x40)
                    .collect();
                assert_eq!(c.observe(&frame, s(t)), VideoState::Ok, "{pf}");
                t += 0.1;
            }
            let frozen: Vec<u8> = (0..len).map(|j| (j * 3) as u8 | 0x40).collect();
            let mut state = VideoState::Ok;
            for _ in 0..25 {
                state = c.observe(&frozen, s(t));
                t += 0.1;
            }
            assert_eq!(state, VideoState::Frozen, "{pf}: 2.4 s of one picture");
            assert_eq!(c.incidents(), 1);
        }
    }

    #[test]
    fn dark_pictures_are_dark_even_with_noise() {
        let mut c = check(PixelFormat::Nv12);
        let len = PixelFormat::Nv12.frame_len(64, 48);
        let mut states = Vec::new();
        for i in 0..40u32 {
            // Sensor noise in the dark: values 0..8 that change every frame.
            let frame: Vec<u8> = (0..len).map(|j| ((j as u32 ^ i) % 8) as u8).collect();
            states.push(c.observe(&frame, s(i as f32 * 0.1)));
        }
        assert_eq!(
            states[20],
            VideoState::Ok,
            "2 s of dark is within the limit"
        );
        assert_eq!(states[39], VideoState::Dark);
        let bright: Vec<u8> = (0..len).map(|j| (j % 200) as u8 + 40).collect();
        assert_eq!(c.observe(&bright, s(4.0)), VideoState::Ok);
    }

    #[test]
    fn short_frames_do_not_panic() {
        let mut c = check(PixelFormat::Rgb24);
        assert_eq!(c.observe(&[1, 2, 3], s(0.0)), VideoState::Ok);
    }
}
