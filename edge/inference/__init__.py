"""ONNX model loading and the plate detector and recognizer that run on it."""
