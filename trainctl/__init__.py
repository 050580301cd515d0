"""trainctl: a command-line training orchestrator driven by declarative configs."""

__version__ = "0.1.0"
