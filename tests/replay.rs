//! Replay sources: image folders, Y4M video and MJPEG files in every camera pixel format, paced like a
//! camera (newest frame wins, drops counted) or in lock-step, looping or once.

mod util;

use std::sync::Arc;
use std::time::Duration;

use edgewatch::capture::replay::ReplaySource;
use edgewatch::capture::FrameSource;
use edgewatch::clock::{Clock, ManualClock};
use edgewatch::config::{CameraConfig, CaptureFormat};

fn camera(
    path: std::path::PathBuf,
    w: u32,
    h: u32,
    pf: CaptureFormat,
    fps: f32,
    looping: bool,
) -> CameraConfig {
    let mut cam: CameraConfig =
        toml::from_str("name = \"cam\"\nsource = \"replay\"\nwidth = 2\nheight = 2").unwrap();
    cam.path = path;
    (cam.width, cam.height, cam.fps, cam.looping) = (w, h, fps, looping);
    cam.pixel_format = Some(pf);
    cam.pattern = Some("traffic_*".into());
    cam
}

const FORMATS: [CaptureFormat; 3] = [
    CaptureFormat::Rgb24,
    CaptureFormat::Yuyv,
    CaptureFormat::Nv12,
];

#[test]
fn image_folder_in_every_format_once_and_looping() {
    let frames = util::frames_dir();
    for pf in FORMATS {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let cam = camera(frames.clone(), 256, 256, pf, 0.0, false);
        let mut src = ReplaySource::open(&cam, clock.clone()).unwrap();
        let mut firsts = Vec::new();
        while let Some(f) = src.next_frame().unwrap().frame() {
            assert_eq!(f.data.len(), pf.delivered().frame_len(256, 256));
            firsts.push((f.seq, f.data[1000]));
        }
        assert_eq!(firsts.len(), 3, "{pf}: three images, played once");
        assert_eq!(src.stats().delivered, 3);
        assert_eq!(src.stats().dropped, 0);

        let cam = camera(frames.clone(), 256, 256, pf, 0.0, true);
        let mut src = ReplaySource::open(&cam, clock).unwrap();
        let seen: Vec<u8> = (0..7)
            .map(|_| src.next_frame().unwrap().frame().unwrap().data[1000])
            .collect();
        assert_eq!(seen[0], seen[3], "{pf}: looping starts again");
        assert_eq!(seen[1], seen[4]);
    }
}

#[test]
fn paced_replay_delivers_the_newest_frame_and_counts_drops() {
    let frames = util::frames_dir();
    let clock = ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let cam = camera(frames, 256, 256, CaptureFormat::Yuyv, 10.0, true);
    let mut src = ReplaySource::open(&cam, shared).unwrap();

    // On time: frame 0 at t=0, frame 1 waits (the manual clock jumps) until t=100 ms.
    assert_eq!(src.next_frame().unwrap().frame().unwrap().seq, 0);
    let f = src.next_frame().unwrap().frame().unwrap();
    assert_eq!((f.seq, f.timestamp), (1, Duration::from_millis(100)));

    // The pipeline was busy until t=550 ms: frames 2 to 5 fell due meanwhile. The newest, 5,
    // is delivered; 2, 3 and 4 are dropped and counted.
    clock.advance(Duration::from_millis(450));
    let f = src.next_frame().unwrap().frame().unwrap();
    assert_eq!(f.seq, 5, "newest due frame at 550 ms");
    assert_eq!(
        src.stats(),
        edgewatch::capture::CaptureStats {
            delivered: 3,
            dropped: 3,
            online: true,
            ..Default::default()
        }
    );
}

#[test]
fn y4m_clip_in_every_format() {
    let clip = util::clips_dir().join("traffic_320x180_3s.y4m");
    for pf in FORMATS {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let mut src =
            ReplaySource::open(&camera(clip.clone(), 320, 180, pf, 0.0, false), clock).unwrap();
        let mut n = 0;
        let mut first_mean = 0.0;
        while let Some(f) = src.next_frame().unwrap().frame() {
            assert_eq!(f.data.len(), pf.delivered().frame_len(320, 180));
            if n == 0 {
                first_mean = f.data.iter().map(|&b| b as f64).sum::<f64>() / f.data.len() as f64;
            }
            n += 1;
        }
        assert_eq!(n, 72, "{pf}: the clip holds 72 frames");
        assert!(
            (20.0..235.0).contains(&first_mean),
            "{pf}: a real picture, mean {first_mean}"
        );
    }
}

