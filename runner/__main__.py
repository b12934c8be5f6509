import sys

from runner.app import main

sys.exit(main())
