"""Evaluation helpers shared by the offline and stream evaluators."""
