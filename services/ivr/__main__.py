import sys

from services.ivr.app import Settings, build
from services.ivr.routing import RoutesError
from voicebot.campaigns import ScriptError
from voicebot.service import main

try:
    main("ivr", Settings, build)
except (RoutesError, ScriptError) as exc:  # a bad table stops the start with file:line, not a traceback
    print(f"ivr: {exc}", file=sys.stderr)
    sys.exit(2)
