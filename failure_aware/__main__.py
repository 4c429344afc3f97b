"""``python -m failure_aware``: the same CLI as the ``failure-aware`` command."""

from failure_aware.cli import main

if __name__ == "__main__":
    main()
