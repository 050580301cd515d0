"""The runtime: launchers, the worker process, parallel strategies, precision and collectives."""
