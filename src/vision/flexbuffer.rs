//! A small, bounds-checked reader for the one FlexBuffer shape TFLite custom ops use for their
//! options: a map from keys to scalars (ints, uints, floats, bools).
//!
//! Written here rather than taken from a crate because the whole need is ~a map of scalars,
//! read once at model load from untrusted bytes: every read goes through [`slice::get`], so a
//! corrupt model gives an error, never a panic or an out-of-bounds read.

/// Why the options could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlexError {
    /// An offset or length points outside the buffer.
    #[error("custom options: offset out of bounds")]
    OutOfBounds,
    /// The root value is not a map.
    #[error("custom options: the root is not a map (type {0})")]
    NotAMap(u8),
    /// A byte width other than 1, 2, 4 or 8.
    #[error("custom options: bad byte width {0}")]
    BadWidth(u64),
    /// A map key is not a NUL-terminated string.
    #[error("custom options: a key is not terminated")]
    BadKey,
    /// The keys are not in strictly ascending order, as every FlexBuffer writer leaves them.
    /// TFLite's C++ reader looks keys up by binary search, so it could read another entry
    /// than this reader's; such options are refused rather than read two ways.
    #[error("custom options: the keys are not sorted")]
    UnsortedKeys,
}

/// A scalar value of the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlexScalar {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Null, or a value of a type this reader does not decode (vector, string, ...).
    Other,
}

impl FlexScalar {
    /// The value as an integer, if it is a number that fits (floats are truncated, as
    /// FlexBuffers' `AsInt64` does).
    pub fn as_i64(self) -> Option<i64> {
        match self {
            FlexScalar::Int(v) => Some(v),
            FlexScalar::UInt(v) => i64::try_from(v).ok(),
            FlexScalar::Float(v) if v.is_finite() => Some(v as i64),
            FlexScalar::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            FlexScalar::Int(v) => Some(v as f64),
            FlexScalar::UInt(v) => Some(v as f64),
            FlexScalar::Float(v) => Some(v),
            FlexScalar::Bool(b) => Some(b as u8 as f64),
            FlexScalar::Other => None,
        }
    }

    /// The value as a boolean (non-zero numbers are true, as in FlexBuffers' `AsBool`).
    pub fn as_bool(self) -> Option<bool> {
        match self {
            FlexScalar::Bool(b) => Some(b),
            other => other.as_f64().map(|v| v != 0.0),
        }
    }
}

// FlexBuffer value types (flexbuffers.h).
const TYPE_NULL: u8 = 0;
const TYPE_INT: u8 = 1;
const TYPE_UINT: u8 = 2;
const TYPE_FLOAT: u8 = 3;
const TYPE_INDIRECT_INT: u8 = 6;
const TYPE_INDIRECT_UINT: u8 = 7;
const TYPE_INDIRECT_FLOAT: u8 = 8;
const TYPE_MAP: u8 = 9;
const TYPE_BOOL: u8 = 26;

/// A FlexBuffer whose root is a map, read in place.
#[derive(Debug, Clone, Copy)]
pub struct FlexMap<'a> {
    buf: &'a [u8],
    /// Start of the values.
    values: usize,
    /// Byte width of values and of the size field.
    width: usize,
    len: usize,
    /// Start of the keys vector and its element width.
    keys: usize,
    key_width: usize,
}

fn width(w: u64) -> Result<usize, FlexError> {
    match w {
        1 | 2 | 4 | 8 => Ok(w as usize),
        other => Err(FlexError::BadWidth(other)),
    }
}

fn read_uint(buf: &[u8], at: usize, w: usize) -> Result<u64, FlexError> {
    let bytes = buf.get(at..at.checked_add(w).ok_or(FlexError::OutOfBounds)?);
    let bytes = bytes.ok_or(FlexError::OutOfBounds)?;
    let mut v = [0u8; 8];
    v[..w].copy_from_slice(bytes);
    Ok(u64::from_le_bytes(v))
}

fn read_int(buf: &[u8], at: usize, w: usize) -> Result<i64, FlexError> {
    let v = read_uint(buf, at, w)?;
    // Sign-extend from the stored width.
    let shift = 64 - 8 * w as u32;
    Ok(((v << shift) as i64) >> shift)
}

