"""selfspec: Self-Specialization of LLMs (Kang et al., arXiv 2310.00160) as a service."""

from __future__ import annotations

__version__ = "0.1.0"