#[test]
fn y4m_loops_and_skips_what_the_pipeline_missed() {
    let clip = util::clips_dir().join("traffic_320x180_3s.y4m");
    let clock = ManualClock::new();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let mut src = ReplaySource::open(
        &camera(clip.clone(), 320, 180, CaptureFormat::Rgb24, 24.0, true),
        shared,
    )
    .unwrap();
    let first = src.next_frame().unwrap().frame().unwrap().data.to_vec();
    // Three loops and a bit later (72 frames a loop at 24 fps = 3 s): frame 3*72 is the
    // first picture again.
    clock.set(Duration::from_secs_f64(3.0 * 72.0 / 24.0 + 0.01));
    let f = src.next_frame().unwrap().frame().unwrap();
    assert_eq!(f.seq, 216);
    assert_eq!(f.data, &first[..], "frame 216 is picture 0 of the loop");
    assert_eq!(src.stats().dropped, 215);
}

#[test]
fn replay_with_the_wrong_size_or_too_many_images_is_refused() {
    let frames = util::frames_dir();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let err = ReplaySource::open(
        &camera(frames.clone(), 320, 240, CaptureFormat::Rgb24, 0.0, true),
        clock.clone(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("256x256") && err.contains("320x240"), "{err}");
    let mut cam = camera(frames, 256, 256, CaptureFormat::Rgb24, 0.0, true);
    cam.max_frames = 2;
    let err = ReplaySource::open(&cam, clock).unwrap_err().to_string();
    assert!(err.contains("max_frames"), "{err}");
}

#[test]
fn mjpeg_file_in_every_format_decoded_by_our_decoder_paced_and_looping() {
    use edgewatch::capture::convert;
    use edgewatch::capture::jpeg::JpegDecoder;
    use edgewatch::capture::PixelFormat;
    let path = util::clips_dir().join("traffic.mjpeg");
    // The first frame, decoded straight: what the replay must deliver (converted) as frame 0.
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap() + 2;
    let mut decoder = JpegDecoder::new(640, 360);
    let mut nv12 = vec![0; decoder.nv12_len()];
    decoder.decode(&bytes[..end], &mut nv12).unwrap();
    for pf in FORMATS {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let cam = camera(path.clone(), 640, 360, pf, 0.0, false);
        let mut src = ReplaySource::open(&cam, clock).unwrap();
        let first = src.next_frame().unwrap().frame().unwrap();
        let mut want = vec![0; pf.delivered().frame_len(640, 360)];
        match pf.delivered() {
            PixelFormat::Nv12 => want.copy_from_slice(&nv12),
            PixelFormat::Rgb24 => {
                convert::to_rgb(PixelFormat::Nv12, 640, 360, &nv12, &mut want).unwrap()
            }
            other => {
                let mut rgb = vec![0; PixelFormat::Rgb24.frame_len(640, 360)];
                convert::to_rgb(PixelFormat::Nv12, 640, 360, &nv12, &mut rgb).unwrap();
                convert::rgb_to(other, 640, 360, &rgb, &mut want).unwrap();
            }
        }
        assert!(first.data == &want[..], "{pf}: frame 0 differs");
        let mut n = 1;
        while src.next_frame().unwrap().frame().is_some() {
            n += 1;
        }
        assert_eq!(n, 480, "{pf}: every frame once");
        assert_eq!(src.stats().corrupt, 0);
    }

    // Paced at 24 fps on a driven clock: the newest due frame, the rest dropped; looping wraps.
    let clock = ManualClock::new();
    let cam = camera(path.clone(), 640, 360, CaptureFormat::Nv12, 24.0, true);
    let mut src = ReplaySource::open(&cam, Arc::new(clock.clone())).unwrap();
    let interval = edgewatch::capture::replay::frame_interval(24.0).unwrap();
    clock.set(interval * 100);
    assert_eq!(src.next_frame().unwrap().frame().unwrap().seq, 100);
    assert_eq!(src.stats().dropped, 100);
    clock.set(interval * 480);
    let wrapped = src.next_frame().unwrap().frame().unwrap();
    assert_eq!(wrapped.seq, 480);
    assert!(wrapped.data == &nv12[..], "frame 480 is frame 0 again");
}
