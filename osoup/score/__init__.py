"""Scoring of decoded experiments and the comparison of methods.

:mod:`.metrics`: corpus WER/CER/BLEU. :mod:`.langs`: metric, order and labels of languages.
:mod:`.scoring`: one experiment's hypotheses against the references (``osoup-score``).
:mod:`.comparison`: experiments grouped into methods and seed replicas (``osoup-results``).
:mod:`.tables`: the Markdown tables; :mod:`.plots`: the figures; :mod:`.resultfiles`: the
files they are written to and read from. :mod:`.bootstrap`: paired bootstrap resampling of test
utterances; :mod:`.significance`: every method against ``joint`` with it (``docs/results.md``).
"""
