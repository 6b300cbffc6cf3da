#!/usr/bin/env python3
"""How late a delayed job reaches a waiting worker: enqueues jobs with delays of 300..1000 ms into
a queue nobody else uses and times a long-poll lease from the enqueue; prints the lateness past
each job's due time (enqueue, promotion by the node's queue_keeper, wake-up of the parked lease,
answer). Usage: bench/queue-due-time.py [URL] [ROUNDS]   (default http://127.0.0.1:8080, 20)"""
import json
import statistics
import sys
import threading
import time
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
queue = "due-time-bench-%d" % int(time.time())


def post(path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    text = urllib.request.urlopen(req).read()
    return json.loads(text) if text else {}


late = []
for i in range(rounds):
    delay = 300 + i * 700 // max(1, rounds - 1)
    got = {}

    def lease():
        got["jobs"] = post("/v1/queues/%s/lease" % queue, {"wait_ms": 5000})["jobs"]
        got["at"] = time.time()

    start = time.time()
    post("/v1/queues/%s/jobs" % queue, {"type": "t", "payload": {}, "delay_ms": delay})
    t = threading.Thread(target=lease)
    t.start()
    t.join()
    if not got["jobs"]:
        sys.exit("no job within 5 s of a %d ms delay" % delay)
    late.append((got["at"] - start) * 1000 - delay)
    job = got["jobs"][0]
    post("/v1/queues/%s/jobs/%s/complete" % (queue, job["id"]), {"lease_token": job["lease_token"]})
print("lateness past the due time over %d jobs: median %.1f ms, max %.1f ms, min %.1f ms"
      % (rounds, statistics.median(late), max(late), min(late)))
