import sys

from streamrt.bench import main

sys.exit(main())
