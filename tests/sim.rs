//! The closed-loop SUMO benchmark, short: edgewatch's signal system drives a real `sumo` over
//! TraCI on loopback for 900 simulated seconds, then SUMO's own actuated program runs the same
//! network and demand. Asserts safety (no conflicting greens, no monitor fault, no collision)
//! and that no approach waited longer than the cycle allows, and prints the figures.
//! `tools/sim/README.md` has the full hour.

mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgewatch::signal::GroupState;
use edgewatch::sim::closed_loop::LinkMap;
use edgewatch::sim::net::Junction;
use edgewatch::sim::traci::{Traci, TraciError};
use edgewatch::sim::{compare, sumo, Options, SimSite};

fn site_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/sim/site.toml")
}

fn site() -> SimSite {
    SimSite::load(&site_path()).expect("tools/sim/site.toml loads")
}

#[test]
fn short_run_is_safe_and_serves_every_approach_within_the_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        end_s: 900.0,
        seed: 42,
        out_dir: dir.path().to_owned(),
    };
    let cmp = compare(&site(), &opts).expect("benchmark runs (is the sumo package installed?)");
    let mut table = Vec::new();
    cmp.write_table(&mut table).unwrap();
    println!("{}", String::from_utf8_lossy(&table));

    assert_eq!(cmp.problems(), Vec::<String>::new(), "safety");
    assert_eq!(cmp.closed_loop.conflicts, 0);
    assert_eq!(cmp.edgewatch.collisions, 0);
    assert_eq!(cmp.over_cycle_bound(), Vec::new(), "starvation");
    // The loop really ran the junction: traffic and pedestrians moved, every group got green.
    assert_eq!(cmp.closed_loop.steps, 1800);
    let e = &cmp.edgewatch;
    assert!(e.vehicles > 300, "{} vehicles", e.vehicles);
    assert!(e.vehicles - e.unfinished > 250, "{e:?}");
    assert_eq!(e.max_wait_by_approach.len(), 4, "{e:?}");
    assert!(e.pedestrians > 20, "{} pedestrians", e.pedestrians);
    for (group, greens) in &cmp.closed_loop.greens {
        assert!(*greens >= 5, "{group} got {greens} greens or walks");
    }
    // Same demand for both controllers: the seeded departures match.
    assert_eq!(e.vehicles, cmp.actuated.vehicles);
    assert!(cmp.delay_ratio().is_finite() && cmp.delay_ratio() > 0.0);
}

/// The conflict check is independent of edgewatch's monitor: fed states by hand, it must
/// flag conflicting greens and pass what each phase shows.
#[test]
fn conflict_check_flags_conflicting_greens() {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net.xml");
    let sim = &site.sim;
    sumo::netconvert(&sim.nodes, &sim.edges, &sim.netconvert_args, &net).unwrap();
    let junction = Junction::load(&net, &sim.tls).unwrap();
    let links = LinkMap::new(&site, &junction).unwrap();
    // Groups in [signals] order: main, main-left, minor, walk-main, walk-minor.
    let show = |states: [GroupState; 5]| {
        let mut state = Vec::new();
        links.render(states.into_iter(), &mut state);
        String::from_utf8(state).unwrap()
    };
    use GroupState::{DontWalk, Green, Red, Walk};
    let main = show([Green, Red, Red, Walk, DontWalk]);
    let left = show([Red, Green, Red, DontWalk, DontWalk]);
    let minor = show([Red, Red, Green, DontWalk, Walk]);
    for state in [&main, &left, &minor] {
        assert_eq!(links.conflict(&junction, state.as_bytes()), None, "{state}");
    }
    // Right turns yield to the crossings beside them; protected lefts have priority.
    assert!(main.contains('g'), "{main}");
    assert_eq!(left.matches('G').count(), 2, "{left}");
    assert!(!left.contains('g'), "{left}");

    let both = show([Green, Red, Green, DontWalk, DontWalk]);
    assert!(
        links.conflict(&junction, both.as_bytes()).is_some(),
        "{both}"
    );
    let left_with_main = show([Green, Green, Red, DontWalk, DontWalk]);
    assert!(links
        .conflict(&junction, left_with_main.as_bytes())
        .is_some());
    let walk_across_green = show([Green, Red, Red, DontWalk, Walk]);
    let found = links
        .conflict(&junction, walk_across_green.as_bytes())
        .expect("conflict");
    assert!(found.contains("links"), "{found}");
}

#[test]
fn site_that_leaves_a_link_unmapped_is_refused() {
    let text = std::fs::read_to_string(site_path()).unwrap();
    let text = text.replace(
        r#"approaches = ["N_in", "S_in"]"#,
        r#"approaches = ["N_in"]"#,
    );
    let mut site = SimSite::parse(&text, Path::new("bad.toml")).unwrap();
    let dir = site_path().parent().unwrap().to_owned();
    site.sim.nodes = dir.join(&site.sim.nodes);
    site.sim.edges = dir.join(&site.sim.edges);
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net.xml");
    sumo::netconvert(
        &site.sim.nodes,
        &site.sim.edges,
        &site.sim.netconvert_args,
        &net,
    )
    .unwrap();
    let junction = Junction::load(&net, &site.sim.tls).unwrap();
    let err = LinkMap::new(&site, &junction).unwrap_err().to_string();
    assert!(err.contains("S_in") && err.contains("exactly one"), "{err}");
}

#[test]
fn demand_on_an_unknown_zone_is_a_config_error() {
    let text = std::fs::read_to_string(site_path()).unwrap();
    let text = text.replace(r#"zone = "east-approach""#, r#"zone = "east""#);
    let err = SimSite::parse(&text, Path::new("bad.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("east"), "{err}");
}

#[test]
fn no_sumo_listening_is_a_typed_error() {
    // Bind, then drop: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Traci::connect(addr, Duration::from_millis(200), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, TraciError::Connect { .. }), "{err}");
}

#[test]
fn cli_prints_both_controllers_and_refuses_bad_input() {
    let site = site_path();
    let site = site.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = util::edgewatch(&["sim", "--site", site, "--end", "120", "--out", out_dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sumo-actuated"), "{stdout}");
    assert!(
        stdout.contains("edgewatch / actuated mean delay"),
        "{stdout}"
    );
    assert!(dir.path().join("edgewatch-tripinfo.xml").exists());

    let out = util::edgewatch(&["sim", "--site", site, "--end", "0", "--out", out_dir]);
    assert_eq!(out.status.code(), Some(2));
    let out = util::edgewatch(&["sim", "--site", "/nonexistent/site.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/site.toml"), "{stderr}");
}
