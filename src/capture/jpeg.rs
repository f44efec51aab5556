//! Baseline JPEG decoding straight into NV12, with every buffer allocated in
//! [`JpegDecoder::new`], so MJPEG cameras can be decoded frame after frame without touching
//! the heap.
//!
//! Supported: sequential Huffman-coded frames (SOF0 baseline, SOF1 extended) with 8-bit
//! samples; one component (grayscale) or three (JFIF YCbCr) in one interleaved scan, luma
//! sampled 1x1, 2x1, 1x2 or 2x2 and chroma 1x1; 8- and 16-bit quantization tables; restart
//! intervals; and Motion-JPEG frames without Huffman tables (the "AVI1" format), which get the
//! standard tables of ITU T.81 Annex K.3. The JPEG's full-range YCbCr values become NV12's
//! Y, U and V unchanged; chroma is averaged (or copied, for 4:2:0) down to 4:2:0 and
//! grayscale frames get neutral chroma (128).
//!
//! Rejected with [`JpegError::Unsupported`]: progressive, lossless, hierarchical and
//! arithmetic-coded frames, 12-bit samples, other component counts or sampling factors, RGB
//! JPEGs, and color images coded in more than one scan.
//!
//! Corrupt data gives an error that says what is wrong and at which byte, and never panics.
//! Entropy-coded data must be complete: a scan (or restart interval) whose data ends, or meets
//! a marker, before its last block is decoded is [`JpegError::Truncated`]. A missing EOI after
//! a complete scan is accepted, as is anything after EOI.

use std::fmt;

/// Why a JPEG frame was rejected. Byte offsets count from the start of the frame's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JpegError {
    /// The decoder cannot be made for this size (zero, odd, or above 65534).
    #[error("a JPEG decoder needs an even width and height from 2 to 65534, got {width}x{height}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// The output buffer is not the size of one NV12 frame.
    #[error("NV12 output for this decoder must be {expected} bytes, got {got}")]
    OutputLength {
        /// Bytes one NV12 frame needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The frame's size (from its SOF header) is not the decoder's.
    #[error(
        "JPEG frame is {width}x{height}, the decoder expects {expected_width}x{expected_height}"
    )]
    SizeMismatch {
        /// Width the decoder was made for.
        expected_width: u32,
        /// Height the decoder was made for.
        expected_height: u32,
        /// Width in the frame header.
        width: u32,
        /// Height in the frame header.
        height: u32,
    },
    /// The data does not start with an SOI marker (FF D8).
    #[error("not a JPEG: no SOI marker at the start")]
    MissingSoi,
    /// The data ends (or, in entropy-coded data, meets a marker) before `what` is complete.
    #[error("JPEG data ends inside {what} at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where the data ran out.
        offset: usize,
    },
    /// A marker segment breaks the format: bad lengths, ids out of range, missing tables,
    /// segments out of order.
    #[error("malformed JPEG: {what} at byte {offset}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Where (the segment's marker, or the field).
        offset: usize,
    },
    /// The entropy-coded data is corrupt: a bad Huffman code, a coefficient index past 63, a
    /// missing or wrong restart marker.
    #[error("corrupt JPEG entropy-coded data: {what} near byte {offset}")]
    BadData {
        /// What is wrong.
        what: &'static str,
        /// About where (the bit reader reads a few bytes ahead).
        offset: usize,
    },
    /// A valid JPEG this decoder does not handle (see the module documentation).
    #[error("unsupported JPEG: {0}")]
    Unsupported(&'static str),
}

/// Bits the Huffman lookup table resolves in one step; longer codes take the slow path.
const FAST_BITS: u32 = 9;

/// Natural (row-major) index of each coefficient in zigzag order.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// ITU T.81 Annex K.3, table K.3: luminance DC code lengths (count of codes of 1..=16 bits).
pub const STD_DC_LUMA_COUNTS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
/// ITU T.81 Annex K.3, table K.3: luminance DC symbols.
pub const STD_DC_LUMA_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// ITU T.81 Annex K.3, table K.4: chrominance DC code lengths.
pub const STD_DC_CHROMA_COUNTS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
/// ITU T.81 Annex K.3, table K.4: chrominance DC symbols.
pub const STD_DC_CHROMA_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// ITU T.81 Annex K.3, table K.5: luminance AC code lengths.
pub const STD_AC_LUMA_COUNTS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
/// ITU T.81 Annex K.3, table K.5: luminance AC symbols (run << 4 | size).
pub const STD_AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
/// ITU T.81 Annex K.3, table K.6: chrominance AC code lengths.
pub const STD_AC_CHROMA_COUNTS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
/// ITU T.81 Annex K.3, table K.6: chrominance AC symbols (run << 4 | size).
pub const STD_AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

// Markers (the byte after FF).
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DQT: u8 = 0xDB;
const DRI: u8 = 0xDD;
const DHT: u8 = 0xC4;
const RST0: u8 = 0xD0;
const APP14: u8 = 0xEE;

/// The width and height in the first frame header (SOF) of `jpeg`, so a caller can make a
/// decoder of the right size for a camera it has not seen yet. Reads headers only.
pub fn frame_size(jpeg: &[u8]) -> Result<(u32, u32), JpegError> {
    if !jpeg.starts_with(&[0xFF, SOI]) {
        return Err(JpegError::MissingSoi);
    }
    let mut pos = 2;
    loop {
        let (marker, at) = read_marker(jpeg, pos)?;
        if is_standalone(marker) {
            pos = at + 2;
            continue;
        }
        if marker == EOI || marker == SOS {
            return Err(JpegError::Malformed {
                what: "no frame header (SOF) before the image data",
                offset: at,
            });
        }
        let seg = Segment::at(jpeg, at)?;
        if is_sof(marker) {
            let b = seg.body;
            if b.len() < 6 {
                return Err(seg.malformed("SOF segment too short"));
            }
            let height = u16::from_be_bytes([b[1], b[2]]);
            let width = u16::from_be_bytes([b[3], b[4]]);
            return Ok((u32::from(width), u32::from(height)));
        }
        pos = seg.next;
    }
}

/// Frame header markers: SOF0..=SOF15 less DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, DHT | 0xC8 | 0xCC)
}

/// Decodes baseline JPEG frames of one size into NV12, allocating only in [`JpegDecoder::new`].
#[derive(Debug)]
pub struct JpegDecoder {
    width: u32,
    height: u32,
    tables: Box<Tables>,
    /// One full-resolution plane per component, sized for `width` x `height` rounded up to 16
    /// (the largest MCU), holding decoded samples before they are cropped into NV12.
    planes: Planes,
    idct: Idct,
}

impl JpegDecoder {
    /// A decoder for frames of `width` x `height` (both even, at most 65534), with every
    /// buffer it will need allocated now.
    ///
    /// # Panics
    /// If the size is not valid; [`JpegDecoder::try_new`] returns an error instead.
    pub fn new(width: u32, height: u32) -> JpegDecoder {
        match JpegDecoder::try_new(width, height) {
            Ok(decoder) => decoder,
            Err(e) => panic!("{e}"),
        }
    }

