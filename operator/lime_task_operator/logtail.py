"""The end of a failed attempt's log, cut to fit in the task's status.

Pods go away (eviction deletes them, a lost node takes them along, the Job goes with
the task), and with them the only copy of the task's output
(kubernetes/kubernetes#74848). The operator therefore keeps the last lines of each
failed attempt's log in `status.lastAttempt.logTail`, which `lime-task logs` shows when
the pods are gone. Pure: the reconciler reads the log (kube.read_pod_log_tail) and this
module decides what is kept.
"""

from __future__ import annotations

# What is kept: at most this many bytes of UTF-8 (so at most as many characters, the
# unit of the CRD's maxLength on lastAttempt.logTail).
TAIL_BYTES = 2048
# What is asked of the API server: enough lines and bytes that the last TAIL_BYTES are
# in the answer, without ever fetching a whole large log (tailLines / limitBytes).
READ_LINES = 200
READ_BYTES = 64 * 1024
CUT_MARKER = "[... earlier lines cut ...]\n"


def tail(text: str, limit: int = TAIL_BYTES) -> str:
    """The last whole lines of `text` in at most `limit` UTF-8 bytes.

    Lines are kept whole: the cut falls on a line boundary and is marked with
    CUT_MARKER (counted in the limit). A last line longer than the budget on its own is
    kept by its end, after the marker, since its end is what a traceback's last line
    ends with.
    """
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    marker = CUT_MARKER.encode()
    budget = limit - len(marker)
    if budget <= 0:
        return ""
    window = data[-budget:]
    newline = window.find(b"\n")
    if 0 <= newline < len(window) - 1:
        window = window[newline + 1:]
    # errors="ignore" drops a multi-byte character split by the byte cut.
    return (marker + window).decode("utf-8", errors="ignore")
