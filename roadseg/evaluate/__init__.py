"""Evaluation: pixel metrics (IoU, F1, relaxed P/R) and road-graph metrics."""
