"""An incremental parser of Server-Sent Events (the WHATWG event-stream rules) for OpenAI streams."""

from __future__ import annotations


class SSEParser:
    """Feed bytes as they arrive; get the ``data`` of each complete event.

    Tolerates what servers send in practice: ``:`` comment lines (keep-alives), ``data:`` with or
    without a space, CRLF, CR or LF line ends split anywhere across chunks, several events in one
    chunk and one event over many chunks, multi-line data, and other fields (ignored).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        start = 0
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", start)
            carriage = buffer.find(b"\r", start)
            ends = [position for position in (newline, carriage) if position >= 0]
            if not ends:
                break
            end = min(ends)
            width = 1
            if buffer[end : end + 1] == b"\r":
                if end + 1 == len(buffer):
                    break  # a CR at the end may be the first half of CRLF: wait for more
                if buffer[end + 1 : end + 2] == b"\n":
                    width = 2
            self._line(buffer[start:end], events)
            start = end + width
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[str]:
        """The end of the stream: a last event without its blank line is still delivered."""
        events: list[str] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), events)
            self._buffer = b""
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith(b":"):
            return
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value.decode("utf-8", errors="replace"))
