"""`python -m flexseg` is the same as the `flexseg` command."""

from flexseg.cli import main

if __name__ == "__main__":
    main()
