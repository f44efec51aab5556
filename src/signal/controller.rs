//! The signal controller: a pure state machine stepped with the clock time and the scene counts.
//! It decides which phase is green and for how long; it does not check itself (that is the
//! [`super::ConflictMonitor`]'s job) and it never touches pins.
//!
//! Every interval is timed from the tick at which it began, and at most one interval ends per
//! tick, so every interval lasts at least its configured time and at most one tick longer,
//! whatever the tick rate. Nothing here allocates after [`Controller::new`].

use std::time::Duration;

use super::lamp::{LampState, SignalCommand, AMBER, BEACON, DONT_WALK, GO, GREEN, RED, STOP, WALK};
use super::plan::{
    ControlMode, FlashColor, GroupKind, SignalPlan, TimePlan, MAX_GROUPS, MAX_PHASES,
};
use crate::config::MAX_CLASSES;

/// What the controller sees at one tick.
#[derive(Debug, Clone, Copy)]
pub struct Detections<'a> {
    /// Objects currently in each zone, per counted class (zone index order).
    pub zone_occupancy: &'a [[u32; MAX_CLASSES]],
    /// False when the camera is stale, frozen or dark: detections are not to be trusted.
    pub camera_ok: bool,
    /// Debounced input pins, bit `i` for input `i` (active = 1).
    pub inputs: u32,
}

/// Where the controller is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Power-up (or restart, or reset) flash: vehicle heads flash red, the others are dark.
    StartupFlash,
    /// The all-red after the start-up flash (and where a clearance comes to rest).
    Startup,
    /// The phase's bus groups show B before its other groups go green.
    HeadStart(usize),
    /// The phase is green.
    Green(usize),
    /// The phase's vehicle heads show amber.
    Amber(usize),
    /// All red after the phase's amber.
    AllRed(usize),
    /// Maintenance red/amber flash, on command.
    MaintenanceFlash,
    /// Leaving maintenance flash: amber-flashing heads show steady amber before the all-red.
    FlashExit,
}

impl Stage {
    /// A short name for summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::StartupFlash => "startup-flash",
            Stage::Startup => "startup",
            Stage::HeadStart(_) => "bus-head-start",
            Stage::Green(_) => "green",
            Stage::Amber(_) => "amber",
            Stage::AllRed(_) => "all-red",
            Stage::MaintenanceFlash => "maintenance-flash",
            Stage::FlashExit => "flash-exit",
        }
    }

    /// The phase the stage belongs to, if any.
    pub fn phase(self) -> Option<usize> {
        match self {
            Stage::HeadStart(p) | Stage::Green(p) | Stage::Amber(p) | Stage::AllRed(p) => Some(p),
            _ => None,
        }
    }
}

/// Timers of the green in progress.
#[derive(Debug, Clone, Copy, Default)]
struct GreenTimers {
    start: Duration,
    /// Last tick with vehicle demand on the phase (the gap timer runs from here).
    last_detection: Duration,
    /// When the first conflicting call arrived; the max green runs from here.
    max_start: Option<Duration>,
    /// The pedestrian interval in progress.
    ped: PedInterval,
    /// Bus priority extension deadline.
    extension_until: Option<Duration>,
}

/// The pedestrian intervals within a green, each timed from the tick it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PedInterval {
    /// No walk this green (or it is over): steady don't walk.
    #[default]
    Idle,
    /// Walk since the given time.
    Walk(Duration),
    /// Flashing don't walk since the given time.
    Clearance(Duration),
}

/// Bus priority for one phase: granted at most once per cycle of that phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Priority {
    /// May be granted.
    #[default]
    Free,
    /// Early green granted; the phase has not been served yet.
    Granted,
    /// Used this cycle; free again when another phase goes green.
    Served,
}

/// The detector diagnostics of one kind of camera demand (vehicle or pedestrian), per phase.
#[derive(Debug, Clone, Copy)]
struct Diagnostics {
    /// When the phase's zones last saw demand (the no-activity timer runs from here).
    last_seen: [Duration; MAX_PHASES],
    /// Since when the zones have shown demand on every tick, while they do (the max-presence
    /// timer).
    present_since: [Option<Duration>; MAX_PHASES],
    /// Phases failed by no activity (`no_activity_s`): recalled.
    inactive: u16,
    /// Phases failed by max presence (`max_presence_s`): recalled.
    stuck: u16,
}

