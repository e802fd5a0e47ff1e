"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run."""

from __future__ import annotations

from bench import create, sync


def main() -> None:
    create.main()
    print()
    sync.main()


if __name__ == "__main__":
    main()
