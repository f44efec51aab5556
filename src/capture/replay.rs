//! Replay of recorded frames: a directory of images or a Y4M video.
