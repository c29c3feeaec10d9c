"""Load generator for OpenAI-compatible LLM servers (vLLM, MindIE, LLaMA-Factory's API).

Metric definitions (also in the llm_benchmark module's docs):

- TTFT: from just before the request is sent to the arrival of the first chunk whose content is
  not empty (a role-only first chunk does not count).
- TPOT: per request, (E2E - TTFT) / (output tokens - 1); undefined for one output token.
- ITL: per token; the gap between two content chunks divided by the tokens the later chunk
  carries (from the server's per-chunk usage where it sends it, else the final usage spread evenly
  over the chunks, else one token per chunk).
- E2E: from just before sending to the end of the response.
- Throughputs over the benchmark's duration (first send to last response end): requests/s,
  output tokens/s, total (prompt + output) tokens/s; goodput: requests/s meeting every SLO given.
- Errors are counted by kind and never dropped from the totals. An answer without any content
  (the model stopped at once) is completed, has no TTFT, and is counted as an empty response.
"""
