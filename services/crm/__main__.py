from services.crm.app import Settings, build
from voicebot.service import main

main("crm", Settings, build)
