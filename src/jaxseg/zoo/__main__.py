"""`python -m jaxseg.zoo`: the model zoo's command line, `jaxseg.zoo_cli` (a layer above)."""

import sys

from jaxseg.zoo_cli import main

if __name__ == "__main__":
    sys.exit(main())
