"""Run the fake OpenAI server as a real process: python -m tests.fakes.serve --port P [--latency S]."""

from __future__ import annotations

import argparse

import uvicorn

from tests.fakes.openai_server import FakeState, create_fake_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--served-name", default="fake-base")
    parser.add_argument("--vocab", type=int, default=0, help="made-up Zipf vocabulary size (0: the 100-word one)")
    args = parser.parse_args()
    state = FakeState(served_name=args.served_name, latency_s=args.latency, error_rate=args.error_rate,
                      vocab_size=args.vocab)
    uvicorn.run(create_fake_app(state), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
