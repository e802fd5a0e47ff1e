"""azd runs this after provisioning (azure.yaml `hooks.postprovision`), on every platform: azd_hooks.postprovision."""

import sys

from azd_hooks import main

if __name__ == "__main__":
    sys.exit(main([__file__, "postprovision"]))
