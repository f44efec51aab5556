//! edgewatch's real signal system driving SUMO: every step, SUMO's detector counts go in as
//! zone occupancy (the input the camera zones feed), the system ticks on a manual clock, and
//! what its groups show goes back to SUMO as the traffic light's link states. Every state
//! sent is checked for conflicting greens against the junction's own foe matrix and the
//! groups' declared conflicts, independently of edgewatch's conflict monitor.

use std::time::Duration;

use super::net::{Junction, LinkKind};
use super::site::{SimSite, CAR, CLASSES, PERSON};
use super::sumo::Sumo;
use super::traci::{self, Batch, Traci, Value};
use super::SimError;
use crate::clock::ManualClock;
use crate::config::MAX_CLASSES;
use crate::signal::{GroupState, SimPins, SimSignalSystem};

/// Conflict descriptions kept; the rest are only counted.
const KEEP_CONFLICTS: usize = 8;

/// What the closed loop saw, besides SUMO's trip figures.
#[derive(Debug, Clone, Default)]
pub struct LoopReport {
    /// Steps run.
    pub steps: u64,
    /// States sent with conflicting greens.
    pub conflicts: u64,
    /// The first few of them.
    pub conflict_examples: Vec<String>,
    /// Faults edgewatch's own monitor latched (it must never need to).
    pub monitor_faults: u64,
    /// Walks shown (rising edges of any pedestrian group's walk).
    pub walks: u64,
    /// Green starts of each signal group, by name.
    pub greens: Vec<(String, u64)>,
}

/// How each traffic-light link follows the signal groups.
#[derive(Debug, Clone)]
pub struct LinkMap {
    /// Per link: the index of its signal group (in `[signals]` order).
    pub group: Vec<usize>,
    /// Per link: the character it shows while its group is green or walks (`G` for through
    /// movements and crossings, `g` for turns that yield).
    pub green: Vec<u8>,
    /// Per pair of signal groups: they may not show a right of way together.
    pub conflicting: Vec<Vec<bool>>,
}

impl LinkMap {
    /// Maps every link of `junction` to exactly one group of `site`.
    pub fn new(site: &SimSite, junction: &Junction) -> Result<LinkMap, SimError> {
        let names: Vec<&str> = site
            .signals
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        let mut group = Vec::with_capacity(junction.links.len());
        let mut green = Vec::with_capacity(junction.links.len());
        for (i, link) in junction.links.iter().enumerate() {
            let serves = |g: &&super::site::SimGroup| match link {
                LinkKind::Vehicle { from, dir } => {
                    g.approaches.contains(from)
                        && (g.turns.is_empty() || g.turns.iter().any(|t| t.starts_with(*dir)))
                }
                LinkKind::Crossing { over, .. } => {
                    g.crossings_over.iter().any(|e| over.contains(e))
                }
            };
            let mut owners = site.sim.groups.iter().filter(serves);
            let (Some(owner), None) = (owners.next(), owners.next()) else {
                return Err(SimError::Site(format!(
                    "traffic light link {i} ({link:?}) must belong to exactly one of sim.groups"
                )));
            };
            let g = names.iter().position(|n| *n == owner.name).ok_or_else(|| {
                SimError::Site(format!("sim group {:?} is not in [signals]", owner.name))
            })?;
            group.push(g);
        }
        let allowed = |a: &str, b: &str| {
            a == b
                || site
                    .signals
                    .permissive
                    .iter()
                    .any(|[x, y]| (x == a && y == b) || (x == b && y == a))
        };
        let conflicting: Vec<Vec<bool>> = names
            .iter()
            .map(|a| names.iter().map(|b| !allowed(a, b)).collect())
            .collect();
        // Through movements and crossings have priority; a turn yields (`g`) when a foe may be
        // green at the same time (an opposing through, a crossing), else it is protected.
        for (i, link) in junction.links.iter().enumerate() {
            let shares_green = (0..junction.links.len())
                .any(|j| junction.foes[i][j] && !conflicting[group[i]][group[j]]);
            green.push(match link {
                LinkKind::Vehicle { dir: 's', .. } | LinkKind::Crossing { .. } => b'G',
                LinkKind::Vehicle { .. } if shares_green => b'g',
                LinkKind::Vehicle { .. } => b'G',
            });
        }
        Ok(LinkMap {
            group,
            green,
            conflicting,
        })
    }

