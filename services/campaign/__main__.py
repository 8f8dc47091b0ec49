import sys

from services.campaign.app import main

sys.exit(main(sys.argv[1:]))
