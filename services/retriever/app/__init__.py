"""The retriever service: FastAPI app, protocol models and search backends."""
