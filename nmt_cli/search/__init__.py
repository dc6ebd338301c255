"""Search: the output sentence a model prefers, greedily or with a beam; shared by
translation (``decode/``) and validation (``train/validate.py``)."""
