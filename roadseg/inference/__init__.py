"""Tiled inference: window plan, test-time augmentation, stitching, the predict tool."""
