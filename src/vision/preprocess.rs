//! Frame preprocessing: pixel-format conversion and bilinear resize straight into the model input tensor.
