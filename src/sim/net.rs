//! What the benchmark needs from a SUMO network: the traffic light's links (which approach or
//! crossing each one serves, and its turn) and the junction's foe matrix, read from the
//! `.net.xml` that `netconvert` writes (one element per line, attributes in double quotes).

use std::path::{Path, PathBuf};

/// Why a network could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The network file.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// The file lacks something the benchmark needs, or has it in an unexpected form.
    #[error("{path}:{line}: {message}")]
    Bad {
        /// The network file.
        path: PathBuf,
        /// 1-based line number (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// What one link of the traffic light serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// Vehicles from an approach edge, turning `dir` (`s`, `l`, `r`, ...).
    Vehicle {
        /// The incoming edge.
        from: String,
        /// SUMO's direction code.
        dir: char,
    },
    /// Pedestrians on a crossing over the given edges.
    Crossing {
        /// The crossing's internal edge id (`:C_c0`).
        id: String,
        /// The road edges it crosses (`crossingEdges`).
        over: Vec<String>,
    },
}

/// One junction controlled by one traffic light.
#[derive(Debug, Clone)]
pub struct Junction {
    /// Link `i` of the traffic light's state string.
    pub links: Vec<LinkKind>,
    /// `foes[i][j]`: links `i` and `j` cross or merge.
    pub foes: Vec<Vec<bool>>,
    /// Per crossing id: the walking areas at either end.
    pub walking_areas: Vec<(String, Vec<String>)>,
}

impl Junction {
    /// Reads traffic light `tls` (also the junction id, as netconvert names them) from `path`.
    pub fn load(path: &Path, tls: &str) -> Result<Junction, NetError> {
        let text = std::fs::read_to_string(path).map_err(|source| NetError::Read {
            path: path.to_owned(),
            source,
        })?;
        Junction::parse(&text, tls).map_err(|(line, message)| NetError::Bad {
            path: path.to_owned(),
            line,
            message,
        })
    }

    /// Parses network text; errors carry a 1-based line number.
    pub fn parse(text: &str, tls: &str) -> Result<Junction, (usize, String)> {
        let mut crossings: Vec<(String, Vec<String>)> = Vec::new();
        let mut links: Vec<Option<LinkKind>> = Vec::new();
        let mut requests: Vec<(usize, String)> = Vec::new();
        let mut walking: Vec<(String, String)> = Vec::new();
        let mut in_junction = false;
        let junction_open = format!("<junction id=\"{tls}\"");
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.trim();
            let bad = |m: String| (n, m);
            if line.starts_with("<edge ") && attr(line, "function") == Some("crossing") {
                let id = need(line, "id").map_err(bad)?;
                let over = need(line, "crossingEdges").map_err(bad)?;
                crossings.push((id.into(), over.split(' ').map(String::from).collect()));
            } else if line.starts_with("<junction ") {
                in_junction = line.starts_with(&junction_open);
            } else if in_junction && line.starts_with("<request ") {
                let index = need(line, "index").map_err(bad)?;
                let index = index
                    .parse()
                    .map_err(|_| bad(format!("request index {index:?}")))?;
                requests.push((index, need(line, "foes").map_err(bad)?.into()));
            } else if line.starts_with("<connection ") {
                let from = need(line, "from").map_err(bad)?;
                let to = need(line, "to").map_err(bad)?;
                // Walking areas lead onto a crossing and off it at the far side.
                let is_crossing = |e: &str| crossings.iter().any(|(c, _)| c == e);
                if is_crossing(to) && from.starts_with(':') {
                    walking.push((to.into(), from.into()));
                } else if is_crossing(from) && to.starts_with(':') {
                    walking.push((from.into(), to.into()));
                }
                if attr(line, "tl") != Some(tls) {
                    continue;
                }
                let index = need(line, "linkIndex").map_err(bad)?;
                let index: usize = index
                    .parse()
                    .map_err(|_| bad(format!("linkIndex {index:?}")))?;
                if index >= 1024 {
                    return Err(bad(format!("linkIndex {index} (at most 1023 supported)")));
                }
                let kind = if to.starts_with(':') {
                    LinkKind::Crossing {
                        id: to.into(),
                        over: Vec::new(),
                    }
                } else {
                    let dir = need(line, "dir").map_err(bad)?;
                    LinkKind::Vehicle {
                        from: from.into(),
                        dir: dir.chars().next().unwrap_or('s'),
                    }
                };
                if links.len() <= index {
                    links.resize(index + 1, None);
                }
                links[index] = Some(kind);
            }
        }
        let links = finish_links(links, &crossings)?;
        let foes = foe_matrix(links.len(), &requests)?;
        let walking_areas = crossings
            .iter()
            .map(|(id, _)| {
                let mut areas: Vec<String> = walking
                    .iter()
                    .filter(|(c, _)| c == id)
                    .map(|(_, w)| w.clone())
                    .collect();
                areas.sort();
                areas.dedup();
                (id.clone(), areas)
            })
            .collect();
        Ok(Junction {
            links,
            foes,
            walking_areas,
        })
    }
}

