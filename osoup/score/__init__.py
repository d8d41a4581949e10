"""Scoring: corpus WER/CER/BLEU (``metrics``) and experiment reports, tables, plots (``report``)."""
