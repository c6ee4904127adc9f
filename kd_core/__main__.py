"""``python -m kd_core ...``: the command line (see :mod:`kd_core.cli`)."""

if __name__ == "__main__":
    import sys

    from kd_core.cli import main

    sys.exit(main())
