"""osoup: multilingual, multi-task speech training with multi-objective optimization.

Layers (arrows point down only):
    bin/ -> train/, conflict/, data/ -> moo/, nets/, decode/, score/, text/
``moo`` knows no speech, ``nets`` knows no optimizer or files, ``data`` knows no model.
"""

__version__ = "0.1.0"
