"""Anno training: the dated-corpus pipeline and the training loop. Imports engine/, never ui/."""
