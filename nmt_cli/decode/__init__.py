"""Decoding: a checkpoint made ready for inference, translating files and streams, and
forced decoding (the score of given translations)."""
