"""tracekd: trace-based knowledge distillation with verifiable reasoning traces."""

__version__ = "0.1.0"
