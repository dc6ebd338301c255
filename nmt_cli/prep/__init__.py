"""`nmt prep`: cleaning, subwords, id store and manifest."""
