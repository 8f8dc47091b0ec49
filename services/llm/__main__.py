from services.llm.app import Settings, build
from voicebot.service import main

main("llm", Settings, build)
