import sys

from riverbed.cli.main import main

sys.exit(main())
