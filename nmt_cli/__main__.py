"""``python -m nmt_cli`` runs the same app as the ``nmt`` console script."""

from nmt_cli.cli import main

if __name__ == "__main__":
    main()
