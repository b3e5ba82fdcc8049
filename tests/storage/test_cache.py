"""The `c2s` command keeps compiled XLA programs under $C2S_CACHE_DIR/xla, unless the user
already named a compilation cache for JAX."""

import os
import subprocess
import sys

from c2s_jax.storage.cache import CACHE_ENV, JAX_CACHE_ENV

# Enable the cache as the command does, then import JAX as a command would.
PROBE = (
    "from c2s_jax.storage.cache import enable_compilation_cache as enable\n"
    "enable()\n"
    "import jax\n"
    "print(jax.config.jax_compilation_cache_dir)\n"
)


def _cache_dir_seen_by_jax(env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_compiled_programs_go_under_the_c2s_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != JAX_CACHE_ENV}
    env[CACHE_ENV] = str(tmp_path / "cache")
    assert _cache_dir_seen_by_jax(env) == str(tmp_path / "cache" / "xla")


def test_a_compilation_cache_the_user_chose_is_kept(tmp_path):
    env = dict(os.environ, **{CACHE_ENV: str(tmp_path / "cache"), JAX_CACHE_ENV: "/elsewhere"})
    assert _cache_dir_seen_by_jax(env) == "/elsewhere"


def test_the_command_enables_it_before_running(monkeypatch):
    from c2s_jax import cli

    calls = []
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: calls.append("enabled"))
    monkeypatch.setattr(sys, "argv", ["c2s"])
    assert cli.main(["scaling", "fit", "/missing/results.jsonl"]) == 2
    assert calls == ["enabled"]
