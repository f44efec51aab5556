//! Traffic and bus signals: plan, controller, conflict monitor, outputs.
