//! YUV4MPEG2 (Y4M) stream parsing.
