from services.asr.app import Settings, build
from voicebot.service import main

main("asr", Settings, build)
