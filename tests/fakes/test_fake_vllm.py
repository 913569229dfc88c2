"""The fake vLLM keeps vLLM's contract when run as a process, as other suites use it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_fake_runs_as_a_process_and_speaks_vllms_api() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_vllm", "--port", str(port), "--tokens", "3",
         "--token-delay-ms", "1", "--model", "tiny"],
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the fake did not start"
                time.sleep(0.1)
            assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["tiny"]
            body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": True}
            text = http.post("/v1/chat/completions", json=body).text
            events = [e for e in text.split("\n\n") if e]
            assert all(e.startswith("data: ") for e in events)
            assert events[-1] == "data: [DONE]"
            chunks = [json.loads(e[6:]) for e in events[:-1]]
            assert [c["choices"][0]["delta"]["content"] for c in chunks] == [
                " tok0",
                " tok1",
                " tok2",
            ]
            assert chunks[-1]["choices"][0]["finish_reason"] == "length"
            metrics = http.get("/metrics").text
            assert 'vllm:num_requests_running{model_name="tiny"} 0.0' in metrics
            assert 'vllm:num_requests_waiting{model_name="tiny"} 0.0' in metrics
            assert http.post("/fake/mode", json={"mode": "fail"}).status_code == 200
            assert http.get("/health").status_code == 500
            assert http.post("/fake/mode", json={"mode": "broken"}).status_code == 400
            assert http.get("/fake/stats").json()["completed"] == 1
    finally:
        process.terminate()
        process.wait(timeout=10)
