"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run."""

from __future__ import annotations

from bench import create


def main() -> None:
    create.main()


if __name__ == "__main__":
    main()
