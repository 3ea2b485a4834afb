"""Anno evaluators: anachronism detection, dating, probes, LM metrics. Imports engine/, never training/."""
