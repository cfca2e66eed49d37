"""``python -m wsnas.cli``: the ``wsnas`` command."""

from wsnas.cli._main import main

if __name__ == "__main__":  # pragma: no cover
    main()