/// Every index up to the highest must be used; crossings get the edges they cross.
fn finish_links(
    links: Vec<Option<LinkKind>>,
    crossings: &[(String, Vec<String>)],
) -> Result<Vec<LinkKind>, (usize, String)> {
    if links.is_empty() {
        return Err((
            0,
            "no connection is controlled by this traffic light".into(),
        ));
    }
    links
        .into_iter()
        .enumerate()
        .map(|(i, link)| match link {
            None => Err((0, format!("no connection has linkIndex {i}"))),
            Some(LinkKind::Crossing { id, .. }) => {
                let over = crossings
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, over)| over.clone())
                    .ok_or((0, format!("link {i} leads to {id}, which is no crossing")))?;
                Ok(LinkKind::Crossing { id, over })
            }
            Some(vehicle) => Ok(vehicle),
        })
        .collect()
}

/// `foes` strings list the highest link first: character `n - 1 - j` is link `j`.
fn foe_matrix(n: usize, requests: &[(usize, String)]) -> Result<Vec<Vec<bool>>, (usize, String)> {
    let mut foes = vec![vec![false; n]; n];
    if requests.len() != n {
        return Err((
            0,
            format!("the junction has {} requests for {n} links", requests.len()),
        ));
    }
    for (i, bits) in requests {
        if *i >= n || bits.len() != n {
            return Err((0, format!("request {i}: foes {bits:?} for {n} links")));
        }
        for (k, c) in bits.bytes().enumerate() {
            let j = n - 1 - k;
            if c == b'1' {
                foes[*i][j] = true;
                foes[j][*i] = true;
            }
        }
    }
    Ok(foes)
}

/// The value of attribute `name` in one XML element line, if present.
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = line;
    loop {
        let at = rest.find(name)?;
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        if before.is_some_and(char::is_whitespace) {
            if let Some(value) = after.strip_prefix("=\"") {
                return value.find('"').map(|end| &value[..end]);
            }
        }
        rest = after;
    }
}

fn need<'a>(line: &'a str, name: &str) -> Result<&'a str, String> {
    attr(line, name).ok_or_else(|| format!("no {name}=\"...\" in {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_matches_whole_names_only() {
        let line = r#"<tripinfo id="a" depart="3.00" departLane="E_in_1" timeLoss="1.5"/>"#;
        assert_eq!(attr(line, "depart"), Some("3.00"));
        assert_eq!(attr(line, "departLane"), Some("E_in_1"));
        assert_eq!(attr(line, "Loss"), None);
        assert_eq!(attr(line, "arrival"), None);
    }

    #[test]
    fn missing_link_index_is_named() {
        let net = r#"<junction id="C" type="traffic_light">
<request index="0" response="00" foes="00" cont="0"/>
<request index="1" response="00" foes="00" cont="0"/>
<connection from="A" to="B" fromLane="0" toLane="0" tl="C" linkIndex="1" dir="s" state="o"/>
"#;
        let (_, message) = Junction::parse(net, "C").unwrap_err();
        assert!(message.contains("linkIndex 0"), "{message}");
    }

    #[test]
    fn foes_are_read_highest_link_first() {
        let net = r#"<junction id="C" type="traffic_light">
<request index="0" response="00" foes="10" cont="0"/>
<request index="1" response="00" foes="01" cont="0"/>
<connection from="A" to="B" tl="C" linkIndex="0" dir="s"/>
<connection from="D" to="B" tl="C" linkIndex="1" dir="l"/>
"#;
        let j = Junction::parse(net, "C").unwrap();
        assert!(j.foes[0][1] && j.foes[1][0]);
        assert!(!j.foes[0][0]);
        assert_eq!(
            j.links[1],
            LinkKind::Vehicle {
                from: "D".into(),
                dir: 'l'
            }
        );
    }
}
