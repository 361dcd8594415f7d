"""bench/samples.py: random points of a design space, each built, checked and timed."""

from bench import samples


def test_a_draw_measures_each_sample_and_the_report_counts_them():
    row = samples.draw("gemm-128", 0, 3)
    assert row["samples"] == 3 and len(row["statuses"]) == len(row["latencies_s"]) == 3
    assert row["sketches_total"] >= 1 and all(s is not None for s in row["sketches"])
    # a gemm's random schedules are all correct: each ok one carries its measured latency
    assert row["statuses"] == ["ok"] * 3 and all(t > 0 for t in row["latencies_s"])
    again = samples.draw("gemm-128", 0, 3)
    assert again["sketches"] == row["sketches"]  # the same seed draws the same points
    row["latencies_s"][1] = None
    row["statuses"][1] = "wrong"
    text = samples.report({"k": {"machine": "m-1", **row}})
    cells = text.splitlines()[2].split(" | ")
    assert cells[1:6] == ["gemm-128", "0", "3", "1", "0"]
    assert cells[6] == f"{min(t for t in row['latencies_s'] if t) * 1e3:.2f}"
