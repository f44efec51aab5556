//! The truth file: what a recording should give, checked by `edgewatch eval`.
//!
//! ```toml
//! fps = 23.976                  # the recording's frame rate (MJPEG files and image folders)
//!
//! [[lines]]                     # crossings of a site line, one direction, some classes
//! name = "x50"
//! direction = "out"             # "in" or "out", as the site line defines them
//! class = ["car", "truck"]      # one class or a list (summed); default every counted class
//! min = 16                      # at least; `max` at most; give one or both
//! max = 17
//!
//! [[tracks]]                    # tracks created for some classes
//! class = "person"
//! max = 8                       # at most this many
//! objects = 6                   # true objects of these classes, for tracks per object
//! max_per_object = 1.3          # tracks created / objects, at most
//!
//! [[zones]]                     # presence in a site zone
//! name = "table"
//! class = "person"              # default every counted class
//! occupied_periods = 6          # free -> occupied transitions, exactly
//! max_objects = 1               # objects in it at once, at most
//! ```
//!
//! Unknown keys are errors; every error names the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a truth file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The truth file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key is unknown, missing, of the wrong type, out of range or names nothing in the
    /// site (a line, zone or class it does not have).
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The truth file.
        path: PathBuf,
        /// Dotted key path, e.g. `lines[1].min`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// One class or a list of them, summed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Classes {
    /// One class label.
    One(String),
    /// Several labels whose counts add up.
    Many(Vec<String>),
}

impl Classes {
    /// The labels.
    pub fn labels(&self) -> &[String] {
        match self {
            Classes::One(c) => std::slice::from_ref(c),
            Classes::Many(v) => v,
        }
    }
}

/// Which way across a line: onto its "in" side or off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Onto the line's `in` side.
    In,
    /// Off the line's `in` side.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Expected crossings of one line, direction and class set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineTruth {
    /// A line of the site config.
    pub name: String,
    /// The direction counted.
    pub direction: Direction,
    /// Classes summed; `None` for every counted class.
    #[serde(default)]
    pub class: Option<Classes>,
    /// Fewest crossings accepted.
    #[serde(default)]
    pub min: Option<u64>,
    /// Most crossings accepted.
    #[serde(default)]
    pub max: Option<u64>,
}

/// Bounds on the tracks created for a set of classes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracksTruth {
    /// Classes counted; `None` for every counted class.
    #[serde(default)]
    pub class: Option<Classes>,
    /// Most tracks accepted.
    #[serde(default)]
    pub max: Option<u64>,
    /// True objects of these classes in the recording.
    #[serde(default)]
    pub objects: Option<u64>,
    /// Most tracks per true object accepted (needs `objects`).
    #[serde(default)]
    pub max_per_object: Option<f64>,
}

/// Expected presence in one zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneTruth {
    /// A zone of the site config.
    pub name: String,
    /// Classes counted; `None` for every counted class.
    #[serde(default)]
    pub class: Option<Classes>,
    /// Free -> occupied transitions over the recording, exactly.
    #[serde(default)]
    pub occupied_periods: Option<u64>,
    /// Most objects in the zone at once.
    #[serde(default)]
    pub max_objects: Option<u64>,
}

/// A whole truth file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truth {
    /// The recording's frame rate, for recordings that do not carry one.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Line crossing expectations.
    #[serde(default)]
    pub lines: Vec<LineTruth>,
    /// Track count expectations.
    #[serde(default)]
    pub tracks: Vec<TracksTruth>,
    /// Zone presence expectations.
    #[serde(default)]
    pub zones: Vec<ZoneTruth>,
}

/// What a truth file is checked against: the names the site and the model define.
#[derive(Debug, Clone, Copy)]
pub struct SiteNames<'a> {
    /// Counting lines of the recording's camera.
    pub lines: &'a [String],
    /// Zones of the recording's camera.
    pub zones: &'a [String],
    /// Counted classes (`model.classes`).
    pub classes: &'a [String],
}

