"""Pure parts of the local node's /containerLogs endpoint."""

from devcluster.kubelet_server import parse_path, tail_lines


def test_tail_lines_counts_a_last_line_without_newline():
    assert tail_lines(b"a\nb\nc", 2) == b"b\nc"
    assert tail_lines(b"a\nb\n", 5) == b"a\nb\n"
    assert tail_lines(b"a\nb\n", 0) == b""


def test_parse_path_accepts_only_container_logs():
    assert parse_path("/containerLogs/ns/pod-1/main") == ("ns", "pod-1", "main")
    assert parse_path("/exec/ns/pod/main") is None
    assert parse_path("/containerLogs/ns/pod") is None
