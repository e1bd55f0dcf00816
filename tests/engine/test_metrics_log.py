"""metrics.jsonl rows and TensorBoard events."""
import json

from hdetr.engine.metrics_log import MetricsLogger, read_metrics


def test_rows_are_json_lines_and_tensorboard_events(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log({"type": "train", "epoch": 0, "iter": 0, "step": 1, "loss": 3.5, "lr": 2e-4, "time": 0.1})
    logger.log({"type": "train", "epoch": 0, "iter": 1, "step": 2, "loss": float("nan"), "lr": 2e-4, "time": 0.2})
    logger.log({"type": "eval", "epoch": 1, "iter": 0, "step": 2, "AP": 0.25, "time": 0.5})
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["train", "train", "eval"]
    assert json.loads(lines[1])["loss"] == "nan"  # still valid JSON
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "eval/AP"} <= set(acc.Tags()["scalars"])
    assert [e.value for e in acc.Scalars("eval/AP")] == [0.25]


def test_a_resumed_run_drops_rows_after_its_checkpoint(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log({"type": "train", "step": step, "loss": float(step)})
    logger.truncate_after(3)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert MetricsLogger(tmp_path / "other", enabled=False, tensorboard=True)._tb is None