impl Truth {
    /// Reads and checks `path` against the site.
    pub fn load(path: &Path, site: SiteNames<'_>) -> Result<Truth, TruthError> {
        let text = std::fs::read_to_string(path).map_err(|source| TruthError::Read {
            path: path.into(),
            source,
        })?;
        let truth = Truth::parse(&text, path)?;
        truth
            .validate(site)
            .map_err(|(key, message)| TruthError::Invalid {
                path: path.into(),
                key,
                message,
            })?;
        Ok(truth)
    }

    /// Parses TOML text; `path` only names the file in errors. Does not validate.
    pub fn parse(text: &str, path: &Path) -> Result<Truth, TruthError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = match inner.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("{} (line {line})", inner.message().trim())
                }
                None => inner.message().trim().to_string(),
            };
            TruthError::Invalid {
                path: path.into(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            }
        })
    }

    /// Checks ranges and that every line, zone and class named exists in `site`; the error
    /// is `(key, message)`.
    pub fn validate(&self, site: SiteNames<'_>) -> Result<(), (String, String)> {
        if let Some(fps) = self.fps {
            if !(fps > 0.0 && fps <= 240.0) {
                return Err(("fps".into(), format!("{fps} is not in (0, 240]")));
            }
        }
        for (i, l) in self.lines.iter().enumerate() {
            let key = format!("lines[{i}]");
            known(&key, "name", &l.name, site.lines, "line")?;
            classes(&key, l.class.as_ref(), site.classes)?;
            match (l.min, l.max) {
                (None, None) => {
                    return Err((format!("{key}.min"), "give `min`, `max` or both".into()))
                }
                (Some(lo), Some(hi)) if lo > hi => {
                    return Err((format!("{key}.max"), format!("{hi} is below min {lo}")))
                }
                _ => {}
            }
        }
        for (i, t) in self.tracks.iter().enumerate() {
            let key = format!("tracks[{i}]");
            classes(&key, t.class.as_ref(), site.classes)?;
            if t.objects == Some(0) {
                return Err((format!("{key}.objects"), "must be at least 1".into()));
            }
            if let Some(r) = t.max_per_object {
                if t.objects.is_none() {
                    return Err((
                        format!("{key}.max_per_object"),
                        "needs `objects`, the true number of objects".into(),
                    ));
                }
                if !(r > 0.0 && r.is_finite()) {
                    return Err((format!("{key}.max_per_object"), "must be above 0".into()));
                }
            }
            if t.max.is_none() && t.max_per_object.is_none() {
                return Err((
                    format!("{key}.max"),
                    "give `max`, `max_per_object` or both".into(),
                ));
            }
        }
        for (i, z) in self.zones.iter().enumerate() {
            let key = format!("zones[{i}]");
            known(&key, "name", &z.name, site.zones, "zone")?;
            classes(&key, z.class.as_ref(), site.classes)?;
            if z.occupied_periods.is_none() && z.max_objects.is_none() {
                return Err((
                    format!("{key}.occupied_periods"),
                    "give `occupied_periods`, `max_objects` or both".into(),
                ));
            }
        }
        Ok(())
    }
}

fn known(
    key: &str,
    field: &str,
    name: &str,
    names: &[String],
    what: &str,
) -> Result<(), (String, String)> {
    if names.iter().any(|n| n == name) {
        return Ok(());
    }
    Err((
        format!("{key}.{field}"),
        format!(
            "the site has no {what} `{name}` on the recording's camera (it has: {})",
            list(names)
        ),
    ))
}

