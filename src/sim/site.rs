//! The benchmark's site file: edgewatch's own `[signals]` section, plus a `[sim]` section that
//! says which SUMO files make the junction, which detectors stand in for which camera zones,
//! and which traffic-light links each signal group drives.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;
use crate::signal::SignalConfig;

/// The whole site file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSite {
    /// The SUMO side.
    pub sim: SimConfig,
    /// edgewatch's signals, exactly as in a real site file.
    pub signals: SignalConfig,
}

/// The `[sim]` section. Paths are relative to the site file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// netconvert node file.
    pub nodes: PathBuf,
    /// netconvert edge file.
    pub edges: PathBuf,
    /// Further netconvert options; they also shape SUMO's own actuated program (`--tls.*`).
    #[serde(default)]
    pub netconvert_args: Vec<String>,
    /// Route file with the demand.
    pub routes: PathBuf,
    /// Additional files (the lane-area detectors that stand in for camera zones).
    #[serde(default)]
    pub additional: Vec<PathBuf>,
    /// The traffic light (and junction) id.
    pub tls: String,
    /// Simulation step, which is also edgewatch's tick (0.1 to 1 s).
    pub step_s: f64,
    /// Camera zones, each fed by SUMO detectors.
    pub zones: Vec<SimZone>,
    /// Which traffic-light links each edgewatch signal group drives.
    pub groups: Vec<SimGroup>,
}

/// One camera zone stand-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimZone {
    /// The zone name the `[signals]` demand refers to.
    pub name: String,
    /// Lane-area detectors whose vehicle counts add up to the zone's `car` count.
    #[serde(default)]
    pub laneareas: Vec<String>,
    /// Road edges whose crossings' kerbs this zone watches: persons on the walking areas at
    /// either end, about to step onto the crossing, count as `person`.
    #[serde(default)]
    pub kerbs_of: Vec<String>,
}

/// One signal group's links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimGroup {
    /// The `[[signals.groups]]` name.
    pub name: String,
    /// Approach edges: every vehicle link from them (of the given `turns`).
    #[serde(default)]
    pub approaches: Vec<String>,
    /// Only links turning these ways (SUMO's direction codes: `s` through, `l` left, `r`
    /// right); empty for all.
    #[serde(default)]
    pub turns: Vec<String>,
    /// Road edges whose crossings this (pedestrian) group controls.
    #[serde(default)]
    pub crossings_over: Vec<String>,
}

/// Classes the benchmark counts, in class-index order.
pub const CLASSES: [&str; 2] = ["car", "person"];
/// Index of `car` in [`CLASSES`].
pub const CAR: usize = 0;
/// Index of `person` in [`CLASSES`].
pub const PERSON: usize = 1;

impl SimSite {
    /// Reads and checks a site file; relative paths in `[sim]` become relative to its folder.
    pub fn load(path: &Path) -> Result<SimSite, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut site = SimSite::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let sim = &mut site.sim;
        for p in [&mut sim.nodes, &mut sim.edges, &mut sim.routes]
            .into_iter()
            .chain(sim.additional.iter_mut())
        {
            *p = dir.join(&*p);
        }
        Ok(site)
    }

    /// Parses and checks site text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SimSite, ConfigError> {
        let de = toml::Deserializer::new(text);
        let site: SimSite = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Syntax {
                path: path.to_owned(),
                key,
                message: e.into_inner().message().to_owned(),
            }
        })?;
        site.check()?;
        Ok(site)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let sim = &self.sim;
        if !(0.1..=1.0).contains(&sim.step_s) {
            return Err(ConfigError::invalid(
                "sim.step_s",
                format!("{} is out of range 0.1..=1", sim.step_s),
            ));
        }
        if sim.zones.is_empty() || sim.zones.len() > crate::config::MAX_ZONES {
            return Err(ConfigError::invalid(
                "sim.zones",
                format!("1 to {} zones", crate::config::MAX_ZONES),
            ));
        }
        for (i, z) in sim.zones.iter().enumerate() {
            if z.laneareas.is_empty() == z.kerbs_of.is_empty() {
                return Err(ConfigError::invalid(
                    format!("sim.zones[{i}]"),
                    "give either laneareas or kerbs_of",
                ));
            }
        }
        for (i, g) in sim.groups.iter().enumerate() {
            if !self.signals.groups.iter().any(|s| s.name == g.name) {
                return Err(ConfigError::invalid(
                    format!("sim.groups[{i}].name"),
                    format!("no signal group {:?} in [signals]", g.name),
                ));
            }
        }
        // SignalPlan::new checks the zone and class names the demand refers to.
        crate::signal::SignalPlan::new(&self.signals, &self.zone_names(), &CLASSES)?;
        Ok(())
    }

    /// The zone names in zone-index order.
    pub fn zone_names(&self) -> Vec<&str> {
        self.sim.zones.iter().map(|z| z.name.as_str()).collect()
    }
}
