"""The composition root's parts (kept out of main.py so each stays small): wiring, HTTP app, workers."""
