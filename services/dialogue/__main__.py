from services.dialogue.app import Settings, build
from voicebot.service import main

main("dialogue", Settings, build)
