//! Pixel-format conversions (BT.601) used by replay sources to produce camera formats.