    /// A decoder for frames of `width` x `height`, or [`JpegError::InvalidSize`] unless both
    /// are even and from 2 to 65534.
    pub fn try_new(width: u32, height: u32) -> Result<JpegDecoder, JpegError> {
        let valid = |n: u32| n > 0 && n.is_multiple_of(2) && n <= 65534;
        if !valid(width) || !valid(height) {
            return Err(JpegError::InvalidSize { width, height });
        }
        let padded = round_up(width as usize, 16) * round_up(height as usize, 16);
        Ok(JpegDecoder {
            width,
            height,
            tables: Box::new(Tables::new()),
            planes: Planes([vec![0; padded], vec![0; padded], vec![0; padded]]),
            idct: Idct::new(),
        })
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes of one NV12 output frame: `width * height * 3 / 2`.
    pub fn nv12_len(&self) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        w * h + w * h / 2
    }

    /// Decodes one JPEG frame into `nv12` (`width * height * 3 / 2` bytes: the Y plane, then
    /// interleaved U, V at half resolution). On error `nv12` may hold part of a frame.
    pub fn decode(&mut self, jpeg: &[u8], nv12: &mut [u8]) -> Result<(), JpegError> {
        if nv12.len() != self.nv12_len() {
            return Err(JpegError::OutputLength {
                expected: self.nv12_len(),
                got: nv12.len(),
            });
        }
        if !jpeg.starts_with(&[0xFF, SOI]) {
            return Err(JpegError::MissingSoi);
        }
        self.tables.forget_frame_tables();
        let mut state = FrameState::default();
        let mut pos = 2;
        while pos < jpeg.len() {
            let (marker, at) = read_marker(jpeg, pos)?;
            if marker == EOI {
                break;
            }
            if is_standalone(marker) {
                pos = at + 2;
                continue;
            }
            let seg = Segment::at(jpeg, at)?;
            if marker != SOS {
                self.header_segment(marker, &seg, &mut state)?;
                pos = seg.next;
                continue;
            }
            self.scan(jpeg, &seg, &mut state)?;
            // Go on at the marker after the scan. A frame cut off right after its complete
            // scan (no EOI) still counts as decoded.
            match find_marker(jpeg, state.scan_end) {
                Some((_, marker_at)) => pos = marker_at,
                None => break,
            }
        }
        match state.frame {
            Some(frame) if state.decoded => {
                self.planes
                    .write_nv12(&frame, self.width, self.height, nv12);
                Ok(())
            }
            _ => Err(JpegError::Truncated {
                what: "the headers (no complete scan before EOI)",
                offset: pos.min(jpeg.len()),
            }),
        }
    }

    /// Takes in a marker segment before or between scans.
    fn header_segment(
        &mut self,
        marker: u8,
        seg: &Segment<'_>,
        state: &mut FrameState,
    ) -> Result<(), JpegError> {
        match marker {
            0xC0 | 0xC1 => {
                if state.frame.is_some() {
                    return Err(seg.malformed("second frame header (SOF)"));
                }
                let plane_len = self.planes.0[0].len();
                state.frame = Some(Frame::parse(seg, self.width, self.height, plane_len)?);
            }
            0xC2 | 0xC6 | 0xCA | 0xCE => return Err(JpegError::Unsupported("progressive JPEG")),
            0xC3 | 0xC7 | 0xCB | 0xCF => return Err(JpegError::Unsupported("lossless JPEG")),
            0xC5 => return Err(JpegError::Unsupported("hierarchical JPEG")),
            0xC9 | 0xCC => return Err(JpegError::Unsupported("arithmetic coding")),
            DHT => self.tables.parse_dht(seg)?,
            DQT => self.tables.parse_dqt(seg)?,
            DRI => match seg.body {
                &[hi, lo] => state.restart_interval = usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Err(seg.malformed("DRI segment length is not 4")),
            },
            APP14 => state.adobe_rgb = is_adobe_rgb(seg.body),
            _ => {} // APPn, COM and the rest carry nothing the image needs.
        }
        Ok(())
    }

    /// Decodes the scan whose header is `seg` into the planes.
    fn scan(
        &mut self,
        jpeg: &[u8],
        seg: &Segment<'_>,
        state: &mut FrameState,
    ) -> Result<(), JpegError> {
        let Some(frame) = state.frame.as_ref() else {
            return Err(seg.malformed("scan (SOS) before the frame header (SOF)"));
        };
        if state.decoded {
            return Err(JpegError::Unsupported("more than one scan"));
        }
        if frame.count == 3 && state.adobe_rgb {
            return Err(JpegError::Unsupported("RGB JPEG (Adobe transform 0)"));
        }
        let scan = Scan::parse(seg, frame, &self.tables)?;
        let mut reader = BitReader::new(jpeg, seg.next);
        decode_scan(
            frame,
            &scan,
            &mut reader,
            state.restart_interval,
            &self.idct,
            &mut self.planes,
        )?;
        state.decoded = true;
        state.scan_end = reader.pos;
        Ok(())
    }
}

/// What the segments of the frame being decoded have said so far.
#[derive(Debug, Default)]
struct FrameState {
    frame: Option<Frame>,
    /// MCUs per restart interval; 0 for none.
    restart_interval: usize,
    /// An APP14 "Adobe" segment said the components are RGB.
    adobe_rgb: bool,
    /// The scan has been decoded.
    decoded: bool,
    /// Where the bit reader stopped after the scan.
    scan_end: usize,
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Markers without a length field.
fn is_standalone(marker: u8) -> bool {
    matches!(marker, 0x01 | 0xD0..=0xD7 | SOI)
}

/// An APP14 "Adobe" segment whose transform flag says the three components are RGB.
fn is_adobe_rgb(body: &[u8]) -> bool {
    body.len() >= 12 && body.starts_with(b"Adobe") && body[11] == 0
}

/// The marker at `pos` in the header part of the stream (fill bytes FF FF ... allowed before
/// it): returns the marker byte and the offset of the FF just before it.
fn read_marker(data: &[u8], pos: usize) -> Result<(u8, usize), JpegError> {
    if data.get(pos) != Some(&0xFF) {
        return match data.get(pos) {
            None => Err(JpegError::Truncated {
                what: "the headers (no EOI)",
                offset: pos,
            }),
            Some(_) => Err(JpegError::Malformed {
                what: "expected a marker (FF xx)",
                offset: pos,
            }),
        };
    }
    let mut at = pos;
    while data.get(at + 1) == Some(&0xFF) {
        at += 1;
    }
    match data.get(at + 1) {
        None => Err(JpegError::Truncated {
            what: "a marker",
            offset: at,
        }),
        Some(0) => Err(JpegError::Malformed {
            what: "FF 00 where a marker was expected",
            offset: at,
        }),
        Some(&m) => Ok((m, at)),
    }
}

/// The next marker at or after `pos` in entropy-coded data, skipping stuffed FF 00 pairs and
/// fill bytes: the marker byte and the offset of its FF. `None` at the end of the data.
fn find_marker(data: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    while pos < data.len() {
        if data[pos] != 0xFF {
            pos += 1;
            continue;
        }
        let mut next = pos + 1;
        while data.get(next) == Some(&0xFF) {
            next += 1;
        }
        match data.get(next) {
            None => return None,
            Some(0) => pos = next + 1,
            Some(&m) => return Some((m, next - 1)),
        }
    }
    None
}

/// One marker segment: its body (after the length field) and where the next one starts.
struct Segment<'a> {
    body: &'a [u8],
    /// Offset of `body` in the frame's data, for error messages.
    offset: usize,
    next: usize,
}

