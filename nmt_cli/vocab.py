"""The toolkit's fixed special ids, shared by every stage.

Every SentencePiece model nmt trains or accepts maps the four special symbols to the same
ids, so the id files, the model's embedding rows and the decoder's start/stop logic agree
without looking anything up:

====  =======  ======
name  symbol   id
====  =======  ======
pad   <pad>    0
unk   <unk>    1
sos   <s>      2
eos   </s>     3
====  =======  ======
"""

PAD, UNK, SOS, EOS = 0, 1, 2, 3
SPECIAL_IDS = {"pad": PAD, "unk": UNK, "sos": SOS, "eos": EOS}
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "sos": "<s>", "eos": "</s>"}