fn classes(key: &str, c: Option<&Classes>, counted: &[String]) -> Result<(), (String, String)> {
    let Some(c) = c else { return Ok(()) };
    if c.labels().is_empty() {
        return Err((
            format!("{key}.class"),
            "an empty list counts nothing".into(),
        ));
    }
    for (j, label) in c.labels().iter().enumerate() {
        if !counted.iter().any(|n| n == label) {
            let k = match c {
                Classes::One(_) => format!("{key}.class"),
                Classes::Many(_) => format!("{key}.class[{j}]"),
            };
            return Err((
                k,
                format!(
                    "`{label}` is not a counted class (model.classes: {})",
                    list(counted)
                ),
            ));
        }
        if c.labels()[..j].contains(label) {
            return Err((
                format!("{key}.class[{j}]"),
                format!("`{label}` is listed twice"),
            ));
        }
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Indexes into the counted classes of `c` (every class for `None`).
pub fn class_indexes(c: Option<&Classes>, counted: &[String]) -> Vec<usize> {
    match c {
        None => (0..counted.len()).collect(),
        Some(c) => c
            .labels()
            .iter()
            .filter_map(|l| counted.iter().position(|n| n == l))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn check(text: &str) -> Result<Truth, String> {
        let (lines, zones, classes) = (
            names(&["x50"]),
            names(&["table"]),
            names(&["person", "car", "truck"]),
        );
        let site = SiteNames {
            lines: &lines,
            zones: &zones,
            classes: &classes,
        };
        let truth = Truth::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())?;
        truth.validate(site).map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(truth)
    }

    #[test]
    fn a_full_file_parses() {
        let t = check(
            r#"
            fps = 10
            [[lines]]
            name = "x50"
            direction = "out"
            class = ["car", "truck"]
            min = 16
            max = 17
            [[lines]]
            name = "x50"
            direction = "in"
            max = 0
            [[tracks]]
            class = "person"
            max = 8
            objects = 6
            max_per_object = 1.3
            [[zones]]
            name = "table"
            occupied_periods = 6
            max_objects = 1
            "#,
        )
        .unwrap();
        assert_eq!(t.fps, Some(10.0));
        assert_eq!(t.lines[0].direction, Direction::Out);
        let counted = names(&["person", "car", "truck"]);
        assert_eq!(class_indexes(t.lines[0].class.as_ref(), &counted), [1, 2]);
        assert_eq!(
            class_indexes(t.lines[1].class.as_ref(), &counted),
            [0, 1, 2]
        );
        assert_eq!(class_indexes(t.tracks[0].class.as_ref(), &counted), [0]);
        assert_eq!(t.zones[0].occupied_periods, Some(6));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("speed = 3", "speed: unknown field `speed`"),
            (
                "[[lines]]\nname = \"x50\"\ndirection = \"in\"\nmin = 1\nmaxx = 2",
                "lines[0].maxx",
            ),
            (
                "[[lines]]\nname = \"x50\"\ndirection = \"up\"\nmin = 1",
                "lines[0].direction",
            ),
            (
                "[[lines]]\nname = \"x60\"\ndirection = \"in\"\nmin = 1",
                "lines[0].name: the site has no line `x60`",
            ),
            (
                "[[lines]]\nname = \"x50\"\ndirection = \"in\"\nmin = 3\nmax = 2",
                "lines[0].max: 2 is below min 3",
            ),
            (
                "[[lines]]\nname = \"x50\"\ndirection = \"in\"",
                "lines[0].min: give `min`",
            ),
            (
                "[[lines]]\nname = \"x50\"\ndirection = \"in\"\nmin = 1\nclass = [\"car\", \"bus\"]",
                "lines[0].class[1]: `bus` is not a counted class",
            ),
            (
                "[[tracks]]\nmax_per_object = 1.3",
                "tracks[0].max_per_object: needs `objects`",
            ),
            ("[[tracks]]\nobjects = 3", "tracks[0].max: give"),
            (
                "[[zones]]\nname = \"bench\"\nmax_objects = 1",
                "zones[0].name: the site has no zone `bench`",
            ),
            ("fps = 0", "fps: 0 is not in"),
        ];
        for (text, want) in cases {
            let e = check(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
