"""Each CLI default exists once: the options of train / distill / prune / compress / quantize
default to the library's config dataclasses."""
import typer

from clean_deploy.cli.main import app
from clean_deploy.compress.config import CompressConfig
from clean_deploy.config import TrainConfig
from clean_deploy.quantize.config import QuantizeConfig


def _defaults(command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    return {p.name: p.default for p in cmd.params}


def test_cli_defaults_are_the_config_defaults():
    t, c, q = TrainConfig(), CompressConfig(), QuantizeConfig()
    train = _defaults("train")
    assert (train["epochs"], train["batch_size"], train["lr"], train["workers"], train["seed"], train["device"],
            train["ckpt_every_steps"]) == (t.epochs, t.batch_size, t.lr, t.num_workers, t.seed, t.device,
                                           t.ckpt_every_steps)
    d = _defaults("distill")
    assert (d["epochs"], d["batch_size"], d["lr"], d["workers"], d["response"], d["feature"], d["student_oriented"],
            d["label_assignment"]) == (c.distill_epochs, c.batch_size, c.lr, c.num_workers, c.distill.response,
                                       c.distill.feature, c.distill.student_oriented, c.distill.label_assignment)
    p = _defaults("prune")
    assert (p["epochs"], p["lr"], p["method"], p["calib_frames"], p["min_channels"]) == (
        c.finetune_epochs, c.finetune_lr, c.prune.method, c.prune.calib_frames, c.prune.min_channels)
    k = _defaults("compress")
    assert (k["target_flops"], k["distill_epochs"], k["finetune_epochs"], k["method"]) == (
        c.prune.target, c.distill_epochs, c.finetune_epochs, c.prune.method)
    qd = _defaults("quantize")
    assert (qd["calib_frames"], qd["method"], qd["target"], qd["percentile"]) == (
        q.calib_frames, q.method, q.target, q.percentile)
