"""Entry point for `python -m trainctl`."""

from trainctl.cli.app import main

if __name__ == "__main__":
    main()
