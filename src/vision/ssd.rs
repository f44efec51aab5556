//! SSD box decoding for raw-output models: anchor generation, box decoding, NMS.