    /// Writes the link states for what the groups show into `state`.
    pub fn render(&self, groups: impl Iterator<Item = GroupState>, state: &mut Vec<u8>) {
        let mut shown = [GroupState::Dark; crate::signal::MAX_GROUPS];
        for (g, s) in groups.enumerate().take(shown.len()) {
            shown[g] = s;
        }
        state.clear();
        state.extend(self.group.iter().zip(&self.green).map(|(&g, &green)| {
            match shown[g] {
                GroupState::Green | GroupState::Walk | GroupState::BusGo => green,
                GroupState::Amber => b'y',
                GroupState::AmberFlash => b'o',
                // Red, red flash (all-way stop), don't walk, flashing don't walk (no one may
                // start), dark and anything else: stop.
                _ => b'r',
            }
        }));
    }

    /// The first conflict in `state`, if any: two green links that are foes in the junction
    /// and both have priority (`G`), or that belong to conflicting groups.
    pub fn conflict(&self, junction: &Junction, state: &[u8]) -> Option<String> {
        let green = |c: u8| c == b'G' || c == b'g';
        for i in 0..state.len() {
            for j in i + 1..state.len() {
                if !green(state[i]) || !green(state[j]) {
                    continue;
                }
                if junction.foes[i][j] && state[i] == b'G' && state[j] == b'G' {
                    return Some(format!("links {i} and {j} cross and both have priority"));
                }
                if self.conflicting[self.group[i]][self.group[j]] {
                    return Some(format!(
                        "links {i} and {j} are green for conflicting groups {} and {}",
                        self.group[i], self.group[j]
                    ));
                }
            }
        }
        None
    }
}

/// Per zone: where its counts come from.
#[derive(Debug, Clone)]
struct ZoneFeed {
    /// Indices into the lane-area detector list.
    detectors: Vec<usize>,
    /// Indices into the walking-area list, and the crossings its persons must be heading for.
    kerbs: Vec<usize>,
    crossings: Vec<String>,
}

/// The detectors and walking areas read every step, and which zone each feeds.
#[derive(Debug, Clone)]
struct Feeds {
    detectors: Vec<String>,
    walking_areas: Vec<String>,
    zones: Vec<ZoneFeed>,
}

impl Feeds {
    fn new(site: &SimSite, junction: &Junction) -> Result<Feeds, SimError> {
        let mut feeds = Feeds {
            detectors: Vec::new(),
            walking_areas: Vec::new(),
            zones: Vec::new(),
        };
        for zone in &site.sim.zones {
            let mut feed = ZoneFeed {
                detectors: Vec::new(),
                kerbs: Vec::new(),
                crossings: Vec::new(),
            };
            for d in &zone.laneareas {
                feed.detectors.push(index_of(&mut feeds.detectors, d));
            }
            for edge in &zone.kerbs_of {
                let crossing = junction.links.iter().find_map(|l| match l {
                    LinkKind::Crossing { id, over } if over.contains(edge) => Some(id),
                    _ => None,
                });
                let Some(crossing) = crossing else {
                    return Err(SimError::Site(format!(
                        "zone {:?}: no signalled crossing over {edge:?}",
                        zone.name
                    )));
                };
                feed.crossings.push(crossing.clone());
                let areas = junction.walking_areas.iter().find(|(c, _)| c == crossing);
                for area in areas.map(|(_, a)| a.as_slice()).unwrap_or_default() {
                    let k = index_of(&mut feeds.walking_areas, area);
                    if !feed.kerbs.contains(&k) {
                        feed.kerbs.push(k);
                    }
                }
            }
            feeds.zones.push(feed);
        }
        Ok(feeds)
    }
}

fn index_of(list: &mut Vec<String>, item: &str) -> usize {
    match list.iter().position(|x| x == item) {
        Some(i) => i,
        None => {
            list.push(item.to_owned());
            list.len() - 1
        }
    }
}

