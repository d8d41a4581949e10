"""CTC decoding: greedy search and batched prefix beam search (see ``osoup.decode.ctc``)."""