fn read_float(buf: &[u8], at: usize, w: usize) -> Result<f64, FlexError> {
    let v = read_uint(buf, at, w)?;
    match w {
        4 => Ok(f32::from_bits(v as u32) as f64),
        8 => Ok(f64::from_bits(v)),
        other => Err(FlexError::BadWidth(other as u64)),
    }
}

/// The position `offset` bytes before `at` (FlexBuffer offsets point backwards).
fn back(at: usize, offset: u64) -> Result<usize, FlexError> {
    usize::try_from(offset)
        .ok()
        .and_then(|o| at.checked_sub(o))
        .ok_or(FlexError::OutOfBounds)
}

impl<'a> FlexMap<'a> {
    /// Reads the root of `buf`, which must be a map.
    pub fn parse(buf: &'a [u8]) -> Result<FlexMap<'a>, FlexError> {
        let n = buf.len();
        if n < 3 {
            return Err(FlexError::OutOfBounds);
        }
        let root_width = width(buf[n - 1] as u64)?;
        let packed = buf[n - 2];
        let root = (n - 2)
            .checked_sub(root_width)
            .ok_or(FlexError::OutOfBounds)?;
        if packed >> 2 != TYPE_MAP {
            return Err(FlexError::NotAMap(packed >> 2));
        }
        let values = back(root, read_uint(buf, root, root_width)?)?;
        let w = 1usize << (packed & 3);
        let len = read_uint(buf, values.checked_sub(w).ok_or(FlexError::OutOfBounds)?, w)?;
        let len = usize::try_from(len).map_err(|_| FlexError::OutOfBounds)?;
        // The values and one type byte per value must lie inside the buffer.
        let end = len
            .checked_mul(w + 1)
            .and_then(|b| b.checked_add(values))
            .ok_or(FlexError::OutOfBounds)?;
        if end > n {
            return Err(FlexError::OutOfBounds);
        }
        let keys_field = values.checked_sub(3 * w).ok_or(FlexError::OutOfBounds)?;
        let keys = back(keys_field, read_uint(buf, keys_field, w)?)?;
        let key_width = width(read_uint(buf, keys_field + w, w)?)?;
        let key_len = read_uint(
            buf,
            keys.checked_sub(key_width).ok_or(FlexError::OutOfBounds)?,
            key_width,
        )?;
        if key_len != len as u64 {
            return Err(FlexError::OutOfBounds);
        }
        let map = FlexMap {
            buf,
            values,
            width: w,
            len,
            keys,
            key_width,
        };
        for i in 1..len {
            if map.key(i - 1)? >= map.key(i)? {
                return Err(FlexError::UnsortedKeys);
            }
        }
        Ok(map)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key of entry `i` (without its NUL terminator).
    fn key(&self, i: usize) -> Result<&'a [u8], FlexError> {
        let at = self.keys + i * self.key_width;
        let start = back(at, read_uint(self.buf, at, self.key_width)?)?;
        let rest = self.buf.get(start..).ok_or(FlexError::OutOfBounds)?;
        let end = rest.iter().position(|&b| b == 0).ok_or(FlexError::BadKey)?;
        Ok(&rest[..end])
    }

    /// The value of entry `i`.
    fn value(&self, i: usize) -> Result<FlexScalar, FlexError> {
        let (buf, w) = (self.buf, self.width);
        let at = self.values + i * w;
        let packed = buf[self.values + self.len * w + i];
        let (typ, own_width) = (packed >> 2, 1usize << (packed & 3));
        let indirect = || back(at, read_uint(buf, at, w)?);
        Ok(match typ {
            TYPE_NULL => FlexScalar::Other,
            TYPE_INT => FlexScalar::Int(read_int(buf, at, w)?),
            TYPE_UINT => FlexScalar::UInt(read_uint(buf, at, w)?),
            TYPE_FLOAT => FlexScalar::Float(read_float(buf, at, w)?),
            TYPE_BOOL => FlexScalar::Bool(read_uint(buf, at, w)? != 0),
            TYPE_INDIRECT_INT => FlexScalar::Int(read_int(buf, indirect()?, own_width)?),
            TYPE_INDIRECT_UINT => FlexScalar::UInt(read_uint(buf, indirect()?, own_width)?),
            TYPE_INDIRECT_FLOAT => FlexScalar::Float(read_float(buf, indirect()?, own_width)?),
            _ => FlexScalar::Other,
        })
    }

    /// The value stored under `key`, `Ok(None)` if the map has no such key.
    pub fn get(&self, key: &str) -> Result<Option<FlexScalar>, FlexError> {
        for i in 0..self.len {
            if self.key(i)? == key.as_bytes() {
                return self.value(i).map(Some);
            }
        }
        Ok(None)
    }
}

/// Writes a FlexBuffer map of scalars with every field 8 bytes wide, keys sorted: what a
/// model exporter writes for an op's options, for tests and the fuzz harness to build
/// options with chosen values. `Other` is written as null.
pub fn write_map(entries: &[(&str, FlexScalar)]) -> Vec<u8> {
    let mut entries = entries.to_vec();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut buf = Vec::new();
    let mut key_at = Vec::new();
    for (key, _) in &entries {
        key_at.push(buf.len());
        buf.extend_from_slice(key.as_bytes());
        buf.push(0);
    }
    let pad = |buf: &mut Vec<u8>| buf.resize(buf.len().next_multiple_of(8), 0);
    let put = |buf: &mut Vec<u8>, v: u64| buf.extend_from_slice(&v.to_le_bytes());
    pad(&mut buf);
    put(&mut buf, entries.len() as u64);
    let keys = buf.len();
    for &k in &key_at {
        let back = buf.len() - k;
        put(&mut buf, back as u64);
    }
    // The values vector's prefix: offset back to the keys, their width, the length.
    let back = buf.len() - keys;
    put(&mut buf, back as u64);
    put(&mut buf, 8);
    put(&mut buf, entries.len() as u64);
    let values = buf.len();
    let mut types = Vec::new();
    for (_, v) in &entries {
        let (typ, bits) = match *v {
            FlexScalar::Int(i) => (TYPE_INT, i as u64),
            FlexScalar::UInt(u) => (TYPE_UINT, u),
            FlexScalar::Float(f) => (TYPE_FLOAT, f.to_bits()),
            FlexScalar::Bool(b) => (TYPE_BOOL, u64::from(b)),
            FlexScalar::Other => (TYPE_NULL, 0),
        };
        put(&mut buf, bits);
        types.push(typ << 2 | 3);
    }
    buf.extend_from_slice(&types);
    let root = buf.len();
    put(&mut buf, (root - values) as u64);
    buf.push(TYPE_MAP << 2 | 3);
    buf.push(8);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The custom options of the `TFLite_Detection_PostProcess` op in TensorFlow's
    /// `coco_ssd_mobilenet_v1_1.0_quant_2018_06_29` model, byte for byte.
    const SSD_OPTIONS: &[u8] = &[
        121, 95, 115, 99, 97, 108, 101, 0, 95, 111, 117, 116, 112, 117, 116, 95, 113, 117, 97, 110,
        116, 105, 122, 101, 100, 0, 109, 97, 120, 95, 100, 101, 116, 101, 99, 116, 105, 111, 110,
        115, 0, 110, 109, 115, 95, 115, 99, 111, 114, 101, 95, 116, 104, 114, 101, 115, 104, 111,
        108, 100, 0, 119, 95, 115, 99, 97, 108, 101, 0, 120, 95, 115, 99, 97, 108, 101, 0, 110,
        109, 115, 95, 105, 111, 117, 95, 116, 104, 114, 101, 115, 104, 111, 108, 100, 0, 104, 95,
        115, 99, 97, 108, 101, 0, 109, 97, 120, 95, 99, 108, 97, 115, 115, 101, 115, 95, 112, 101,
        114, 95, 100, 101, 116, 101, 99, 116, 105, 111, 110, 0, 110, 117, 109, 95, 99, 108, 97,
        115, 115, 101, 115, 0, 10, 134, 48, 41, 119, 69, 106, 19, 88, 81, 151, 10, 0, 0, 0, 1, 0,
        0, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 160, 64, 1, 0, 0, 0, 10, 0, 0, 0, 154, 153, 25, 63,
        119, 204, 43, 50, 90, 0, 0, 0, 0, 0, 160, 64, 0, 0, 32, 65, 0, 0, 32, 65, 106, 14, 6, 6,
        14, 14, 6, 14, 14, 14, 50, 38, 1,
    ];

    #[test]
    fn reads_the_ssd_post_process_options() {
        let m = FlexMap::parse(SSD_OPTIONS).unwrap();
        assert_eq!(m.len(), 10);
        let get = |k: &str| m.get(k).unwrap();
        assert_eq!(get("max_detections"), Some(FlexScalar::Int(10)));
        assert_eq!(get("max_classes_per_detection"), Some(FlexScalar::Int(1)));
        assert_eq!(get("num_classes"), Some(FlexScalar::Int(90)));
        assert_eq!(get("_output_quantized"), Some(FlexScalar::Bool(true)));
        assert_eq!(get("y_scale").and_then(|v| v.as_f64()), Some(10.0));
        assert_eq!(get("x_scale").and_then(|v| v.as_f64()), Some(10.0));
        assert_eq!(get("h_scale").and_then(|v| v.as_f64()), Some(5.0));
        assert_eq!(get("w_scale").and_then(|v| v.as_f64()), Some(5.0));
        let iou = get("nms_iou_threshold").and_then(|v| v.as_f64()).unwrap();
        assert!((iou - 0.6).abs() < 1e-6);
        let score = get("nms_score_threshold").and_then(|v| v.as_f64()).unwrap();
        assert!((score - 1e-8).abs() < 1e-12);
        // Optional keys the exporter left out (the op then uses fast NMS).
        assert_eq!(get("use_regular_nms"), None);
        assert_eq!(get("detections_per_class"), None);
    }

    #[test]
    fn every_truncation_or_corruption_is_an_error_not_a_panic() {
        for n in 0..SSD_OPTIONS.len() {
            // Any prefix either fails to parse or reads without panicking.
            if let Ok(m) = FlexMap::parse(&SSD_OPTIONS[..n]) {
                let _ = m.get("num_classes");
            }
        }
        for i in 0..SSD_OPTIONS.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = SSD_OPTIONS.to_vec();
                bytes[i] ^= flip;
                if let Ok(m) = FlexMap::parse(&bytes) {
                    for k in ["max_detections", "y_scale", "missing"] {
                        let _ = m.get(k);
                    }
                }
            }
        }
        assert_eq!(FlexMap::parse(&[]).unwrap_err(), FlexError::OutOfBounds);
        // Swapping the first letters of two keys unsorts them.
        let mut bytes = SSD_OPTIONS.to_vec();
        bytes.swap(0, 8);
        assert_eq!(FlexMap::parse(&bytes).unwrap_err(), FlexError::UnsortedKeys);
        assert_eq!(
            FlexMap::parse(&[0, 4, 1]).unwrap_err(),
            FlexError::NotAMap(1)
        );
    }

    #[test]
    fn written_maps_read_back() {
        let bytes = write_map(&[
            ("b", FlexScalar::Float(0.5)),
            ("a", FlexScalar::Int(-3)),
            ("c", FlexScalar::Bool(true)),
            ("d", FlexScalar::UInt(7)),
        ]);
        let m = FlexMap::parse(&bytes).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m.get("a").unwrap(), Some(FlexScalar::Int(-3)));
        assert_eq!(m.get("b").unwrap(), Some(FlexScalar::Float(0.5)));
        assert_eq!(m.get("c").unwrap(), Some(FlexScalar::Bool(true)));
        assert_eq!(m.get("d").unwrap(), Some(FlexScalar::UInt(7)));
        assert_eq!(m.get("e").unwrap(), None);
    }

    #[test]
    fn scalars_convert_like_flexbuffers_does() {
        assert_eq!(FlexScalar::Float(2.9).as_i64(), Some(2));
        assert_eq!(FlexScalar::UInt(u64::MAX).as_i64(), None);
        assert_eq!(FlexScalar::Int(0).as_bool(), Some(false));
        assert_eq!(FlexScalar::Other.as_f64(), None);
    }
}
