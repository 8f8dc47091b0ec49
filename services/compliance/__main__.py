from services.compliance.app import Settings, build
from voicebot.service import main

main("compliance", Settings, build)
