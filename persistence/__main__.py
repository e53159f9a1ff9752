"""``python -m persistence``: the admin CLI."""

from persistence.cli import main

if __name__ == "__main__":
    main()
