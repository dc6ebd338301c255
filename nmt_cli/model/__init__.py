"""The model: encoder, attention, decoder, and the seq2seq that joins them."""
