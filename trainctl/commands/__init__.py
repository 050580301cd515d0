"""What each CLI command does; cli.py only declares the commands and imports these on demand."""
