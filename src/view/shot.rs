//! `edgewatch snapshot`: one annotated frame of a site's camera, for drawing zones and lines
//! at the desk. The pipeline runs a few frames (so tracks are confirmed), the frame loop
//! publishes through the same slot as the live view, and the frame is drawn and encoded here.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::clock::MonotonicClock;
use crate::config::{Config, ConfigError};
use crate::pipeline::{Pipeline, PipelineError, Step};

use super::render::Renderer;
use super::{encode_jpeg, max_jpeg_bytes, ViewError};

/// Why no snapshot was written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The camera asked for is not in the config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not start or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Drawing or encoding failed, or no frame came.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The output file could not be written.
    #[error("{0}: {1}")]
    Write(std::path::PathBuf, std::io::Error),
}

/// Runs `frames` frames of `config` and writes the last one of `camera` (default the first),
/// annotated unless `raw`, as a JPEG to `out` (through a temporary file and a rename, so `out`
/// is never half written). Returns the JPEG's size in bytes.
pub fn snapshot(
    config: &Config,
    camera: Option<&str>,
    frames: u64,
    raw: bool,
    out: &Path,
) -> Result<usize, SnapshotError> {
    let index = config.camera_index(camera).ok_or_else(|| {
        ConfigError::invalid(
            "--camera",
            format!("no camera is named `{}`", camera.unwrap_or_default()),
        )
    })?;
    let mut pipeline = Pipeline::build(config, Arc::new(MonotonicClock::new()))?;
    let mut feeds = pipeline.enable_view(10.0);
    let mut feed = feeds.swap_remove(index);
    let name = feed.layout.name.clone();
    let mut processed = 0;
    // Bounded: a camera that never delivers ends the loop through its own timeouts (a
    // recording ends; a live camera reconnects and the attempts run out).
    let mut attempts = 0u64;
    while processed < frames.max(1) && attempts < frames.max(1) * 100 {
        attempts += 1;
        feed.demand.wanted.store(true, Relaxed);
        match pipeline.step()? {
            Step::Processed => processed += 1,
            Step::End => break,
            Step::Skipped | Step::Waiting => {}
        }
    }
    feed.output.update();
    let frame = feed.output.output_buffer();
    if frame.seq == 0 {
        return Err(ViewError::NoFrame(name).into());
    }
    let format = feed.layout.format;
    let mut renderer = Renderer::new(feed.layout);
    renderer
        .render(frame, None, !raw)
        .map_err(|e| ViewError::Convert(name.clone(), e))?;
    let limit = max_jpeg_bytes(format.width, format.height);
    let mut jpeg = Vec::with_capacity(limit);
    encode_jpeg(
        renderer.canvas(),
        format.width,
        format.height,
        config.view.quality,
        &mut jpeg,
        limit,
    )
    .map_err(|e| ViewError::Encode(name, e))?;
    write_atomically(out, &jpeg).map_err(|e| SnapshotError::Write(out.to_path_buf(), e))?;
    Ok(jpeg.len())
}

/// Writes `bytes` to a temporary name beside `path`, syncs, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
