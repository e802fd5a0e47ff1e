"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run."""

from __future__ import annotations

from bench import create, fanout, routes, secure_score, sync, templates, tenants


def main() -> None:
    create.main()
    print()
    routes.main()
    print()
    sync.main()
    print()
    secure_score.main()
    print()
    tenants.main()
    print()
    fanout.main()
    print()
    templates.main()


if __name__ == "__main__":
    main()
