"""The full-scale CIFAR tasks: loaders on folders in the official format,
the augmentation, the networks and settings, a smoke run of every task and a
bit-identical resume from a checkpoint."""

import json
import math
import pickle
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import ramda_optax as ro
from benchmarks import cifar
from benchmarks import full_scale
from benchmarks import reproduce
from benchmarks.models import ResNet50, VGG19BN
from benchmarks.training import build_optimizer

# Training images per file: 2 per CIFAR-10 batch file, 8 in CIFAR-100's
# train file; at batch 4, two steps per epoch either way.
PER_FILE = {"cifar-10-batches-py": 2, "cifar-100-python": 8}
TEST_IMAGES, BATCH = 4, "4"


def write_folder(root: Path, dataset: cifar.Dataset,
                 seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes ``dataset``'s official folder under ``root`` with random images;
  returns the (N, 3072) uint8 rows and labels of its training and test
  sets."""
  rng = np.random.default_rng(seed)
  folder = root / dataset.folder
  folder.mkdir(parents=True)
  written = {}
  for part, names, count in (
      ("train", dataset.train_files, PER_FILE[dataset.folder]),
      ("test", dataset.test_files, TEST_IMAGES)):
    rows, labels = [], []
    for name in names:
      batch = {b"batch_label": name.encode(),
               b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
               b"filenames": [b"image.png"] * count}
      fine = rng.integers(0, dataset.classes, count).tolist()
      if dataset.classes == 100:
        batch.update({b"fine_labels": fine,
                      b"coarse_labels": [f // 5 for f in fine]})
      else:
        batch[b"labels"] = fine
      (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
      rows.append(batch[b"data"])
      labels += fine
    written[part] = np.concatenate(rows), np.asarray(labels)
  names = [f"class {i}".encode() for i in range(dataset.classes)]
  meta = ({"batches.meta": {b"label_names": names, b"num_vis": 3072}}
          if dataset.classes == 10 else
          {"meta": {b"fine_label_names": names,
                    b"coarse_label_names": names[::5]}})
  for name, content in meta.items():
    (folder / name).write_bytes(pickle.dumps(content, protocol=2))
  return written


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
  """Tiny CIFAR-10 and CIFAR-100 folders in the official format."""
  root = tmp_path_factory.mktemp("cifar")
  write_folder(root, cifar.CIFAR10)
  write_folder(root, cifar.CIFAR100)
  return root


@pytest.mark.parametrize("dataset", [cifar.CIFAR10, cifar.CIFAR100],
                         ids=["cifar10", "cifar100"])
def test_loader_reads_the_official_format(tmp_path, dataset):
  written = write_folder(tmp_path, dataset, seed=3)
  arrays = cifar.load(dataset, tmp_path)
  assert cifar.folder(dataset, tmp_path / dataset.folder) == (
      tmp_path / dataset.folder)
  files = len(dataset.train_files)
  assert arrays.train_x.shape == (files * PER_FILE[dataset.folder], 32, 32, 3)
  assert arrays.valid_x.shape == (TEST_IMAGES, 32, 32, 3)
  assert arrays.train_x.dtype == arrays.valid_x.dtype == jnp.float32
  assert arrays.train_y.dtype == arrays.valid_y.dtype == jnp.int32
  for x, y, (rows, labels) in ((arrays.train_x, arrays.train_y,
                                written["train"]),
                               (arrays.valid_x, arrays.valid_y,
                                written["test"])):
    np.testing.assert_array_equal(y, labels)
    # Row n holds channel c's pixel (h, w) at c * 1024 + h * 32 + w.
    n, h, w, c = 1, 5, 17, 2
    pixel = rows[n, c * 1024 + h * 32 + w] / 255
    np.testing.assert_allclose(
        x[n, h, w, c], (pixel - dataset.mean[c]) / dataset.std[c], rtol=1e-6)


def test_normalisation_of_constant_images():
  black = np.zeros((2, 32, 32, 3), np.uint8)
  white = np.full((2, 32, 32, 3), 255, np.uint8)
  np.testing.assert_allclose(
      cifar.black(cifar.CIFAR10),
      [-0.4914 / 0.2023, -0.4822 / 0.1994, -0.4465 / 0.2010], rtol=1e-6)
  np.testing.assert_allclose(
      cifar.normalise(cifar.CIFAR10, white).mean((0, 1, 2), np.float64),
      [0.5086 / 0.2023, 0.5178 / 0.1994, 0.5535 / 0.2010], rtol=1e-6)
  np.testing.assert_allclose(
      cifar.normalise(cifar.CIFAR100, black).mean((0, 1, 2), np.float64),
      [-0.5071 / 0.2673, -0.4865 / 0.2564, -0.4409 / 0.2762], rtol=1e-6)
  with pytest.raises(FileNotFoundError, match="cifar.html"):
    cifar.load(cifar.CIFAR100, Path("/nonexistent"))


def test_augmentation_crops_and_flips_each_image():
  count, pad = 32, cifar.PADDING
  images = jax.random.normal(jax.random.key(0), (count, 32, 32, 3))
  fill = jnp.asarray([-1.0, -2.0, -3.0])
  out = np.asarray(jax.jit(cifar.augment)(jax.random.key(1), images, fill))
  assert out.shape == images.shape and out.dtype == np.float32
  padded = np.broadcast_to(np.asarray(fill), (count, 40, 40, 3)).copy()
  padded[:, pad:-pad, pad:-pad] = images
  found = []
  for n in range(count):
    found += [(dy, dx, flip) for dy in range(2 * pad + 1)
              for dx in range(2 * pad + 1) for flip in (False, True)
              if np.array_equal(out[n], (lambda crop: crop[:, ::-1] if flip
                                         else crop)(
                                             padded[n, dy:dy + 32,
                                                    dx:dx + 32]))]
  assert len(found) == count  # every image is one crop, flipped or not
  assert {flip for *_, flip in found} == {False, True}
  assert len({(dy, dx) for dy, dx, _ in found}) > 10
  assert any(0 in (dy, dx) for dy, dx, _ in found)  # padding shows


def test_networks_and_groups():
  x = jnp.zeros((1, 32, 32, 3))
  for network, classes, size in ((VGG19BN, 10, 20_035_018),
                                 (ResNet50, 100, 23_705_252)):
    variables = jax.eval_shape(network(classes).init, jax.random.key(0), x)
    params = variables["params"]
    assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == size
    assert set(variables) == {"params", "batch_stats"}
    groups = ro.groups.structured(params)
    leaves = jax.tree_util.tree_flatten_with_path(
        groups, is_leaf=lambda a: a is None or isinstance(a, tuple))[0]
    paths = {jax.tree_util.keystr(path): axes for path, axes in leaves}
    head = [a for p, a in paths.items() if "Dense" in p and "kernel" in p]
    assert head == [(1,)]
    assert all(a == (0, 1, 3) for p, a in paths.items() if "Conv" in p)
    assert all(a is None for p, a in paths.items() if "BatchNorm" in p)


def test_settings_are_the_papers_table():
  expected = {  # (lr, λ) per method; c 0.1 for RMDA, 0.01 for RAMDA
      "vgg19_cifar10": (3e-5, 1e-6, 1e-6, 1.5e-4, 8e-7),
      "vgg19_cifar100": (4e-5, 1e-6, 1e-6, 1e-4, 2e-7),
      "resnet50_cifar10": (5e-5, 5e-7, 5e-7, 5e-5, 1e-6),
      "resnet50_cifar100": (4e-5, 1e-6, 1e-6, 2e-4, 5e-7)}
  rates = (0.1, 1e-3, 1e-3, 0.1, 1e-2)
  for name, strengths in expected.items():
    hyper = full_scale.TASKS[name].hyper
    for method, lr, strength in zip(
        ("prox_sgd", "proxgen", "prox_ssi", "rmda", "ramda"), rates, strengths):
      assert hyper[method]["learning_rate"] == lr
      assert hyper[method]["strength"] == strength
    assert hyper["rmda"]["c"] == 0.1 and hyper["ramda"]["c"] == 0.01
    assert hyper["sgd"] == {"learning_rate": 0.1, "weight_decay": 5e-4}


def test_sgd_baseline_is_momentum_sgd_with_weight_decay():
  params = {"w": jnp.asarray([1.0, -2.0])}
  grads = {"w": jnp.asarray([0.5, 0.25])}
  optimizer = build_optimizer("sgd", {"learning_rate": 0.1,
                                      "weight_decay": 5e-4}, [10],
                              ro.group_lasso(0.0, {"w": None}))
  state = optimizer.init(params)
  first, state = optimizer.update(grads, state, params)
  second, _ = optimizer.update(grads, state, params)
  decayed = grads["w"] + 5e-4 * params["w"]
  np.testing.assert_allclose(first["w"], -0.1 * decayed, rtol=1e-6)
  np.testing.assert_allclose(second["w"], -0.1 * 1.9 * decayed, rtol=1e-6)


def test_reproduce_forwards_the_full_scale_tasks(monkeypatch):
  argv = ["--task", "resnet50_cifar100", "--data-dir", "somewhere"]
  monkeypatch.setattr(full_scale, "main", lambda args: {"forwarded": args})
  assert reproduce.main(argv) == {"forwarded": argv}
  assert full_scale.requested(["--task=logreg,vgg19_cifar10"])
  assert not full_scale.requested(["--task", "logreg", "--steps", "2"])


@pytest.mark.slow
def test_steps_caps_a_small_task(tmp_path):
  # 256 images at batch 128: 2 steps per epoch; 3 steps are 2 epochs of 3.
  results = reproduce.main([
      "--task", "logreg", "--methods", "prox_sgd", "--seeds", "0",
      "--epochs", "3", "--train-size", "256", "--steps", "3",
      "--out", str(tmp_path)])
  task = results["tasks"]["logreg"]
  assert task["hyperparameters"]["prox_sgd"]["max_steps"] == 3
  assert len(task["runs"]["prox_sgd"]["0"]["epochs"]["train_loss"]) == 2


def smoke(data_dir: Path, out: Path, task: str, method: str, steps: int,
          *flags: str) -> dict:
  """``steps`` steps of ``method`` on ``task`` at batch 4, under the
  schedule of 2 epochs of 2 steps."""
  return full_scale.main([
      "--task", task, "--data-dir", str(data_dir), "--methods", method,
      "--seeds", "0", "--epochs", "2", "--batch-size", BATCH,
      "--steps", str(steps), "--out", str(out), *flags])


def check_run(results: dict, out: Path, printed: str, task: str, method: str,
              steps: int) -> None:
  """What a run of ``steps`` steps of one seed returns, writes and prints."""
  record = results[task]["runs"][method]["0"]
  assert record["epoch"] == math.ceil(steps / 2) and record["step"] == steps
  assert all(math.isfinite(v) for v in record.values())
  assert 0 <= record["test_accuracy"] <= 100
  assert 0 <= record["structure_W"] <= 100
  assert record["step_time_s"] > 0
  run = out / task / method / "seed0"
  history = json.loads((run / "history.json").read_text())
  assert len(history["epochs"]) == record["epoch"]
  assert history["epochs"][-1] == record
  assert history["config"]["milestones"] == [1, 2, 3]
  assert history["device"] == jax.devices()[0].device_kind
  assert (run / "checkpoints" / str(steps)).is_dir()
  assert json.loads((out / f"{task}.json").read_text()) == results[task]
  assert f"step {steps}/4, test accuracy" in printed


@pytest.mark.slow
@pytest.mark.full_scale
@pytest.mark.parametrize("task,method", [
    ("vgg19_cifar100", "adam"), ("resnet50_cifar10", "prox_sgd"),
    ("resnet50_cifar100", "sgd")])
def test_smoke_run(data_dir, tmp_path, capsys, task, method):
  results = smoke(data_dir, tmp_path, task, method, 2)
  check_run(results, tmp_path, capsys.readouterr().out, task, method, 2)


@pytest.mark.slow
@pytest.mark.full_scale
def test_smoke_run_and_resume_continue_bit_for_bit(data_dir, tmp_path,
                                                    capsys):
  # Stopped after step 1, in the middle of the first epoch; resumed, it
  # finishes that epoch and takes the first step of the second.
  whole, parts = tmp_path / "whole", tmp_path / "parts"
  results = smoke(data_dir, whole, "vgg19_cifar10", "rmda", 3)
  check_run(results, whole, capsys.readouterr().out, "vgg19_cifar10", "rmda",
            3)
  smoke(data_dir, parts, "vgg19_cifar10", "rmda", 1)
  smoke(data_dir, parts, "vgg19_cifar10", "rmda", 3, "--resume")

  def saved(out):
    run = out / "vgg19_cifar10" / "rmda" / "seed0"
    state = ocp.StandardCheckpointer().restore(run / "checkpoints/3/state")
    history = json.loads((run / "history.json").read_text())["epochs"]
    return state, [{k: v for k, v in e.items() if not k.endswith("_s")}
                   for e in history]

  (state, history), (resumed, resumed_history) = saved(whole), saved(parts)
  chex.assert_trees_all_equal(state, resumed)
  # The resumed run's first epoch is recorded in two parts.
  assert [e["step"] for e in resumed_history] == [1, 2, 3]
  assert resumed_history[1:] == [
      {**history[0], "train_loss": resumed_history[1]["train_loss"]},
      history[1]]
  assert math.isclose(history[0]["train_loss"], (
      resumed_history[0]["train_loss"] + resumed_history[1]["train_loss"]) / 2)

  with pytest.raises(SystemExit, match="--resume"):
    smoke(data_dir, parts, "vgg19_cifar10", "rmda", 3)
  with pytest.raises(SystemExit, match="trained with"):
    full_scale.main([
        "--task", "vgg19_cifar10", "--data-dir", str(data_dir),
        "--methods", "rmda", "--seeds", "0", "--epochs", "3",
        "--batch-size", BATCH, "--out", str(parts), "--resume"])
