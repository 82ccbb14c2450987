"""metasig: one predictive model per gene signature and task, honestly evaluated, gated and served."""

__version__ = "0.1.0"
