//! Traffic and bus signals: plan, controller, conflict monitor, outputs.
//!
//! - [`plan`]: the `[signals]` TOML ([`SignalConfig`]), its validation (ITE amber and all-red,
//!   pedestrian clearance, conflicts) and the compiled [`SignalPlan`].
//! - [`controller`]: a pure state machine stepped with the clock time and the zone counts:
//!   fixed-time or actuated, bus priority, maintenance flash, safe start, degraded detection.
//! - [`monitor`]: the independent [`ConflictMonitor`], built from the TOML by its own code,
//!   that checks every command before the pins and the pins' read-back levels after, and
//!   latches all-red flash on any fault.
//! - [`field`]: field read-back, the monitor's check of what the heads show through a sense
//!   input per lamp.
//! - [`latch`]: the persistent fault latch (`control.fault_file`) that keeps a unit in flash
//!   across restarts until `edgewatch reset-fault`.
//! - [`outputs`]: lamp and input pins over `embedded_hal` 1.0, plus the simulated backend;
//!   rppal and the GPIO character device behind the `rppal` and `gpio-cdev` features.
//! - [`SignalSystem`] wires them together for the pipeline.
//!
//! ```no_run
//! # use edgewatch::{clock::ManualClock, config::MAX_CLASSES, signal::*};
//! # fn demo(cfg: &SignalConfig) -> Result<(), SignalError> {
//! let clock = ManualClock::new();
//! let mut pins = SimPins::new(clock.clone(), 1024);
//! let mut signals = SignalSystem::new(cfg, &["road", "crossing"], &["car", "bus", "person"], clock, &mut pins)?;
//! let occupancy = [[0u32; MAX_CLASSES]; 2]; // from the scene, per zone and class
//! let report = signals.tick(&occupancy, true);
//! println!("{signals} {:?}", report.new_fault);
//! # Ok(()) }
//! ```

pub mod controller;
pub mod field;
pub mod lamp;
pub mod latch;
pub mod monitor;
pub mod outputs;
pub mod plan;
mod system;

#[cfg(feature = "gpio-cdev")]
pub mod cdev;
#[cfg(feature = "rppal")]
pub mod rppal;

pub use controller::{Controller, Detections, Stage};
pub use field::{FieldMonitor, FieldView, SensedLamp};
pub use lamp::{GroupState, Head, LampState, SignalCommand};
pub use latch::{FaultLatch, LatchError};
pub use monitor::{ConflictMonitor, Fault};
pub use outputs::{
    ForceSafeError, InputBank, PinBackend, PinBank, PinError, PinWriteError, SafeState, SenseBank,
    SharedOutputs, SimInput, SimOutput, SimPins, Transition,
};
pub use plan::{
    BusPriorityConfig, ControlMode, DemandConfig, FlashColor, GroupConfig, GroupKind, InputConfig,
    LampPin, PhaseConfig, Pull, SensePin, SignalConfig, SignalPlan, TimePlanConfig, MAX_GROUPS,
    MAX_INPUTS, MAX_NAME_LEN, MAX_PHASES,
};
pub use system::{SignalError, SignalSystem, TickReport};

/// A [`SignalSystem`] on simulated pins, as tests and the demo use it.
pub type SimSignalSystem<C> = SignalSystem<C, SimOutput<C>, SimInput<C>>;
