from services.telephony.app import Settings, build
from voicebot.service import main

main("telephony", Settings, build)
