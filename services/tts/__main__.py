from services.tts.app import Settings, build
from voicebot.service import main

main("tts", Settings, build)