impl Diagnostics {
    fn new(now: Duration) -> Diagnostics {
        Diagnostics {
            last_seen: [now; MAX_PHASES],
            present_since: [None; MAX_PHASES],
            inactive: 0,
            stuck: 0,
        }
    }

    /// Phases on recall for either diagnostic.
    fn failed(&self) -> u16 {
        self.inactive | self.stuck
    }
}

/// Demand sampled at one tick, as phase bit masks.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    vehicle: u16,
    ped: u16,
    bus: u16,
}

/// The signal controller state machine; see the module docs.
#[derive(Debug, Clone)]
pub struct Controller {
    plan: SignalPlan,
    stage: Stage,
    /// When the current stage began.
    since: Duration,
    green: GreenTimers,
    /// Latched phase calls (bit per phase).
    calls: u16,
    /// Latched walk calls (bit per phase).
    ped_calls: u16,
    priority: [Priority; MAX_PHASES],
    maintenance: bool,
    /// Clearing to all red for good (a watchdog breach or a stop): see
    /// [`Controller::request_clearance`].
    clearing: bool,
    degraded: bool,
    good_since: Option<Duration>,
    incidents: u32,
    priority_grants: u32,
    /// The detector diagnostics of vehicle demand, then of pedestrian demand.
    diag: [Diagnostics; 2],
    /// (seconds after midnight, clock time) when the time of day was last set.
    time_of_day: Option<(u32, Duration)>,
    beacon_until: [Option<Duration>; MAX_GROUPS],
    flash_exit_amber: Duration,
    command: SignalCommand,
}

impl Controller {
    /// A controller for `plan` starting its power-up all-red at `now`.
    pub fn new(plan: &SignalPlan, now: Duration) -> Controller {
        let amber_flashers = (0..plan.group_count()).filter(|&g| is_amber_flasher(plan, g));
        let flash_exit_amber = amber_flashers
            .map(|g| plan.max_amber_of(g))
            .max()
            .unwrap_or_default();
        let mut controller = Controller {
            plan: plan.clone(),
            stage: Stage::Startup,
            since: now,
            green: GreenTimers::default(),
            calls: 0,
            ped_calls: 0,
            priority: [Priority::Free; MAX_PHASES],
            maintenance: false,
            clearing: false,
            degraded: false,
            good_since: None,
            incidents: 0,
            priority_grants: 0,
            diag: [Diagnostics::new(now); 2],
            time_of_day: None,
            beacon_until: [None; MAX_GROUPS],
            flash_exit_amber,
            command: SignalCommand::dark(plan.group_count()),
        };
        controller.restart(now);
        controller
    }

    /// Starts over from the power-up flash and all-red (after a fault reset). Calls are
    /// forgotten.
    pub fn restart(&mut self, now: Duration) {
        self.enter(Stage::StartupFlash, now);
        self.clearing = false;
        self.green = GreenTimers::default();
        self.calls = 0;
        self.ped_calls = 0;
        self.priority = [Priority::Free; MAX_PHASES];
        self.beacon_until = [None; MAX_GROUPS];
        self.render_rest();
        self.render_startup_flash();
    }

    /// Advances to `now` with this tick's detections and returns the lamps to show.
    pub fn step(&mut self, now: Duration, det: &Detections<'_>) -> &SignalCommand {
        self.track_camera(now, det.camera_ok);
        self.diagnose(now, det.zone_occupancy);
        let sample = self.sample(det);
        self.advance(now, sample);
        self.latch_calls(now, sample);
        self.start_max_timer(now);
        self.render(now, det);
        &self.command
    }

    /// The lamps of the last step.
    pub fn command(&self) -> &SignalCommand {
        &self.command
    }

    /// Requests maintenance flash (after the current phase's clearance) or its end (through
    /// steady amber and the start-up all-red).
    pub fn set_maintenance_flash(&mut self, on: bool) {
        self.maintenance = on;
    }

    /// Ends the running phase as soon as it safely can, and then holds all red: a walk in
    /// progress is cut to its flashing don't walk, which runs in full; the green then ends
    /// (min green and extensions no longer hold it) through amber and all-red; a bus head
    /// start goes straight to its all-red. Once there the controller rests in all red
    /// ([`Stage::Startup`]) and starts no phase until [`Controller::restart`]. For a watchdog
    /// breach or a stop, when the process is about to end.
    pub fn request_clearance(&mut self) {
        self.clearing = true;
    }

    /// True once [`Controller::request_clearance`] was called (until a restart).
    pub fn is_clearing(&self) -> bool {
        self.clearing
    }