impl<'a> Segment<'a> {
    /// The segment whose marker's FF is at `at`.
    fn at(data: &'a [u8], at: usize) -> Result<Segment<'a>, JpegError> {
        let truncated = JpegError::Truncated {
            what: "a marker segment",
            offset: at,
        };
        let len = match data.get(at + 2..at + 4) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(truncated),
        };
        if len < 2 {
            return Err(JpegError::Malformed {
                what: "segment length below 2",
                offset: at + 2,
            });
        }
        let body = data.get(at + 4..at + 2 + len).ok_or(truncated)?;
        Ok(Segment {
            body,
            offset: at + 4,
            next: at + 2 + len,
        })
    }

    fn malformed(&self, what: &'static str) -> JpegError {
        JpegError::Malformed {
            what,
            offset: self.offset,
        }
    }
}

/// A canonical Huffman code: a table for codes of up to [`FAST_BITS`] bits, and per-length
/// bounds for longer ones (ITU T.81 F.2.2.3).
#[derive(Clone)]
struct HuffTable {
    /// Indexed by the next `FAST_BITS` bits: `length << 8 | symbol`, or 0 for a longer code.
    fast: [u16; 1 << FAST_BITS],
    /// Largest code of each length (index 1..=16), -1 where there are none.
    max_code: [i32; 17],
    /// `symbols` index of a length's first code, minus that code.
    offset: [i32; 17],
    symbols: [u8; 256],
}

impl HuffTable {
    /// Builds the table from code counts per length (1..=16 bits) and symbols in code order;
    /// `None` if the counts need more codes than fit.
    fn build(counts: &[u8; 16], symbols: &[u8]) -> Option<HuffTable> {
        let mut table = HuffTable {
            fast: [0; 1 << FAST_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: [0; 256],
        };
        if symbols.len() > 256 {
            return None;
        }
        table.symbols[..symbols.len()].copy_from_slice(symbols);
        let mut code = 0u32;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = usize::from(counts[len as usize - 1]);
            if code as usize + n > 1 << len {
                return None;
            }
            if n > 0 {
                table.offset[len as usize] = k as i32 - code as i32;
                table.max_code[len as usize] = (code as usize + n - 1) as i32;
            }
            for _ in 0..n {
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    let first = (code << shift) as usize;
                    let entry = (len as u16) << 8 | u16::from(*symbols.get(k)?);
                    table.fast[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        (k == symbols.len()).then_some(table)
    }
}

impl fmt::Debug for HuffTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuffTable")
            .field("max_code", &self.max_code)
            .finish_non_exhaustive()
    }
}

/// Quantization and Huffman tables: those the current frame defined, and the Annex K
/// defaults for frames that define none.
#[derive(Debug)]
struct Tables {
    /// In zigzag order, as coefficients arrive.
    quant: [[u16; 64]; 4],
    quant_defined: [bool; 4],
    dc: [HuffTable; 4],
    ac: [HuffTable; 4],
    dc_defined: [bool; 4],
    ac_defined: [bool; 4],
    /// Annex K tables for ids 0 (luma) and 1 (chroma).
    std_dc: [HuffTable; 2],
    std_ac: [HuffTable; 2],
}

impl Tables {
    fn new() -> Tables {
        let std = |counts: &[u8; 16], values: &[u8]| {
            HuffTable::build(counts, values).expect("Annex K tables are valid")
        };
        let std_dc = [
            std(&STD_DC_LUMA_COUNTS, &STD_DC_LUMA_VALUES),
            std(&STD_DC_CHROMA_COUNTS, &STD_DC_CHROMA_VALUES),
        ];
        let std_ac = [
            std(&STD_AC_LUMA_COUNTS, &STD_AC_LUMA_VALUES),
            std(&STD_AC_CHROMA_COUNTS, &STD_AC_CHROMA_VALUES),
        ];
        Tables {
            quant: [[1; 64]; 4],
            quant_defined: [false; 4],
            dc: std::array::from_fn(|i| std_dc[i % 2].clone()),
            ac: std::array::from_fn(|i| std_ac[i % 2].clone()),
            dc_defined: [false; 4],
            ac_defined: [false; 4],
            std_dc,
            std_ac,
        }
    }

    /// Each frame brings its own tables (MJPEG frames stand alone).
    fn forget_frame_tables(&mut self) {
        self.quant_defined = [false; 4];
        self.dc_defined = [false; 4];
        self.ac_defined = [false; 4];
    }

    fn parse_dqt(&mut self, seg: &Segment<'_>) -> Result<(), JpegError> {
        let mut rest = seg.body;
        while let Some((&pq_tq, after)) = rest.split_first() {
            let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
            if id > 3 {
                return Err(seg.malformed("quantization table id above 3"));
            }
            let size = match precision {
                0 => 64,
                1 => 128,
                _ => return Err(seg.malformed("quantization table precision not 8 or 16 bits")),
            };
            let values = after
                .get(..size)
                .ok_or_else(|| seg.malformed("DQT segment shorter than its tables"))?;
            for (k, q) in self.quant[id].iter_mut().enumerate() {
                *q = match precision {
                    0 => u16::from(values[k]),
                    _ => u16::from_be_bytes([values[2 * k], values[2 * k + 1]]),
                };
            }
            self.quant_defined[id] = true;
            rest = &after[size..];
        }
        Ok(())
    }

    fn parse_dht(&mut self, seg: &Segment<'_>) -> Result<(), JpegError> {
        let mut rest = seg.body;
        while let Some((&tc_th, after)) = rest.split_first() {
            let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
            if class > 1 || id > 3 {
                return Err(seg.malformed("Huffman table class above 1 or id above 3"));
            }
            let counts: &[u8; 16] = after
                .get(..16)
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| seg.malformed("DHT segment shorter than its tables"))?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = after
                .get(16..16 + total)
                .ok_or_else(|| seg.malformed("DHT segment shorter than its tables"))?;
            let table = HuffTable::build(counts, symbols)
                .ok_or_else(|| seg.malformed("Huffman table with more codes than fit"))?;
            if class == 0 {
                self.dc[id] = table;
                self.dc_defined[id] = true;
            } else {
                self.ac[id] = table;
                self.ac_defined[id] = true;
            }
            rest = &after[16 + total..];
        }
        Ok(())
    }