/// Runs edgewatch against the SUMO instance `sumo` for `steps` steps.
pub fn run(
    site: &SimSite,
    junction: &Junction,
    sumo: &Sumo,
    steps: u64,
) -> Result<(Traci, LoopReport), SimError> {
    let links = LinkMap::new(site, junction)?;
    let feeds = Feeds::new(site, junction)?;
    let clock = ManualClock::new();
    // The lamp log is not read: keep it small (it drops and counts the rest).
    let mut pins = SimPins::new(clock.clone(), 16);
    let mut signals = SimSignalSystem::new(
        &site.signals,
        &site.zone_names(),
        &CLASSES,
        clock.clone(),
        &mut pins,
    )?;
    let mut traci = Traci::connect(sumo.addr, Duration::from_secs(20), Duration::from_secs(60))?;
    let tick = Duration::from_secs_f64(site.sim.step_s);
    let tls = site.sim.tls.as_str();
    let mut report = LoopReport {
        greens: site
            .signals
            .groups
            .iter()
            .map(|g| (g.name.clone(), 0))
            .collect(),
        ..LoopReport::default()
    };
    let mut occupancy = vec![[0u32; MAX_CLASSES]; feeds.zones.len()];
    let mut batch = Batch::default();
    let mut values = Vec::new();
    let mut persons: Vec<(usize, String)> = Vec::new();
    let (mut person_batch, mut next_edges) = (Batch::default(), Vec::new());
    let mut state = Vec::new();
    let mut last = vec![GroupState::Dark; site.signals.groups.len()];
    links.render(signals.states().map(|(_, s)| s), &mut state);
    for _ in 0..steps {
        batch.clear();
        batch.set_tl_state(tls, as_str(&state));
        batch.step();
        traci.send(&batch, &mut values)?;
        batch.clear();
        for d in &feeds.detectors {
            batch.get(traci::GET_LANEAREA, traci::LAST_STEP_VEHICLE_NUMBER, d);
        }
        for w in &feeds.walking_areas {
            batch.get(traci::GET_EDGE, traci::LAST_STEP_PERSON_ID_LIST, w);
        }
        traci.send(&batch, &mut values)?;
        let (counts, lists) = values.split_at(feeds.detectors.len());
        for row in occupancy.iter_mut() {
            *row = [0; MAX_CLASSES];
        }
        for (zone, feed) in feeds.zones.iter().enumerate() {
            for &d in &feed.detectors {
                let n = counts[d].int("lane-area vehicle count")?;
                occupancy[zone][CAR] += u32::try_from(n).unwrap_or(0);
            }
        }
        let scratch = (&mut person_batch, &mut next_edges);
        count_persons(
            &mut traci,
            &feeds,
            lists,
            &mut persons,
            scratch,
            &mut occupancy,
        )?;
        clock.advance(tick);
        let tick_report = signals.tick(&occupancy, true);
        if tick_report.new_fault.is_some() {
            report.monitor_faults += 1;
        }
        report.steps += 1;
        for (g, (_, s)) in signals.states().enumerate() {
            if s != last[g] && matches!(s, GroupState::Green | GroupState::Walk) {
                report.greens[g].1 += 1;
                if s == GroupState::Walk {
                    report.walks += 1;
                }
            }
            last[g] = s;
        }
        links.render(signals.states().map(|(_, s)| s), &mut state);
        if let Some(c) = links.conflict(junction, &state) {
            report.conflicts += 1;
            if report.conflict_examples.len() < KEEP_CONFLICTS {
                let t = clock_secs(&clock);
                report
                    .conflict_examples
                    .push(format!("{t:.1} s: {} ({c})", as_str(&state)));
            }
        }
    }
    Ok((traci, report))
}

/// Counts persons on each kerb heading onto the zone's crossing (a second round trip, only
/// when anyone is on a kerb).
fn count_persons(
    traci: &mut Traci,
    feeds: &Feeds,
    lists: &[Value],
    persons: &mut Vec<(usize, String)>,
    scratch: (&mut Batch, &mut Vec<Value>),
    occupancy: &mut [[u32; MAX_CLASSES]],
) -> Result<(), SimError> {
    persons.clear();
    for (w, list) in lists.iter().enumerate() {
        match list {
            Value::List(ids) => persons.extend(ids.iter().map(|id| (w, id.clone()))),
            other => {
                return Err(SimError::Traci(traci::TraciError::Malformed(format!(
                    "person list of {}: {other:?}",
                    feeds.walking_areas[w]
                ))))
            }
        }
    }
    if persons.is_empty() {
        return Ok(());
    }
    let (batch, next) = scratch;
    batch.clear();
    for (_, id) in persons.iter() {
        batch.get(traci::GET_PERSON, traci::VAR_NEXT_EDGE, id);
    }
    traci.send(batch, next)?;
    for ((w, _), next) in persons.iter().zip(next.iter()) {
        let Value::Str(next) = next else { continue };
        for (zone, feed) in feeds.zones.iter().enumerate() {
            if feed.kerbs.contains(w) && feed.crossings.iter().any(|c| c == next) {
                occupancy[zone][PERSON] += 1;
            }
        }
    }
    Ok(())
}

fn as_str(state: &[u8]) -> &str {
    // Only ASCII link characters are ever written.
    std::str::from_utf8(state).unwrap_or("")
}

fn clock_secs(clock: &ManualClock) -> f64 {
    use crate::clock::Clock;
    clock.now().as_secs_f64()
}
