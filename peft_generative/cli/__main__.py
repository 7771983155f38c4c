"""`python -m peft_generative.cli ...`, the same as the `peft-generative` command."""

import sys

from . import main

sys.exit(main())
