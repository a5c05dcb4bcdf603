"""Data sets: the built-in ones and each owner's uploads (`POST /datasets`)."""
