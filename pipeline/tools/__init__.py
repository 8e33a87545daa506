"""Tools the command line offers beside a run: `make-multicam` and `demo`; the runtime never imports them."""
