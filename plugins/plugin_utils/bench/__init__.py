"""Load generator for OpenAI-compatible LLM servers (vLLM, MindIE, LLaMA-Factory's API).

Metric definitions (also in the llm_benchmark module's docs):

- TTFT: from the moment the request's body was written to the socket to the arrival of the first
  chunk whose content is not empty (a role-only first chunk does not count). Arrival is stamped
  when the connection received the bytes, before the coroutine reading them wakes, so a burst of
  chunks across many streams does not add the client's own queueing. The client's delay before
  the write is reported apart (``send_delay_ms``).
- TPOT: per request, (E2E - TTFT) / (output tokens - 1); undefined for one output token.
- ITL: per token; the gap between two content chunks divided by the tokens the later chunk
  carries (from the server's per-chunk usage where it sends it, else the final usage spread evenly
  over the chunks, else one token per chunk).
- E2E: from the write of the request to the end of the response.
- Throughputs over the benchmark's duration (first send to last response end): requests/s,
  output tokens/s, total (prompt + output) tokens/s; goodput: requests/s meeting every SLO given.
- Errors are counted by kind and never dropped from the totals. An answer without any content
  (the model stopped at once) is completed, has no TTFT, and is counted as an empty response.
"""


def run_loop(coroutine):
    """Run the load on uvloop where it is installed (less time per chunk than asyncio's loop, so
    stamps are closer to the truth), else on asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 (optional: absent on platforms it does not support)
    except ImportError:
        import asyncio  # noqa: PLC0415

        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