    /// The DC (`ac == false`) or AC table `id` for a scan: the frame's own, else the Annex K
    /// default for ids 0 and 1 (Motion-JPEG leaves them out).
    fn huffman(&self, ac: bool, id: usize) -> Option<&HuffTable> {
        let (own, defined, std) = match ac {
            false => (&self.dc, &self.dc_defined, &self.std_dc),
            true => (&self.ac, &self.ac_defined, &self.std_ac),
        };
        match defined.get(id) {
            Some(true) => own.get(id),
            _ => std.get(id),
        }
    }
}

/// One component of a frame.
#[derive(Debug, Clone, Copy, Default)]
struct Component {
    id: u8,
    /// Sampling factors.
    h: usize,
    v: usize,
    quant_id: usize,
    /// Width of the component's plane: its blocks, padded to whole MCUs.
    stride: usize,
}

/// What a frame header (SOF0/SOF1) declares, checked against what this decoder handles.
#[derive(Debug)]
struct Frame {
    components: [Component; 3],
    count: usize,
    h_max: usize,
    v_max: usize,
    mcus_x: usize,
    mcus_y: usize,
}

impl Frame {
    fn parse(
        seg: &Segment<'_>,
        width: u32,
        height: u32,
        plane_len: usize,
    ) -> Result<Frame, JpegError> {
        let b = seg.body;
        if b.len() < 6 {
            return Err(seg.malformed("SOF segment too short"));
        }
        if b[0] != 8 {
            return Err(JpegError::Unsupported("sample precision other than 8 bits"));
        }
        let h = u32::from(u16::from_be_bytes([b[1], b[2]]));
        let w = u32::from(u16::from_be_bytes([b[3], b[4]]));
        if h == 0 {
            return Err(JpegError::Unsupported("height given later by a DNL marker"));
        }
        if (w, h) != (width, height) {
            return Err(JpegError::SizeMismatch {
                expected_width: width,
                expected_height: height,
                width: w,
                height: h,
            });
        }
        let count = usize::from(b[5]);
        if count != 1 && count != 3 {
            return Err(JpegError::Unsupported("component count other than 1 or 3"));
        }
        if b.len() != 6 + 3 * count {
            return Err(seg.malformed("SOF length does not match its component count"));
        }
        let mut components = [Component::default(); 3];
        for (i, c) in components.iter_mut().take(count).enumerate() {
            let f = &b[6 + 3 * i..9 + 3 * i];
            *c = Component {
                id: f[0],
                h: usize::from(f[1] >> 4),
                v: usize::from(f[1] & 15),
                quant_id: usize::from(f[2]),
                stride: 0,
            };
            if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) {
                return Err(seg.malformed("sampling factor outside 1..=4"));
            }
            if c.quant_id > 3 {
                return Err(seg.malformed("quantization table id above 3"));
            }
        }
        if count == 3 {
            let [y, cb, cr] = components;
            if y.h > 2 || y.v > 2 || (cb.h, cb.v, cr.h, cr.v) != (1, 1, 1, 1) {
                return Err(JpegError::Unsupported(
                    "sampling other than luma 1x1, 2x1, 1x2 or 2x2 with chroma 1x1",
                ));
            }
            if (y.id, cb.id, cr.id) == (b'R', b'G', b'B') {
                return Err(JpegError::Unsupported("RGB JPEG"));
            }
            if y.id == cb.id || y.id == cr.id || cb.id == cr.id {
                return Err(seg.malformed("two components with the same id"));
            }
        } else {
            // A lone component is coded block by block whatever its sampling factors say.
            components[0].h = 1;
            components[0].v = 1;
        }
        let h_max = components[..count].iter().map(|c| c.h).max().unwrap_or(1);
        let v_max = components[..count].iter().map(|c| c.v).max().unwrap_or(1);
        let mcus_x = (w as usize).div_ceil(8 * h_max);
        let mcus_y = (h as usize).div_ceil(8 * v_max);
        for c in components.iter_mut().take(count) {
            c.stride = mcus_x * c.h * 8;
            // Holds for every accepted frame (MCUs are at most 16x16); checked so that block
            // writes can never go out of bounds.
            if c.stride * mcus_y * c.v * 8 > plane_len {
                return Err(JpegError::Unsupported("MCU larger than 16x16"));
            }
        }
        Ok(Frame {
            components,
            count,
            h_max,
            v_max,
            mcus_x,
            mcus_y,
        })
    }
}

/// One component of a scan, with the tables it is decoded with.
struct ScanComponent<'t> {
    /// Index into `Frame::components` and the planes.
    index: usize,
    dc: &'t HuffTable,
    ac: &'t HuffTable,
    quant: &'t [u16; 64],
}

/// A scan header (SOS), checked against the frame and resolved to tables.
struct Scan<'t> {
    components: [Option<ScanComponent<'t>>; 3],
}

impl<'t> Scan<'t> {
    fn parse(seg: &Segment<'_>, frame: &Frame, tables: &'t Tables) -> Result<Scan<'t>, JpegError> {
        let b = seg.body;
        let count = usize::from(*b.first().unwrap_or(&0));
        if count == 0 || b.len() != 4 + 2 * count {
            return Err(seg.malformed("SOS length does not match its component count"));
        }
        if count > frame.count {
            return Err(seg.malformed("scan has more components than the frame"));
        }
        if count != frame.count {
            return Err(JpegError::Unsupported(
                "color image coded in several scans (non-interleaved)",
            ));
        }
        let (ss, se, ah_al) = (b[1 + 2 * count], b[2 + 2 * count], b[3 + 2 * count]);
        if (ss, se, ah_al) != (0, 63, 0) {
            return Err(seg.malformed("spectral selection or approximation of a sequential scan"));
        }
        let mut components: [Option<ScanComponent<'t>>; 3] = [None, None, None];
        for i in 0..count {
            let (id, tables_byte) = (b[1 + 2 * i], b[2 + 2 * i]);
            let index = frame.components[..frame.count]
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| seg.malformed("scan names a component not in the frame"))?;
            if components.iter().flatten().any(|c| c.index == index) {
                return Err(seg.malformed("scan names a component twice"));
            }
            let quant_id = frame.components[index].quant_id;
            if !tables.quant_defined[quant_id] {
                return Err(seg.malformed("quantization table not defined"));
            }
            let (dc_id, ac_id) = (usize::from(tables_byte >> 4), usize::from(tables_byte & 15));
            let missing = || seg.malformed("Huffman table not defined");
            components[i] = Some(ScanComponent {
                index,
                dc: tables.huffman(false, dc_id).ok_or_else(missing)?,
                ac: tables.huffman(true, ac_id).ok_or_else(missing)?,
                quant: &tables.quant[quant_id],
            });
        }
        Ok(Scan { components })
    }
}

