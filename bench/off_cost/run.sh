#!/bin/sh
# Cost-when-off benchmark: see run.py. Needs valgrind and a built engine (UFENCE_ENGINE or an installed ufence).
exec python3 "$(dirname "$0")/run.py" "$@"
