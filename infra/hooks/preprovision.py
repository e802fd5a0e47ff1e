"""azd runs this before provisioning (azure.yaml `hooks.preprovision`), on every platform: azd_hooks.preprovision."""

import sys

from azd_hooks import main

if __name__ == "__main__":
    sys.exit(main([__file__, "preprovision"]))
