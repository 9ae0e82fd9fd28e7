"""``python -m visiontune``: the same command line as ``visiontune``."""

from visiontune.cli.main import main

if __name__ == "__main__":
    main()
