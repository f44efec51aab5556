//! Reading an MJPEG file (concatenated JPEG frames, SOI .. EOI, as an MJPEG camera sends them
//! minus the HTTP framing) one frame at a time, through one buffer allocated when it opens.
//!
//! Frames are only split here, not decoded, so a replay that skips frames (`eval --every N`)
//! pays for finding them, not for decoding them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::jpeg_split::next_jpeg;
use super::CaptureError;

/// An MJPEG file read forward frame by frame.
#[derive(Debug)]
pub struct MjpegFile {
    path: PathBuf,
    file: File,
    /// Bytes read and not yet consumed are `buf[start..end]`; `buf` never grows.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Frames returned since the last rewind, for error messages.
    index: u64,
}

impl MjpegFile {
    /// Opens `path`; no frame may be longer than `max_frame` bytes (the buffer's size).
    pub fn open(path: &Path, max_frame: usize) -> Result<MjpegFile, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(MjpegFile {
            path: path.to_path_buf(),
            file,
            buf: vec![0; max_frame.max(4)],
            start: 0,
            end: 0,
            eof: false,
            index: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next complete JPEG, or `None` at the end of the file (a truncated last frame and
    /// bytes after the last EOI are ignored, as a camera's stream cut short would be).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, CaptureError> {
        loop {
            if let Some((s, e)) = next_jpeg(&self.buf[self.start..self.end], 0) {
                let (s, e) = (self.start + s, self.start + e);
                self.start = e;
                self.index += 1;
                return Ok(Some(&self.buf[s..e]));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Moves what is left to the front of the buffer and reads more after it.
    fn fill(&mut self) -> Result<(), CaptureError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            return Err(CaptureError::Empty {
                path: self.path.clone(),
                message: format!(
                    "frame {} is longer than {} bytes (the camera's max_frame_kib)",
                    self.index,
                    self.buf.len()
                ),
            });
        }
        let n = loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CaptureError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }

    /// Starts again at the first frame.
    pub fn rewind(&mut self) -> Result<(), CaptureError> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|source| CaptureError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.index = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal frame with `payload` bytes of entropy-coded data.
    fn frame(payload: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02];
        f.extend(std::iter::repeat_n(payload, len));
        f.extend_from_slice(&[0xFF, 0xD9]);
        f
    }

    #[test]
    fn frames_come_one_by_one_across_reads_and_after_a_rewind() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let frames = [frame(1, 30), frame(2, 5), frame(3, 60)];
        file.write_all(b"junk").unwrap();
        for f in &frames {
            file.write_all(f).unwrap();
        }
        file.write_all(&frame(4, 10)[..8]).unwrap(); // cut short: ignored
                                                     // A buffer just big enough for the largest frame forces several partial reads.
        let mut m = MjpegFile::open(file.path(), 70).unwrap();
        for round in 0..2 {
            for f in &frames {
                assert_eq!(m.next_frame().unwrap(), Some(&f[..]), "round {round}");
            }
            assert_eq!(m.next_frame().unwrap(), None);
            m.rewind().unwrap();
        }
    }

    #[test]
    fn a_frame_longer_than_the_buffer_is_an_error_naming_it() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&frame(1, 10)).unwrap();
        file.write_all(&frame(2, 100)).unwrap();
        let mut m = MjpegFile::open(file.path(), 50).unwrap();
        assert!(m.next_frame().unwrap().is_some());
        let e = m.next_frame().unwrap_err().to_string();
        assert!(e.contains("frame 1 is longer than 50 bytes"), "{e}");
    }
}