/// Reads entropy-coded bits MSB first, removing stuffed zero bytes. At a marker or at the end
/// of the data it feeds zero bits and counts them, so a scan that reads into them can be
/// reported as truncated.
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    /// Unread bits, left-aligned.
    bits: u64,
    count: u32,
    /// Zero bits fed past the real data since the last restart.
    padding: u32,
    /// A marker or the end of the data was reached: only zeros from here on.
    stopped: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader {
            data,
            pos,
            bits: 0,
            count: 0,
            padding: 0,
            stopped: false,
        }
    }

    /// Tops the buffer up to at least 57 bits.
    fn refill(&mut self) {
        while self.count <= 56 {
            let byte = self.next_byte();
            self.bits |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn next_byte(&mut self) -> u8 {
        if !self.stopped {
            match self.data.get(self.pos) {
                // A stuffed FF.
                Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    return 0xFF;
                }
                Some(&b) if b != 0xFF => {
                    self.pos += 1;
                    return b;
                }
                // A marker (or fill bytes before one), or the end of the data: the
                // entropy-coded data ends here.
                _ => self.stopped = true,
            }
        }
        self.padding = self.padding.saturating_add(8);
        0
    }

    /// Whether more bits were consumed than the data held.
    fn overrun(&self) -> bool {
        self.padding > self.count
    }

    fn consume(&mut self, n: u32) {
        self.bits <<= n;
        self.count -= n;
    }

    /// The next Huffman-coded symbol.
    #[inline]
    fn symbol(&mut self, table: &HuffTable) -> Result<u8, JpegError> {
        if self.count < 32 {
            self.refill();
        }
        let entry = table.fast[(self.bits >> (64 - FAST_BITS)) as usize];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        for len in FAST_BITS + 1..=16 {
            let code = (self.bits >> (64 - len)) as i32;
            if code <= table.max_code[len as usize] {
                self.consume(len);
                let k = (table.offset[len as usize] + code) as usize;
                return table
                    .symbols
                    .get(k)
                    .copied()
                    .ok_or(self.bad("bad Huffman code"));
            }
        }
        Err(self.bad("bad Huffman code"))
    }

    /// The next `size`-bit value (size <= 16), sign-extended as in ITU T.81 F.2.2.1.
    #[inline]
    fn value(&mut self, size: u32) -> i32 {
        if size == 0 {
            return 0;
        }
        if self.count < size {
            self.refill();
        }
        let v = (self.bits >> (64 - size)) as i32;
        self.consume(size);
        if v < 1 << (size - 1) {
            v - (1 << size) + 1
        } else {
            v
        }
    }

    fn bad(&self, what: &'static str) -> JpegError {
        JpegError::BadData {
            what,
            offset: self.pos,
        }
    }

    fn truncated(&self) -> JpegError {
        JpegError::Truncated {
            what: "entropy-coded data",
            offset: self.pos,
        }
    }

    /// Ends a restart interval: its data must be complete and be followed by RSTn.
    fn restart(&mut self, n: u8) -> Result<(), JpegError> {
        if self.overrun() {
            return Err(self.truncated());
        }
        match find_marker(self.data, self.pos) {
            Some((m, at)) if m == RST0 + n => {
                *self = BitReader::new(self.data, at + 2);
                Ok(())
            }
            Some(_) => Err(self.bad("missing or out-of-order restart marker")),
            None => Err(self.truncated()),
        }
    }
}

/// Up to 64 dequantized coefficients of one block, only the nonzero ones, in natural order
/// positions.
struct Block {
    index: [u8; 64],
    value: [i32; 64],
    len: usize,
}

impl Block {
    fn push(&mut self, index: u8, value: i32) {
        // `len` < 64: one push for the DC and one per AC coefficient at increasing zigzag
        // positions 1..=63.
        self.index[self.len] = index;
        self.value[self.len] = value;
        self.len += 1;
    }
}

/// Decodes one block (ITU T.81 F.2.2) into `block`; `pred` is the component's DC predictor.
fn decode_block(
    reader: &mut BitReader<'_>,
    sc: &ScanComponent<'_>,
    pred: &mut i32,
    block: &mut Block,
) -> Result<(), JpegError> {
    block.len = 0;
    let size = reader.symbol(sc.dc)?;
    if size > 11 {
        return Err(reader.bad("DC difference category above 11"));
    }
    *pred = (*pred + reader.value(u32::from(size))).clamp(-32768, 32767);
    block.push(0, *pred * i32::from(sc.quant[0]));
    let mut k = 1;
    while k < 64 {
        let rs = reader.symbol(sc.ac)?;
        let (run, size) = (usize::from(rs >> 4), u32::from(rs & 15));
        if size == 0 {
            if run != 15 {
                break; // end of block
            }
            k += 16;
            if k > 64 {
                return Err(reader.bad("coefficient index past 63"));
            }
            continue;
        }
        k += run;
        if k > 63 {
            return Err(reader.bad("coefficient index past 63"));
        }
        // At most 15 bits times a 16-bit quantizer: fits in i32.
        let value = reader.value(size) * i32::from(sc.quant[k]);
        if value != 0 {
            block.push(ZIGZAG[k], value);
        }
        k += 1;
    }
    Ok(())
}

/// Decodes the scan's entropy-coded data into the component planes. A grayscale frame's one
/// component has 1x1 sampling (see [`Frame::parse`]), so its MCUs are its blocks, as a
/// single-component scan needs.
fn decode_scan(
    frame: &Frame,
    scan: &Scan<'_>,
    reader: &mut BitReader<'_>,
    restart_interval: usize,
    idct: &Idct,
    planes: &mut Planes,
) -> Result<(), JpegError> {
    let mut preds = [0i32; 3];
    let mut block = Block {
        index: [0; 64],
        value: [0; 64],
        len: 0,
    };
    let mut next_restart = 0u8;
    for mcu in 0..frame.mcus_x * frame.mcus_y {
        if restart_interval > 0 && mcu > 0 && mcu % restart_interval == 0 {
            reader.restart(next_restart)?;
            next_restart = (next_restart + 1) % 8;
            preds = [0; 3];
        }
        let (mx, my) = (mcu % frame.mcus_x, mcu / frame.mcus_x);
        for sc in scan.components.iter().flatten() {
            let c = &frame.components[sc.index];
            for v in 0..c.v {
                for h in 0..c.h {
                    decode_block(reader, sc, &mut preds[sc.index], &mut block)?;
                    let (bx, by) = (mx * c.h + h, my * c.v + v);
                    let start = by * 8 * c.stride + bx * 8;
                    idct.block(&block, &mut planes.0[sc.index][start..], c.stride);
                }
            }
        }
        // Checked per MCU so a truncated frame stops early rather than decoding zeros.
        if reader.overrun() {
            return Err(reader.truncated());
        }
    }
    Ok(())
}

/// A separable floating-point inverse DCT (ITU T.81 A.3.3), computed directly from the
/// cosine basis and skipping zero coefficients: accurate to rounding, and fast on the sparse
/// blocks real frames are made of.
struct Idct {
    /// `basis[k][n] = C(k) / 2 * cos((2n + 1) k pi / 16)`, with `C(0) = 1 / sqrt(2)`.
    basis: [[f32; 8]; 8],
}

