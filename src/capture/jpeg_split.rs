//! Finding JPEG frames in a byte stream (an MJPEG file, concatenated JPEGs): where each frame
//! starts (SOI) and ends (EOI). Only `core` is used, so the test-only fake V4L2 camera
//! (`tools/fake-v4l2`) compiles this same file into itself with a `#[path]` module.

/// The next complete JPEG (SOI .. EOI) at or after `from`: `(start, end)` with `end` just past
/// the EOI, or `None` if no complete one is there yet. Walks marker segments and skips
/// entropy-coded data properly, so an EOI inside a segment (an EXIF thumbnail) is not taken for
/// the end of the frame.
pub fn next_jpeg(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let start = from
        + data
            .get(from..)?
            .windows(2)
            .position(|w| w == [0xFF, 0xD8])?;
    let mut i = start + 2;
    loop {
        if *data.get(i)? != 0xFF {
            // Not a marker where one must be: resynchronise on the next EOI.
            let eoi = data[i..].windows(2).position(|w| w == [0xFF, 0xD9])?;
            return Some((start, i + eoi + 2));
        }
        let marker = *data.get(i + 1)?;
        match marker {
            0xFF => i += 1, // fill byte
            0xD9 => return Some((start, i + 2)),
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
                i += 2 + len;
                if marker == 0xDA {
                    // Entropy-coded data runs to the next marker that is not FF00 or RSTn.
                    loop {
                        let ff = data.get(i..)?.iter().position(|&b| b == 0xFF)?;
                        i += ff;
                        match *data.get(i + 1)? {
                            0x00 | 0xD0..=0xD7 => i += 2,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Called by path, not imported: the fake V4L2 camera's harness-less test binary compiles
    // this module without its tests, and an import would be unused there.
    #[test]
    fn jpeg_splitting_skips_segments_and_entropy_data() {
        // SOI, APP1 holding a fake EOI, SOS with stuffed FF00 and an RST, EOI; then a second.
        let one: &[u8] = &[
            0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x04, 0xFF, 0xD9, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF,
            0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9,
        ];
        let mut data = vec![0x00, 0x11];
        data.extend_from_slice(one);
        data.extend_from_slice(one);
        assert_eq!(super::next_jpeg(&data, 0), Some((2, 2 + one.len())));
        let second = super::next_jpeg(&data, 2 + one.len());
        assert_eq!(second, Some((2 + one.len(), data.len())));
        assert_eq!(
            super::next_jpeg(&data[..data.len() - 1], 2 + one.len()),
            None
        );
    }
}
