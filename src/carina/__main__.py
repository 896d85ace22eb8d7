"""python -m carina"""

import sys

from carina.cli import main

sys.exit(main())