impl Idct {
    fn new() -> Idct {
        let mut basis = [[0f32; 8]; 8];
        for (k, row) in basis.iter_mut().enumerate() {
            let scale = if k == 0 { 0.5 / 2f64.sqrt() } else { 0.5 };
            for (n, b) in row.iter_mut().enumerate() {
                let angle = (2 * n + 1) as f64 * k as f64 * std::f64::consts::PI / 16.0;
                *b = (scale * angle.cos()) as f32;
            }
        }
        Idct { basis }
    }

    /// Writes the block's 8x8 samples (level-shifted by 128, rounded, clamped) to `out`, rows
    /// `stride` bytes apart.
    fn block(&self, block: &Block, out: &mut [u8], stride: usize) {
        if block.len == 1 && block.index[0] == 0 {
            // DC only (most blocks of real frames): a flat block.
            let v = sample(block.value[0] as f32 / 8.0);
            for row in out.chunks_mut(stride).take(8) {
                row[..8].fill(v);
            }
            return;
        }
        // Columns: cols[u][y] = sum over v of F[v][u] * basis[v][y].
        let mut cols = [[0f32; 8]; 8];
        let mut used = 0u8;
        for i in 0..block.len {
            let (index, value) = (usize::from(block.index[i]), block.value[i] as f32);
            let (v, u) = (index / 8, index % 8);
            used |= 1 << u;
            for (c, b) in cols[u].iter_mut().zip(&self.basis[v]) {
                *c += value * b;
            }
        }
        // Rows: out[y][x] = sum over u of cols[u][y] * basis[u][x].
        for (y, row) in out.chunks_mut(stride).take(8).enumerate() {
            let mut acc = [0f32; 8];
            for (u, (col, basis)) in cols.iter().zip(&self.basis).enumerate() {
                if used & (1 << u) != 0 {
                    let c = col[y];
                    for (a, b) in acc.iter_mut().zip(basis) {
                        *a += c * b;
                    }
                }
            }
            for (o, a) in row[..8].iter_mut().zip(acc) {
                *o = sample(a);
            }
        }
    }
}

impl fmt::Debug for Idct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Idct")
    }
}

/// An IDCT output value as an 8-bit sample: level shift, round, clamp.
#[inline]
fn sample(v: f32) -> u8 {
    (v + 128.5).clamp(0.0, 255.0) as u8
}

/// Decoded component planes, `Frame`'s `stride` wide, before cropping into NV12.
struct Planes([Vec<u8>; 3]);

impl Planes {
    /// Crops Y into `nv12` and brings chroma to 4:2:0 (copied for 2x2 luma sampling,
    /// averaged otherwise, 128 for grayscale).
    fn write_nv12(&self, frame: &Frame, width: u32, height: u32, nv12: &mut [u8]) {
        let (w, h) = (width as usize, height as usize);
        let (y_out, uv_out) = nv12.split_at_mut(w * h);
        let y_stride = frame.components[0].stride;
        for (dst, src) in y_out.chunks_exact_mut(w).zip(self.0[0].chunks(y_stride)) {
            dst.copy_from_slice(&src[..w]);
        }
        if frame.count == 1 {
            uv_out.fill(128);
            return;
        }
        // Chroma is 1x1, so one chroma sample covers h_max x v_max luma samples and one NV12
        // chroma sample (2x2 luma) covers (2 / h_max) x (2 / v_max) chroma samples.
        let c_stride = frame.components[1].stride;
        let (cb, cr) = (&self.0[1][..], &self.0[2][..]);
        match (frame.h_max, frame.v_max) {
            (2, 2) => subsample::<1, 1>(cb, cr, c_stride, w / 2, uv_out),
            (2, 1) => subsample::<1, 2>(cb, cr, c_stride, w / 2, uv_out),
            (1, 2) => subsample::<2, 1>(cb, cr, c_stride, w / 2, uv_out),
            _ => subsample::<2, 2>(cb, cr, c_stride, w / 2, uv_out),
        }
    }
}

/// Fills interleaved `uv` (`half_w` pairs a row) with the mean of each `FX` x `FY` group of
/// `cb` and `cr` samples.
fn subsample<const FX: usize, const FY: usize>(
    cb: &[u8],
    cr: &[u8],
    stride: usize,
    half_w: usize,
    uv: &mut [u8],
) {
    let n = (FX * FY) as u32;
    for (y, out_row) in uv.chunks_exact_mut(2 * half_w).enumerate() {
        let rows = y * FY * stride;
        for (x, pair) in out_row.chunks_exact_mut(2).enumerate() {
            let (mut sum_b, mut sum_r) = (0u32, 0u32);
            for dy in 0..FY {
                let at = rows + dy * stride + x * FX;
                for dx in 0..FX {
                    sum_b += u32::from(cb[at + dx]);
                    sum_r += u32::from(cr[at + dx]);
                }
            }
            pair[0] = ((sum_b + n / 2) / n) as u8;
            pair[1] = ((sum_r + n / 2) / n) as u8;
        }
    }
}

