"""Decoding: greedy and beam search over a trained model."""
