"""The command line: app.py declares the commands; one module per command parses, calls and prints."""
