//! YUV4MPEG2 (Y4M) stream parsing: a text header, then `FRAME` lines each followed by one raw
//! 4:2:0 picture. Only 8-bit 4:2:0 (`C420`, `C420jpeg`, `C420mpeg2`, `C420paldv`, or no `C`
//! tag) is accepted: that is what `ffmpeg -f yuv4mpegpipe` writes for camera footage.

use std::io::BufRead;

/// The longest header or `FRAME` line accepted; a stream without a newline within this many
/// bytes is rejected instead of being buffered without bound.
const MAX_LINE: usize = 1024;

/// What a Y4M stream header declares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Y4mHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate as numerator / denominator, when given.
    pub fps: Option<(u32, u32)>,
}

impl Y4mHeader {
    /// Bytes of one I420 picture.
    pub fn frame_len(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        w * h + 2 * (w / 2) * (h / 2)
    }
}

/// Why a Y4M stream was rejected; the message says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    /// The stream's bytes break the format.
    #[error("{0}")]
    Format(String),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn format_err(msg: impl Into<String>) -> Y4mError {
    Y4mError::Format(msg.into())
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes into `buf` (without the
/// newline); `Ok(false)` at a clean end of stream. Never allocates once `buf` has capacity.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, Y4mError> {
    buf.clear();
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            if buf.is_empty() {
                return Ok(false);
            }
            return Err(format_err("stream ends in the middle of a line"));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE {
            return Err(format_err(format!(
                "a header line is longer than {MAX_LINE} bytes"
            )));
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(true);
        }
    }
}

/// Parses the stream header line (`YUV4MPEG2 W.. H.. ...`); `line` excludes the newline.
pub fn parse_header(line: &[u8]) -> Result<Y4mHeader, Y4mError> {
    let text = std::str::from_utf8(line).map_err(|_| format_err("header is not UTF-8 text"))?;
    let mut tags = text.split(' ').filter(|t| !t.is_empty());
    if tags.next() != Some("YUV4MPEG2") {
        return Err(format_err("missing the YUV4MPEG2 signature at byte 0"));
    }
    let (mut width, mut height, mut fps) = (None, None, None);
    for tag in tags {
        // Tags are one ASCII letter and a value; a tag starting with any other character
        // (a multibyte UTF-8 one among them) is some other writer's extension: skipped.
        let Some((key, value)) = tag.split_at_checked(1) else {
            continue;
        };
        match key {
            "W" => width = Some(parse_dim("W", value)?),
            "H" => height = Some(parse_dim("H", value)?),
            "F" => fps = Some(parse_ratio(value)?),
            "C" if !matches!(value, "420" | "420jpeg" | "420mpeg2" | "420paldv") => {
                return Err(format_err(format!(
                    "colour space C{value} is not supported; only 8-bit 4:2:0 (C420*)"
                )));
            }
            "I" if value != "p" && value != "?" => {
                return Err(format_err(format!("interlacing I{value} is not supported")));
            }
            _ => {}
        }
    }
    let width = width.ok_or_else(|| format_err("header has no W (width) tag"))?;
    let height = height.ok_or_else(|| format_err("header has no H (height) tag"))?;
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(format_err(format!(
            "4:2:0 needs an even size, header says {width}x{height}"
        )));
    }
    Ok(Y4mHeader { width, height, fps })
}

fn parse_dim(tag: &str, value: &str) -> Result<u32, Y4mError> {
    match value.parse::<u32>() {
        Ok(v) if (2..=8192).contains(&v) => Ok(v),
        _ => Err(format_err(format!(
            "{tag}{value}: size must be a number in 2..=8192"
        ))),
    }
}

fn parse_ratio(value: &str) -> Result<(u32, u32), Y4mError> {
    let bad = || format_err(format!("F{value}: frame rate must be N:D with D > 0"));
    let (n, d) = value.split_once(':').ok_or_else(bad)?;
    let (n, d) = (
        n.parse::<u32>().map_err(|_| bad())?,
        d.parse::<u32>().map_err(|_| bad())?,
    );
    if d == 0 {
        return Err(bad());
    }
    Ok((n, d))
}

