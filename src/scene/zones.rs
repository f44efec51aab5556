//! Zones (polygons) and counting lines.
