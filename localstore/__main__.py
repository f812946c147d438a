"""Run the ``localstore`` command as ``python -m localstore``."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