impl fmt::Debug for Planes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(Vec::len)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical code of `symbol` in a table given as counts per length and symbols.
    fn code_of(counts: &[u8; 16], symbols: &[u8], symbol: u8) -> String {
        let (mut code, mut k) = (0u32, 0);
        for len in 1..=16 {
            for _ in 0..counts[len - 1] {
                if symbols[k] == symbol {
                    return format!("{code:0len$b}");
                }
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        panic!("symbol {symbol:#x} not in the table");
    }

    /// Packs a string of 0s and 1s (spaces ignored) MSB first, pads the last byte with 1s
    /// and stuffs a 00 after every FF, as entropy-coded data is stored.
    fn pack(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let mut out = Vec::new();
        for chunk in bits.chunks(8) {
            let mut byte = 0xFFu8;
            for (i, &b) in chunk.iter().enumerate() {
                if b == b'0' {
                    byte &= !(0x80 >> i);
                }
            }
            out.push(byte);
            if byte == 0xFF {
                out.push(0);
            }
        }
        out
    }

    /// SOI, the segments (marker, body), the entropy-coded data, EOI.
    fn jpeg(segments: &[(u8, Vec<u8>)], entropy: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, SOI];
        for (marker, body) in segments {
            out.extend([0xFF, *marker]);
            out.extend(((body.len() + 2) as u16).to_be_bytes());
            out.extend(body);
        }
        out.extend(entropy);
        out.extend([0xFF, EOI]);
        out
    }

    fn dqt(q: u8) -> (u8, Vec<u8>) {
        let mut body = vec![0];
        body.extend([q; 64]);
        (DQT, body)
    }

    /// A 16x8 grayscale frame header: two blocks.
    fn sof_gray() -> (u8, Vec<u8>) {
        (0xC0, vec![8, 0, 8, 0, 16, 1, 1, 0x11, 0])
    }

    fn sos_gray() -> (u8, Vec<u8>) {
        (SOS, vec![1, 1, 0x00, 0, 63, 0])
    }

    fn dri(n: u16) -> (u8, Vec<u8>) {
        (DRI, n.to_be_bytes().to_vec())
    }

    fn dc(category: u8) -> String {
        code_of(&STD_DC_LUMA_COUNTS, &STD_DC_LUMA_VALUES, category)
    }

    fn ac(symbol: u8) -> String {
        code_of(&STD_AC_LUMA_COUNTS, &STD_AC_LUMA_VALUES, symbol)
    }

    /// Annex K bits of a block whose DC difference is +1 and that has no AC coefficients.
    fn flat_block() -> String {
        format!("{} 1 {}", dc(1), ac(0x00))
    }

    fn decode_16x8(data: &[u8]) -> Result<Vec<u8>, JpegError> {
        let mut decoder = JpegDecoder::new(16, 8);
        let mut nv12 = vec![0; decoder.nv12_len()];
        decoder.decode(data, &mut nv12).map(|()| nv12)
    }

    /// Two flat blocks, DC +1 each, quantizer 64 (one DC step = 8 levels), no DHT.
    fn two_flat_blocks(restart: bool, between: &[u8]) -> Vec<u8> {
        let mut segments = vec![dqt(64), sof_gray()];
        if restart {
            segments.push(dri(1));
        }
        segments.push(sos_gray());
        let mut entropy = pack(&flat_block());
        entropy.extend(between);
        entropy.extend(pack(&flat_block()));
        jpeg(&segments, &entropy)
    }

    fn bad_data(result: Result<Vec<u8>, JpegError>) -> &'static str {
        match result {
            Err(JpegError::BadData { what, .. }) => what,
            other => panic!("expected BadData, got {other:?}"),
        }
    }

    fn malformed(result: Result<Vec<u8>, JpegError>) -> &'static str {
        match result {
            Err(JpegError::Malformed { what, .. }) => what,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn dc_prediction_carries_over_without_restarts() {
        let nv12 = decode_16x8(&two_flat_blocks(false, &[])).unwrap();
        for row in nv12[..128].chunks(16) {
            assert_eq!(row[..8], [136; 8]);
            assert_eq!(row[8..], [144; 8]);
        }
        assert!(
            nv12[128..].iter().all(|&c| c == 128),
            "grayscale has neutral chroma"
        );
    }

    #[test]
    fn restart_marker_resets_dc_prediction() {
        let nv12 = decode_16x8(&two_flat_blocks(true, &[0xFF, RST0])).unwrap();
        assert!(nv12[..128].iter().all(|&y| y == 136));
        // Fill bytes before the marker are allowed.
        let nv12 = decode_16x8(&two_flat_blocks(true, &[0xFF, 0xFF, 0xFF, RST0])).unwrap();
        assert!(nv12[..128].iter().all(|&y| y == 136));
    }

    #[test]
    fn wrong_or_missing_restart_marker_is_bad_data() {
        let wrong = two_flat_blocks(true, &[0xFF, RST0 + 1]);
        assert_eq!(
            bad_data(decode_16x8(&wrong)),
            "missing or out-of-order restart marker"
        );
        let missing = two_flat_blocks(true, &[]);
        assert_eq!(
            bad_data(decode_16x8(&missing)),
            "missing or out-of-order restart marker"
        );
    }

    #[test]
    fn coefficient_index_past_63_is_bad_data() {
        let segments = [dqt(1), sof_gray(), sos_gray()];
        let zrl = ac(0xF0);
        // Four runs of 16 zeros from index 1 end past 63.
        let bits = format!("{} {zrl} {zrl} {zrl} {zrl}", dc(0));
        let result = decode_16x8(&jpeg(&segments, &pack(&bits)));
        assert_eq!(bad_data(result), "coefficient index past 63");
        // Three runs reach index 49; 15 more zeros and a coefficient land on 64.
        let bits = format!("{} {zrl} {zrl} {zrl} {} 1", dc(0), ac(0xF1));
        let result = decode_16x8(&jpeg(&segments, &pack(&bits)));
        assert_eq!(bad_data(result), "coefficient index past 63");
    }

    #[test]
    fn bad_huffman_code_and_dc_category_are_bad_data() {
        let segments = [dqt(1), sof_gray(), sos_gray()];
        // All ones is never a code (ITU T.81 C.2).
        let result = decode_16x8(&jpeg(&segments, &[0xFF, 0, 0xFF, 0, 0xFF, 0]));
        assert_eq!(bad_data(result), "bad Huffman code");
        // A DC table whose one symbol is category 12.
        let mut dht = vec![0x00, 1];
        dht.extend([0; 15]);
        dht.push(12);
        let segments = [dqt(1), sof_gray(), (DHT, dht), sos_gray()];
        let result = decode_16x8(&jpeg(&segments, &pack("0")));
        assert_eq!(bad_data(result), "DC difference category above 11");
    }

    #[test]
    fn truncated_entropy_data_is_an_error() {
        let whole = two_flat_blocks(false, &[]);
        // Second block missing, with and without EOI.
        let segments = [dqt(64), sof_gray(), sos_gray()];
        let one_block = jpeg(&segments, &pack(&flat_block()));
        assert!(matches!(
            decode_16x8(&one_block),
            Err(JpegError::Truncated { .. })
        ));
        let cut = &one_block[..one_block.len() - 2];
        assert!(matches!(decode_16x8(cut), Err(JpegError::Truncated { .. })));
        // Complete scan without EOI: accepted.
        assert!(decode_16x8(&whole[..whole.len() - 2]).is_ok());
        // Cut inside the headers.
        assert!(matches!(
            decode_16x8(&whole[..30]),
            Err(JpegError::Truncated { .. })
        ));
    }

    #[test]
    fn header_errors_name_what_is_wrong() {
        assert_eq!(decode_16x8(b"GIF89a"), Err(JpegError::MissingSoi));
        assert_eq!(decode_16x8(&[]), Err(JpegError::MissingSoi));

        let no_sof = jpeg(&[dqt(1), sos_gray()], &pack(&flat_block()));
        assert_eq!(
            malformed(decode_16x8(&no_sof)),
            "scan (SOS) before the frame header (SOF)"
        );

        let mut bad_id = dqt(1);
        bad_id.1[0] = 4;
        let data = jpeg(&[bad_id, sof_gray(), sos_gray()], &[]);
        assert_eq!(
            malformed(decode_16x8(&data)),
            "quantization table id above 3"
        );

        let dht = vec![0x24; 17];
        let data = jpeg(&[dqt(1), sof_gray(), (DHT, dht), sos_gray()], &[]);
        assert_eq!(
            malformed(decode_16x8(&data)),
            "Huffman table class above 1 or id above 3"
        );

        // Three codes of one bit cannot exist.
        let mut dht = vec![0x00, 3];
        dht.extend([0; 15]);
        dht.extend([0, 1, 2]);
        let data = jpeg(&[dqt(1), sof_gray(), (DHT, dht), sos_gray()], &[]);
        assert_eq!(
            malformed(decode_16x8(&data)),
            "Huffman table with more codes than fit"
        );

        // The SOF names quantization table 1, which is never defined.
        let mut sof = sof_gray();
        sof.1[8] = 1;
        let data = jpeg(&[dqt(1), sof, sos_gray()], &pack(&flat_block()));
        assert_eq!(
            malformed(decode_16x8(&data)),
            "quantization table not defined"
        );

        // Huffman tables 2 have no Annex K default.
        let data = jpeg(
            &[dqt(1), sof_gray(), (SOS, vec![1, 1, 0x22, 0, 63, 0])],
            &[],
        );
        assert_eq!(malformed(decode_16x8(&data)), "Huffman table not defined");

        let data = jpeg(&[dqt(1), sof_gray(), (SOS, vec![1, 9, 0, 0, 63, 0])], &[]);
        assert_eq!(
            malformed(decode_16x8(&data)),
            "scan names a component not in the frame"
        );

        // A segment whose length runs past the end of the data.
        let mut data = jpeg(&[dqt(1)], &[]);
        data.truncate(20);
        assert_eq!(
            decode_16x8(&data),
            Err(JpegError::Truncated {
                what: "a marker segment",
                offset: 2
            })
        );

        let garbage = [0xFF, SOI, 0x12, 0x34];
        assert_eq!(
            malformed(decode_16x8(&garbage)),
            "expected a marker (FF xx)"
        );
    }

    #[test]
    fn unsupported_frames_are_named() {
        let with_sof = |marker: u8, body: Vec<u8>| {
            decode_16x8(&jpeg(&[dqt(1), (marker, body), sos_gray()], &[]))
        };
        let gray = sof_gray().1;
        let cases = [
            (0xC2, gray.clone(), "progressive JPEG"),
            (0xC3, gray.clone(), "lossless JPEG"),
            (0xC9, gray.clone(), "arithmetic coding"),
            (0xC5, gray.clone(), "hierarchical JPEG"),
            (
                0xC0,
                vec![12, 0, 8, 0, 16, 1, 1, 0x11, 0],
                "sample precision other than 8 bits",
            ),
            (
                0xC0,
                vec![8, 0, 8, 0, 16, 2, 1, 0x11, 0, 2, 0x11, 0],
                "component count other than 1 or 3",
            ),
            (
                0xC0,
                vec![8, 0, 8, 0, 16, 3, 1, 0x41, 0, 2, 0x11, 0, 3, 0x11, 0],
                "sampling other than luma 1x1, 2x1, 1x2 or 2x2 with chroma 1x1",
            ),
        ];
        for (marker, body, what) in cases {
            assert_eq!(with_sof(marker, body), Err(JpegError::Unsupported(what)));
        }
        // A color frame whose scan holds one component (non-interleaved).
        let sof = vec![8, 0, 8, 0, 16, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0];
        let data = jpeg(&[dqt(1), (0xC0, sof), sos_gray()], &[]);
        assert_eq!(
            decode_16x8(&data),
            Err(JpegError::Unsupported(
                "color image coded in several scans (non-interleaved)"
            ))
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            JpegDecoder::try_new(15, 8).unwrap_err(),
            JpegError::InvalidSize {
                width: 15,
                height: 8
            }
        );
        assert!(JpegDecoder::try_new(0, 8).is_err());
        assert!(JpegDecoder::try_new(65536, 8).is_err());

        let data = two_flat_blocks(false, &[]);
        assert_eq!(frame_size(&data), Ok((16, 8)));
        let mut decoder = JpegDecoder::new(32, 8);
        let mut nv12 = vec![0; decoder.nv12_len()];
        assert_eq!(
            decoder.decode(&data, &mut nv12),
            Err(JpegError::SizeMismatch {
                expected_width: 32,
                expected_height: 8,
                width: 16,
                height: 8
            })
        );
        assert_eq!(
            decoder.decode(&data, &mut nv12[1..]),
            Err(JpegError::OutputLength {
                expected: 384,
                got: 383
            })
        );
    }

    #[test]
    fn annex_k_tables_are_complete() {
        let total = |counts: &[u8; 16]| counts.iter().map(|&c| usize::from(c)).sum::<usize>();
        assert_eq!(total(&STD_DC_LUMA_COUNTS), STD_DC_LUMA_VALUES.len());
        assert_eq!(total(&STD_DC_CHROMA_COUNTS), STD_DC_CHROMA_VALUES.len());
        assert_eq!(total(&STD_AC_LUMA_COUNTS), STD_AC_LUMA_VALUES.len());
        assert_eq!(total(&STD_AC_CHROMA_COUNTS), STD_AC_CHROMA_VALUES.len());
        // Every run/size pair a baseline encoder can emit is in each AC table.
        for values in [&STD_AC_LUMA_VALUES, &STD_AC_CHROMA_VALUES] {
            for run in 0..16u8 {
                for size in 1..=10u8 {
                    assert!(values.contains(&(run << 4 | size)));
                }
            }
            assert!(values.contains(&0x00) && values.contains(&0xF0));
        }
    }

    /// The IDCT against the textbook formula (ITU T.81 A.3.3) evaluated in f64.
    #[test]
    fn idct_matches_the_definition() {
        let idct = Idct::new();
        let mut seed = 12345u32;
        let mut random = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as i32
        };
        for trial in 0..200 {
            let mut block = Block {
                index: [0; 64],
                value: [0; 64],
                len: 0,
            };
            let mut coef = [0i32; 64];
            // Dense and sparse blocks, DC-only included.
            let count = [1, 2, 6, 64][trial % 4];
            for (i, c) in coef.iter_mut().enumerate() {
                if i == 0 || (i < count && random() % 3 != 0) {
                    let range = if i == 0 { 2048 } else { 600 >> (i / 16) };
                    *c = random() % (2 * range) - range;
                    block.push(i as u8, *c);
                }
            }
            let mut out = [0u8; 64];
            idct.block(&block, &mut out, 8);
            for y in 0..8 {
                for x in 0..8 {
                    let mut sum = 0f64;
                    for v in 0..8 {
                        for u in 0..8 {
                            let c = |k: usize| if k == 0 { 0.5f64.sqrt() } else { 1.0 };
                            let cos = |n: usize, k: usize| {
                                ((2 * n + 1) as f64 * k as f64 * std::f64::consts::PI / 16.0).cos()
                            };
                            sum += c(u) * c(v) * f64::from(coef[v * 8 + u]) * cos(x, u) * cos(y, v);
                        }
                    }
                    let want = (sum / 4.0 + 128.0).round().clamp(0.0, 255.0);
                    let got = f64::from(out[y * 8 + x]);
                    assert!(
                        (got - want).abs() <= 1.0,
                        "trial {trial} ({x},{y}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
