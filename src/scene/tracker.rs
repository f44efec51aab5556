//! Fixed-capacity IoU multi-object tracker.