    /// Tells the controller the local time of day at clock time `now`, for time-of-day plans.
    pub fn set_time_of_day(&mut self, now: Duration, seconds_after_midnight: u32) {
        self.time_of_day = Some((seconds_after_midnight % 86_400, now));
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The mode in force at `now` (fixed-time while detection is degraded).
    pub fn mode(&self, now: Duration) -> ControlMode {
        if self.degraded {
            return ControlMode::FixedTime;
        }
        self.active_plan(now).map_or(self.plan.mode, |p| p.mode)
    }

    /// True while the camera is distrusted and the controller runs fixed-time with recall.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// How many times detection has been lost since start-up.
    pub fn incidents(&self) -> u32 {
        self.incidents
    }

    /// How many bus priority extensions and early greens have been granted.
    pub fn priority_grants(&self) -> u32 {
        self.priority_grants
    }

    fn enter(&mut self, stage: Stage, now: Duration) {
        self.stage = stage;
        self.since = now;
    }

    /// Forgets the time of day: no time-of-day plan applies until it is set again (the wall
    /// clock is not to be trusted), so the site's own mode and greens do.
    pub fn clear_time_of_day(&mut self) {
        self.time_of_day = None;
    }

    /// The index of the time-of-day plan in force at `now`, in start-time order (see
    /// [`SignalPlan::plan_names`]); `None` without plans or without a time of day.
    pub fn time_plan(&self, now: Duration) -> Option<usize> {
        let (tod, at) = self.time_of_day?;
        let secs = (u64::from(tod) + now.saturating_sub(at).as_secs()) % 86_400;
        let plans = &self.plan.plans;
        plans
            .iter()
            .rposition(|p| u64::from(p.start) <= secs)
            .or(plans.len().checked_sub(1))
    }

    fn active_plan(&self, now: Duration) -> Option<&TimePlan> {
        self.time_plan(now).map(|i| &self.plan.plans[i])
    }

    fn fixed_green(&self, now: Duration, p: usize) -> Duration {
        match self.active_plan(now) {
            Some(plan) => plan.fixed_green[p],
            None => self.plan.phases[p].fixed_green,
        }
    }

    /// Enters or leaves the degraded fallback; leaving needs good frames for a while.
    fn track_camera(&mut self, now: Duration, camera_ok: bool) {
        if !camera_ok {
            self.good_since = None;
            if !self.degraded {
                self.degraded = true;
                self.incidents += 1;
                log::warn!(
                    "signals: detection lost (incident {}): fixed-time with recall on all phases",
                    self.incidents
                );
            }
        } else if self.degraded {
            let since = *self.good_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.plan.camera_recover {
                self.degraded = false;
                self.good_since = None;
                log::info!(
                    "signals: detection good again; back to {}",
                    self.mode(now).as_str()
                );
            }
        }
    }

    /// The detector diagnostics (NTCIP 1202). No activity: marks phases whose camera demand
    /// zones have seen nothing for `no_activity_s`, until they see something. Max presence:
    /// marks phases whose zones have shown demand on every tick for `max_presence_s`, until
    /// they show an empty tick. Marked phases are recalled. Inputs (buttons, loops) are not
    /// the camera and do not count; while detection is degraded every phase is recalled
    /// anyway, nothing is judged and the timers start again when detection is trusted.
    fn diagnose(&mut self, now: Duration, occupancy: &[[u32; MAX_CLASSES]]) {
        let (no_activity, max_presence) = (self.plan.no_activity, self.plan.max_presence);
        if no_activity.is_none() && max_presence.is_none() {
            return;
        }
        if self.degraded {
            for d in &mut self.diag {
                d.last_seen = [now; MAX_PHASES];
                d.present_since = [None; MAX_PHASES];
            }
            return;
        }
        for (p, phase) in self.plan.phases.iter().enumerate() {
            let bit = 1u16 << p;
            let judged = [
                ("vehicle", &phase.demand),
                ("pedestrian", &phase.ped_demand),
            ];
            for ((what, demand), d) in judged.into_iter().zip(&mut self.diag) {
                if demand.zones.is_empty() {
                    continue;
                }
                let present = demand.present(occupancy, 0, true);
                if present {
                    d.last_seen[p] = now;
                    if d.inactive & bit != 0 {
                        d.inactive &= !bit;
                        log::info!("signals: {what} activity again on phase `{}`", phase.name);
                    }
                } else if no_activity
                    .is_some_and(|limit| now.saturating_sub(d.last_seen[p]) >= limit)
                    && d.inactive & bit == 0
                {
                    d.inactive |= bit;
                    log::warn!(
                        "signals: no {what} activity on phase `{}` for {} s: recalled until \
                         its zones see something",
                        phase.name,
                        no_activity.unwrap_or_default().as_secs()
                    );
                }
                let Some(limit) = max_presence else {
                    continue;
                };
                if !present {
                    d.present_since[p] = None;
                    if d.stuck & bit != 0 {
                        d.stuck &= !bit;
                        log::info!(
                            "signals: {what} zones of phase `{}` show a gap again: max presence \
                             cleared",
                            phase.name
                        );
                    }
                    continue;
                }
                let since = *d.present_since[p].get_or_insert(now);
                if now.saturating_sub(since) >= limit && d.stuck & bit == 0 {
                    d.stuck |= bit;
                    log::warn!(
                        "signals: {what} presence on phase `{}` without a gap for {} s (max \
                         presence): recalled until its zones show a gap",
                        phase.name,
                        limit.as_secs()
                    );
                }
            }
        }
    }

    /// Phases (bit masks) the no-activity diagnostic has put on recall: vehicle demand, then
    /// pedestrian demand.
    pub fn no_activity(&self) -> (u16, u16) {
        (self.diag[0].inactive, self.diag[1].inactive)
    }

    /// Phases (bit masks) the max-presence diagnostic has put on recall: vehicle demand, then
    /// pedestrian demand.
    pub fn max_presence(&self) -> (u16, u16) {
        (self.diag[0].stuck, self.diag[1].stuck)
    }

    fn sample(&self, det: &Detections<'_>) -> Sample {
        let camera = !self.degraded;
        let (occ, inputs) = (det.zone_occupancy, det.inputs);
        let mut s = Sample::default();
        for (p, phase) in self.plan.phases.iter().enumerate() {
            let bit = 1 << p;
            if phase.demand.present(occ, inputs, camera) {
                s.vehicle |= bit;
            }
            if phase.ped_demand.present(occ, inputs, camera) {
                s.ped |= bit;
            }
            if phase
                .bus
                .as_ref()
                .is_some_and(|b| b.demand.present(occ, inputs, camera))
            {
                s.bus |= bit;
            }
        }
        s
    }

    fn advance(&mut self, now: Duration, s: Sample) {
        let elapsed = now.saturating_sub(self.since);
        let stage = self.stage;
        match stage {
            Stage::StartupFlash if elapsed >= self.plan.startup_flash || self.clearing => {
                self.enter(Stage::Startup, now)
            }
            Stage::Startup if elapsed >= self.plan.startup_all_red && !self.clearing => {
                self.after_all_red(now, None, s)
            }
            // The B has been shown, nothing else: its all-red follows at once.
            Stage::HeadStart(p) if self.clearing => self.enter(Stage::AllRed(p), now),
            Stage::HeadStart(p) if elapsed >= self.head_start(p) => self.enter_green(now, p),
            Stage::Green(p) if self.should_end_green(now, p, s) => {
                let next = if self.plan.phases[p].amber.is_zero() {
                    Stage::AllRed(p)
                } else {
                    Stage::Amber(p)
                };
                self.enter(next, now);
            }
            Stage::Amber(p) if elapsed >= self.plan.phases[p].amber => {
                self.enter(Stage::AllRed(p), now)
            }
            Stage::AllRed(p) if elapsed >= self.plan.phases[p].all_red => {
                self.after_all_red(now, Some(p), s)
            }
            // A clearance request leaves maintenance flash too: flashing amber never goes
            // straight to steady red (MUTCD 4D.31), so through the steady amber.
            Stage::MaintenanceFlash if !self.maintenance || self.clearing => {
                self.enter(Stage::FlashExit, now)
            }
            Stage::FlashExit if self.maintenance && !self.clearing => {
                self.enter(Stage::MaintenanceFlash, now)
            }
            Stage::FlashExit if elapsed >= self.flash_exit_amber => self.enter(Stage::Startup, now),
            _ => {}
        }
    }

    fn after_all_red(&mut self, now: Duration, last: Option<usize>, s: Sample) {
        if self.clearing {
            return self.enter(Stage::Startup, now);
        }
        if self.maintenance {
            return self.enter(Stage::MaintenanceFlash, now);
        }
        let next = last.map_or(0, |p| self.next_phase(p));
        let head_start = self.head_start(next);
        if !head_start.is_zero() && s.bus & (1 << next) != 0 && !self.degraded {
            self.enter(Stage::HeadStart(next), now);
        } else {
            self.enter_green(now, next);
        }
    }

    /// The next phase with a call in cycle order; phases without demand are skipped.
    fn next_phase(&self, last: usize) -> usize {
        let n = self.plan.phases.len();
        let called = self.calls | self.ped_calls;
        (1..=n)
            .map(|k| (last + k) % n)
            .find(|&q| called & (1 << q) != 0)
            .unwrap_or(0)
    }

    fn head_start(&self, p: usize) -> Duration {
        self.plan.phases[p]
            .bus
            .as_ref()
            .map_or(Duration::ZERO, |b| b.head_start)
    }

    fn has_group_kind(&self, p: usize, kind: GroupKind) -> bool {
        let groups = self.plan.phases[p].groups;
        self.plan
            .groups
            .iter()
            .enumerate()
            .any(|(g, x)| groups & (1 << g) != 0 && x.kind == kind)
    }

    fn enter_green(&mut self, now: Duration, p: usize) {
        let bit = 1 << p;
        self.enter(Stage::Green(p), now);
        self.calls &= !bit;
        let walk = self.ped_calls & bit != 0 && self.has_group_kind(p, GroupKind::Pedestrian);
        self.ped_calls &= !bit;
        self.green = GreenTimers {
            start: now,
            last_detection: now,
            max_start: None,
            ped: if walk {
                PedInterval::Walk(now)
            } else {
                PedInterval::Idle
            },
            extension_until: None,
        };
        for (q, priority) in self.priority.iter_mut().enumerate() {
            *priority = match (*priority, q == p) {
                (Priority::Granted, true) => Priority::Served,
                (Priority::Served, false) => Priority::Free,
                (same, _) => same,
            };
        }
    }

    /// Moves walk -> clearance -> idle when each interval has run its full time.
    fn advance_ped(&mut self, now: Duration, p: usize) {
        let phase = &self.plan.phases[p];
        self.green.ped = match self.green.ped {
            PedInterval::Walk(since) if now - since >= phase.walk => PedInterval::Clearance(now),
            PedInterval::Clearance(since) if now - since >= phase.ped_clearance => {
                PedInterval::Idle
            }
            same => same,
        };
    }

    /// Decides whether green `p` ends at this tick; may also restart its walk or grant priority.
    fn should_end_green(&mut self, now: Duration, p: usize, s: Sample) -> bool {
        let bit = 1 << p;
        if s.vehicle & bit != 0 {
            self.green.last_detection = now;
        }
        self.advance_ped(now, p);
        if self.clearing {
            // A pedestrian still walking gets the full clearance, never less.
            if let PedInterval::Walk(_) = self.green.ped {
                self.green.ped = PedInterval::Clearance(now);
            }
            return self.green.ped == PedInterval::Idle;
        }
        let phase = &self.plan.phases[p];
        if now - self.green.start < phase.min_green || self.green.ped != PedInterval::Idle {
            return false;
        }
        let others = (self.calls | self.ped_calls) & !bit != 0;
        if self.maintenance {
            return true;
        }
        if self.ped_calls & bit != 0 && !others {
            // Nobody else is waiting: walk again rather than leave the pedestrians stranded.
            self.green.ped = PedInterval::Walk(now);
            self.ped_calls &= !bit;
            return false;
        }
        if let Some(until) = self.green.extension_until {
            return now >= until || s.bus & bit == 0 || self.degraded;
        }
        let normal = match self.mode(now) {
            ControlMode::FixedTime => now - self.green.start >= self.fixed_green(now, p),
            ControlMode::Actuated => {
                let gap_out = now - self.green.last_detection >= phase.passage;
                let max_out = self
                    .green
                    .max_start
                    .is_some_and(|m| now - m >= phase.max_green);
                others && (gap_out || max_out)
            }
        };
        let early = self.early_green_request(p, s);
        if !normal && early.is_none() {
            return false;
        }
        if self.try_extend(now, p, s) {
            return false;
        }
        if let (false, Some(q)) = (normal, early) {
            self.priority[q] = Priority::Granted;
            self.priority_grants += 1;
            log::info!(
                "signals: bus priority: early green for phase {}",
                self.plan.phases[q].name
            );
        }
        true
    }

    /// A phase other than `p` with a bus waiting whose early green may still be granted.
    fn early_green_request(&self, p: usize, s: Sample) -> Option<usize> {
        if self.degraded {
            return None;
        }
        let wants = |(q, phase): &(usize, &super::plan::Phase)| {
            *q != p
                && s.bus & (1 << q) != 0
                && phase.bus.as_ref().is_some_and(|b| b.early_green)
                && self.priority[*q] != Priority::Served
        };
        self.plan
            .phases
            .iter()
            .enumerate()
            .find(wants)
            .map(|(q, _)| q)
    }

    /// Holds green `p` for a bus in its zone, once per cycle, for at most the configured bound.
    fn try_extend(&mut self, now: Duration, p: usize, s: Sample) -> bool {
        let Some(bus) = &self.plan.phases[p].bus else {
            return false;
        };
        let allowed = !bus.max_extension.is_zero()
            && !self.degraded
            && s.bus & (1 << p) != 0
            && self.priority[p] == Priority::Free;
        if allowed {
            self.green.extension_until = Some(now + bus.max_extension);
            self.priority[p] = Priority::Served;
            self.priority_grants += 1;
        }
        allowed
    }

    /// Latches calls for phases not green; fixed-time (and degraded detection) recalls all.
    fn latch_calls(&mut self, now: Duration, s: Sample) {
        let fixed = self.mode(now) == ControlMode::FixedTime;
        let green = match self.stage {
            Stage::Green(p) => Some(p),
            _ => None,
        };
        for p in 0..self.plan.phases.len() {
            let bit = 1 << p;
            let recall = fixed || self.plan.phases[p].recall;
            let vehicle_recall = recall || self.diag[0].failed() & bit != 0;
            let ped_recall = recall || self.diag[1].failed() & bit != 0;
            let called = vehicle_recall || ped_recall || (s.vehicle | s.ped | s.bus) & bit != 0;
            if green != Some(p) && called {
                self.calls |= bit;
            }
            let peds = self.has_group_kind(p, GroupKind::Pedestrian);
            if peds && (ped_recall || s.ped & bit != 0) && !self.walking(p) {
                self.ped_calls |= bit;
            }
        }
    }

    fn walking(&self, p: usize) -> bool {
        self.stage == Stage::Green(p) && matches!(self.green.ped, PedInterval::Walk(_))
    }

    fn start_max_timer(&mut self, now: Duration) {
        if let Stage::Green(p) = self.stage {
            if self.green.max_start.is_none() && (self.calls | self.ped_calls) & !(1 << p) != 0 {
                self.green.max_start = Some(now);
            }
        }
    }

    /// Every group at rest: vehicles red, pedestrians don't walk, buses stop, beacons dark.
    fn render_rest(&mut self) {
        for (g, group) in self.plan.groups.iter().enumerate() {
            let (lamp, state) = match group.kind {
                GroupKind::Vehicle => (RED, LampState::On),
                GroupKind::Pedestrian => (DONT_WALK, LampState::On),
                GroupKind::Bus => (STOP, LampState::On),
                GroupKind::Beacon => (BEACON, LampState::Off),
            };
            self.command.heads_mut()[g] = super::lamp::Head::only(lamp, state);
        }
    }

    fn render(&mut self, now: Duration, det: &Detections<'_>) {
        self.render_rest();
        match self.stage {
            Stage::Startup | Stage::AllRed(_) => {}
            Stage::HeadStart(p) => {
                self.render_phase(p, |kind| (kind == GroupKind::Bus).then_some(GO))
            }
            Stage::Green(p) => self.render_green(p),
            Stage::Amber(p) => {
                self.render_phase(p, |kind| (kind == GroupKind::Vehicle).then_some(AMBER))
            }
            Stage::StartupFlash => self.render_startup_flash(),
            Stage::MaintenanceFlash => self.render_flash(),
            Stage::FlashExit => {
                for g in 0..self.plan.group_count() {
                    if is_amber_flasher(&self.plan, g) {
                        self.command.heads_mut()[g] = super::lamp::Head::only(AMBER, LampState::On);
                    }
                }
            }
        }
        self.render_beacons(now, det);
    }

    /// Shows lamp `lamp_for(kind)` steadily on the phase's groups of that kind.
    fn render_phase(&mut self, p: usize, lamp_for: impl Fn(GroupKind) -> Option<usize>) {
        let groups = self.plan.phases[p].groups;
        for (g, group) in self.plan.groups.iter().enumerate() {
            if groups & (1 << g) == 0 {
                continue;
            }
            if let Some(lamp) = lamp_for(group.kind) {
                self.command.heads_mut()[g] = super::lamp::Head::only(lamp, LampState::On);
            }
        }
    }

    fn render_green(&mut self, p: usize) {
        let ped_lamp = match self.green.ped {
            PedInterval::Walk(_) => (WALK, LampState::On),
            PedInterval::Clearance(_) => (DONT_WALK, LampState::Flash),
            PedInterval::Idle => (DONT_WALK, LampState::On),
        };
        let groups = self.plan.phases[p].groups;
        for (g, group) in self.plan.groups.iter().enumerate() {
            if groups & (1 << g) == 0 {
                continue;
            }
            let (lamp, state) = match group.kind {
                GroupKind::Vehicle => (GREEN, LampState::On),
                GroupKind::Pedestrian => ped_lamp,
                GroupKind::Bus => (GO, LampState::On),
                GroupKind::Beacon => continue,
            };
            self.command.heads_mut()[g] = super::lamp::Head::only(lamp, state);
        }
    }

    /// Every vehicle head flashes red; pedestrian and bus heads are dark. Red, not the
    /// maintenance colour: nothing has had a right of way, so nothing needs clearing after.
    fn render_startup_flash(&mut self) {
        for (g, group) in self.plan.groups.iter().enumerate() {
            let head = match group.kind {
                GroupKind::Vehicle => super::lamp::Head::only(RED, LampState::Flash),
                GroupKind::Beacon => continue,
                GroupKind::Pedestrian | GroupKind::Bus => super::lamp::Head::default(),
            };
            self.command.heads_mut()[g] = head;
        }
    }

    fn render_flash(&mut self) {
        for (g, group) in self.plan.groups.iter().enumerate() {
            let head = match (group.kind, group.maintenance_flash) {
                (GroupKind::Vehicle, FlashColor::Red) => {
                    super::lamp::Head::only(RED, LampState::Flash)
                }
                (GroupKind::Vehicle, FlashColor::Amber) => {
                    super::lamp::Head::only(AMBER, LampState::Flash)
                }
                (GroupKind::Beacon, _) => continue,
                // Pedestrian and bus signals are dark in flash.
                _ => super::lamp::Head::default(),
            };
            self.command.heads_mut()[g] = head;
        }
    }

    fn render_beacons(&mut self, now: Duration, det: &Detections<'_>) {
        let camera = !self.degraded;
        for (g, group) in self.plan.groups.iter().enumerate() {
            if group.kind != GroupKind::Beacon {
                continue;
            }
            if group.demand.present(det.zone_occupancy, det.inputs, camera) {
                self.beacon_until[g] = Some(now + group.hold);
            }
            let lit = self.beacon_until[g].is_some_and(|until| now <= until);
            let state = match (lit, group.flash) {
                (false, _) => LampState::Off,
                (true, false) => LampState::On,
                (true, true) => LampState::Flash,
            };
            self.command.heads_mut()[g] = super::lamp::Head::only(BEACON, state);
        }
    }
}

fn is_amber_flasher(plan: &SignalPlan, g: usize) -> bool {
    let group = &plan.groups[g];
    group.kind == GroupKind::Vehicle && group.maintenance_flash == FlashColor::Amber
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::lamp::GroupState;
    use crate::signal::plan::SignalConfig;

    const ZONES: &[&str] = &["main-approach", "minor-approach", "crossing", "bus-lane"];
    const CLASSES: &[&str] = &["car", "bus", "person"];
    const TICK: Duration = Duration::from_millis(100);

    fn plan() -> SignalPlan {
        let cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        SignalPlan::new(&cfg, ZONES, CLASSES).unwrap()
    }

    /// Runs `secs` seconds with `occ`, returning the state of group `g` at the end.
    fn run(
        c: &mut Controller,
        now: &mut Duration,
        secs: u64,
        occ: &[[u32; MAX_CLASSES]],
        g: usize,
    ) -> GroupState {
        let det = Detections {
            zone_occupancy: occ,
            camera_ok: true,
            inputs: 0,
        };
        for _ in 0..secs * 10 {
            *now += TICK;
            c.step(*now, &det);
        }
        let kind = c.plan.groups[g].kind;
        GroupState::of(kind, &c.command().heads()[g])
    }

    #[test]
    fn starts_in_flash_then_all_red_then_serves_first_phase_and_rests() {
        let plan = plan();
        let mut c = Controller::new(&plan, Duration::ZERO);
        assert_eq!(c.stage(), Stage::StartupFlash, "from the first command");
        let mut now = Duration::ZERO;
        let empty = [[0; MAX_CLASSES]; 4];
        // 2 s flash: vehicle heads flash red, the pedestrian and bus heads are dark.
        assert_eq!(run(&mut c, &mut now, 1, &empty, 0), GroupState::RedFlash);
        assert_eq!(run(&mut c, &mut now, 0, &empty, 1), GroupState::RedFlash);
        assert_eq!(run(&mut c, &mut now, 0, &empty, 2), GroupState::Dark);
        assert_eq!(run(&mut c, &mut now, 0, &empty, 3), GroupState::Dark);
        // Then 4 s all red.
        assert_eq!(run(&mut c, &mut now, 2, &empty, 0), GroupState::Red);
        assert_eq!(run(&mut c, &mut now, 0, &empty, 2), GroupState::DontWalk);
        assert_eq!(c.stage(), Stage::Startup);
        assert_eq!(run(&mut c, &mut now, 2, &empty, 0), GroupState::Red);
        assert_eq!(run(&mut c, &mut now, 2, &empty, 0), GroupState::Green);
        // No demand anywhere: main rests in green.
        assert_eq!(run(&mut c, &mut now, 600, &empty, 0), GroupState::Green);
    }

    #[test]
    fn minor_call_gaps_out_main_then_returns() {
        let plan = plan();
        let mut c = Controller::new(&plan, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut occ = [[0; MAX_CLASSES]; 4];
        run(&mut c, &mut now, 20, &occ, 0);
        occ[1][0] = 1; // a car on the minor approach
                       // Main already past min green, no main traffic: gap-out, amber 4 s, all-red 2 s.
        assert_eq!(run(&mut c, &mut now, 1, &occ, 0), GroupState::Amber);
        assert_eq!(run(&mut c, &mut now, 6, &occ, 1), GroupState::Green);
        occ[1][0] = 0;
        // Minor has no main call: it rests too, until main traffic arrives.
        assert_eq!(run(&mut c, &mut now, 60, &occ, 1), GroupState::Green);
        occ[0][0] = 1;
        assert_eq!(run(&mut c, &mut now, 10, &occ, 0), GroupState::Green);
    }

    #[test]
    fn maintenance_flash_goes_through_clearance_and_back() {
        let plan = plan();
        let mut c = Controller::new(&plan, Duration::ZERO);
        let mut now = Duration::ZERO;
        let occ = [[0; MAX_CLASSES]; 4];
        run(&mut c, &mut now, 30, &occ, 0);
        c.set_maintenance_flash(true);
        assert_eq!(run(&mut c, &mut now, 1, &occ, 0), GroupState::Amber);
        assert_eq!(run(&mut c, &mut now, 7, &occ, 0), GroupState::AmberFlash);
        assert_eq!(run(&mut c, &mut now, 0, &occ, 1), GroupState::RedFlash);
        c.set_maintenance_flash(false);
        assert_eq!(run(&mut c, &mut now, 1, &occ, 0), GroupState::Amber);
        assert_eq!(run(&mut c, &mut now, 4, &occ, 0), GroupState::Red);
        assert_eq!(c.stage(), Stage::Startup);
    }

    #[test]
    fn time_of_day_plan_switches_mode() {
        let mut cfg: SignalConfig = toml::from_str(crate::signal::plan::tests::EXAMPLE).unwrap();
        cfg.plans = toml::from_str::<SignalConfig>(&format!(
            "{}\n[[plans]]\nname = \"day\"\nstart = \"06:00\"\nmode = \"actuated\"\n\
             [[plans]]\nname = \"night\"\nstart = \"22:00\"\nmode = \"fixed-time\"\n",
            crate::signal::plan::tests::EXAMPLE
        ))
        .unwrap()
        .plans;
        let plan = SignalPlan::new(&cfg, ZONES, CLASSES).unwrap();
        let mut c = Controller::new(&plan, Duration::ZERO);
        assert_eq!(c.mode(Duration::ZERO), ControlMode::Actuated);
        c.set_time_of_day(Duration::ZERO, 21 * 3600 + 59 * 60);
        assert_eq!(c.mode(Duration::ZERO), ControlMode::Actuated);
        assert_eq!(c.mode(Duration::from_secs(60)), ControlMode::FixedTime);
        // Past midnight the night plan still holds; at 06:00 the day plan is back.
        assert_eq!(
            c.mode(Duration::from_secs(3 * 3600)),
            ControlMode::FixedTime
        );
        assert_eq!(
            c.mode(Duration::from_secs(8 * 3600 + 60)),
            ControlMode::Actuated
        );
    }
}
