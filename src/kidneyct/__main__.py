"""`python -m kidneyct ...` (and `torchrun -m kidneyct ...`) run the CLI."""

from kidneyct.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
