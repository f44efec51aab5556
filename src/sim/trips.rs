//! The figures of one run, from SUMO's `--tripinfo-output` (written with
//! `--tripinfo-output.write-unfinished`, so a vehicle still queued at the end counts with the
//! wait it had so far) and `--collision-output`.

use std::path::Path;

use super::net::attr;
use super::SimError;

/// What one run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Vehicles that entered the network (finished or not).
    pub vehicles: usize,
    /// Of those, still in the network at the end.
    pub unfinished: usize,
    /// Mean delay per vehicle: SUMO's `timeLoss` (time lost against driving at the desired
    /// speed), in seconds.
    pub mean_delay_s: f64,
    /// 95th percentile (nearest rank) of the time each vehicle stood still (`waitingTime`).
    pub p95_wait_s: f64,
    /// The longest time any vehicle stood still.
    pub max_wait_s: f64,
    /// Per approach edge (sorted by name): the longest time a vehicle from it stood still.
    pub max_wait_by_approach: Vec<(String, f64)>,
    /// Pedestrians that started walking.
    pub pedestrians: usize,
    /// Mean pedestrian wait: the walk's `timeLoss`, on free sidewalks almost all of it spent
    /// at the kerb of a crossing, in seconds.
    pub mean_ped_wait_s: f64,
    /// The longest pedestrian wait.
    pub max_ped_wait_s: f64,
    /// Collisions SUMO reported (vehicles and pedestrians, on lanes and in the junction).
    pub collisions: usize,
}

impl Figures {
    /// Reads a tripinfo file and a collision file.
    pub fn load(tripinfo: &Path, collisions: &Path) -> Result<Figures, SimError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| SimError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mut figures =
            Figures::parse(&read(tripinfo)?).map_err(|(line, message)| SimError::Output {
                path: tripinfo.to_owned(),
                line,
                message,
            })?;
        figures.collisions = read(collisions)?
            .lines()
            .filter(|l| l.trim_start().starts_with("<collision "))
            .count();
        Ok(figures)
    }

    /// Parses tripinfo text (one element per line, as SUMO writes it).
    pub fn parse(text: &str) -> Result<Figures, (usize, String)> {
        let mut delays = Vec::new();
        let mut waits = Vec::new();
        let mut by_approach: Vec<(String, f64)> = Vec::new();
        let mut ped_waits = Vec::new();
        let mut f = Figures::default();
        let mut new_person = false;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            let num = |name: &str| -> Result<f64, (usize, String)> {
                let v = attr(line, name).ok_or((n + 1, format!("no {name} in {line}")))?;
                v.parse()
                    .map_err(|_| (n + 1, format!("{name}={v:?} is not a number")))
            };
            if line.starts_with("<tripinfo ") {
                let lane =
                    attr(line, "departLane").ok_or((n + 1, format!("no departLane in {line}")))?;
                // `E_in_1` -> `E_in`: lane ids are the edge id and `_index`.
                let edge = lane.rsplit_once('_').map_or(lane, |(e, _)| e);
                let wait = num("waitingTime")?;
                delays.push(num("timeLoss")?);
                waits.push(wait);
                if num("arrival")? < 0.0 {
                    f.unfinished += 1;
                }
                match by_approach.iter_mut().find(|(e, _)| e == edge) {
                    Some((_, max)) => *max = max.max(wait),
                    None => by_approach.push((edge.to_owned(), wait)),
                }
            } else if line.starts_with("<personinfo ") {
                // Persons not yet departed at the end are listed too, without a walk.
                new_person = true;
            } else if line.starts_with("<walk ") {
                let loss = num("timeLoss")?;
                match ped_waits.last_mut() {
                    Some(w) if !new_person => *w += loss,
                    _ => ped_waits.push(loss),
                }
                new_person = false;
            }
        }
        f.pedestrians = ped_waits.len();
        by_approach.sort_by(|a, b| a.0.cmp(&b.0));
        f.vehicles = delays.len();
        f.mean_delay_s = mean(&delays);
        f.p95_wait_s = percentile(&mut waits, 0.95);
        f.max_wait_s = waits.iter().copied().fold(0.0, f64::max);
        f.max_wait_by_approach = by_approach;
        f.mean_ped_wait_s = mean(&ped_waits);
        f.max_ped_wait_s = ped_waits.iter().copied().fold(0.0, f64::max);
        Ok(f)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Nearest-rank percentile; 0 for no samples.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_tripinfo_lines() {
        let text = r#"<tripinfos>
    <tripinfo id="a" depart="1" departLane="E_in_1" arrival="30" waitingTime="10.00" timeLoss="12.00"/>
    <tripinfo id="b" depart="2" departLane="E_in_2" arrival="-1.00" waitingTime="40.00" timeLoss="44.00"/>
    <tripinfo id="c" depart="3" departLane="N_in_1" arrival="20" waitingTime="0.00" timeLoss="2.00"/>
    <personinfo id="p" depart="1" type="DEFAULT_PEDTYPE">
        <walk depart="1" arrival="90" duration="89" timeLoss="20.50"/>
    </personinfo>
    <personinfo id="q" depart="9000" type="DEFAULT_PEDTYPE"/>
</tripinfos>"#;
        let f = Figures::parse(text).unwrap();
        assert_eq!(f.vehicles, 3);
        assert_eq!(f.unfinished, 1);
        assert!((f.mean_delay_s - 58.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.p95_wait_s, 40.0);
        assert_eq!(
            f.max_wait_by_approach,
            vec![("E_in".to_string(), 40.0), ("N_in".to_string(), 0.0)]
        );
        assert_eq!(f.pedestrians, 1);
        assert_eq!(f.max_ped_wait_s, 20.5);
    }

    #[test]
    fn bad_number_names_the_line() {
        let text = "<tripinfo id=\"a\" departLane=\"E_in_1\" waitingTime=\"x\" timeLoss=\"1\"/>";
        let (line, message) = Figures::parse(text).unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("waitingTime"), "{message}");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.95), 19.0);
        assert_eq!(percentile(&mut [], 0.95), 0.0);
    }
}
