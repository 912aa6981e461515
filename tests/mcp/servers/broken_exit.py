"""An MCP server that gives up at once: a message on stderr, exit status 3.

Each start appends a line to $START_LOG when it is set, so a test can count the starts.
"""

import os
import sys

if os.environ.get("START_LOG"):
    with open(os.environ["START_LOG"], "a") as log:
        log.write("started\n")
sys.stderr.write("broken_exit: missing configuration, giving up\n")
sys.exit(3)
