import sys

from stream_sep.cli import main

sys.exit(main())