/// Reads the stream header from `r`.
pub fn read_header(r: &mut impl BufRead) -> Result<Y4mHeader, Y4mError> {
    let mut line = Vec::with_capacity(MAX_LINE);
    if !read_line(r, &mut line)? {
        return Err(format_err("file is empty"));
    }
    parse_header(&line)
}

/// Reads the next `FRAME` line and its picture into `picture` (exactly one frame long).
/// `Ok(false)` at a clean end of stream. `line` is scratch space, reused between calls.
pub fn read_frame(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    picture: &mut [u8],
    index: u64,
) -> Result<bool, Y4mError> {
    if !read_line(r, line)? {
        return Ok(false);
    }
    if !line.starts_with(b"FRAME") {
        return Err(format_err(format!("frame {index}: expected a FRAME line")));
    }
    r.read_exact(picture).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => format_err(format!(
            "frame {index} is truncated: the file ends inside its picture"
        )),
        _ => Y4mError::Io(e),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn stream(header: &str, frames: usize, len: usize) -> Vec<u8> {
        let mut v = format!("{header}\n").into_bytes();
        for i in 0..frames {
            v.extend_from_slice(b"FRAME\n");
            v.extend(std::iter::repeat_n(i as u8, len));
        }
        v
    }

    #[test]
    fn reads_header_and_frames() {
        let data = stream("YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C420mpeg2", 2, 12);
        let mut r = Cursor::new(data);
        let h = read_header(&mut r).unwrap();
        assert_eq!(
            h,
            Y4mHeader {
                width: 4,
                height: 2,
                fps: Some((25, 1))
            }
        );
        assert_eq!(h.frame_len(), 12);
        let (mut line, mut pic) = (Vec::new(), vec![0u8; 12]);
        assert!(read_frame(&mut r, &mut line, &mut pic, 0).unwrap());
        assert_eq!(pic[0], 0);
        assert!(read_frame(&mut r, &mut line, &mut pic, 1).unwrap());
        assert_eq!(pic[11], 1);
        assert!(!read_frame(&mut r, &mut line, &mut pic, 2).unwrap());
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let cases = [
            ("YUV4MPEG W4 H2", "signature"),
            ("YUV4MPEG2 H2", "no W"),
            ("YUV4MPEG2 W4 H3", "even size"),
            ("YUV4MPEG2 W4 H2 C444", "C444"),
            ("YUV4MPEG2 W4 H2 C420p10", "C420p10"),
            ("YUV4MPEG2 W4 H2 F25:0", "frame rate"),
            ("YUV4MPEG2 Wx H2", "Wx"),
        ];
        for (header, want) in cases {
            let err = parse_header(header.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{header}: {err}");
        }
    }

    #[test]
    fn tags_of_other_writers_are_skipped_even_multibyte_ones() {
        // Found by fuzzing: a tag made of one two-byte UTF-8 character panicked when split
        // after its first byte.
        let mut line = b"YUV4MPEG2 W640 H360 ".to_vec();
        line.extend_from_slice(&[0xC3, 0xA9]);
        let h = parse_header(&line).unwrap();
        assert_eq!((h.width, h.height), (640, 360));
        line.extend_from_slice(b" X\xe9t\xe9 \xff");
        assert!(parse_header(&line).is_err(), "invalid UTF-8 is refused");
    }

    #[test]
    fn truncated_frame_and_runaway_line_are_errors() {
        let mut data = stream("YUV4MPEG2 W4 H2", 1, 12);
        data.truncate(data.len() - 3);
        let mut r = Cursor::new(data);
        read_header(&mut r).unwrap();
        let (mut line, mut pic) = (Vec::new(), vec![0u8; 12]);
        let err = read_frame(&mut r, &mut line, &mut pic, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");

        let mut r = Cursor::new(vec![b'Y'; 5000]);
        assert!(read_header(&mut r)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }
}
