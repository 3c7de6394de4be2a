"""The orchestrator REST API and run dashboard (`create_app` in main.py)."""
