# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for the train role's MindSpeed-LLM path: a HuggingFace model's config.json read as Megatron
sees it (its shape arguments, whether the parallel plan can split it), and the record of a converted
checkpoint's layout."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleFilterError

# config.json names of each shape value, first found wins: LLaMA, Qwen2 and Mistral use the first
# names; ChatGLM/GLM-4 (num_layers, multi_query_group_num, ffn_hidden_size, padded_vocab_size,
# seq_length), Falcon (num_kv_heads) and Baichuan (model_max_length) the others.
SHAPE_KEYS = {
    "layers": ("num_hidden_layers", "num_layers", "n_layer"),
    "hidden": ("hidden_size", "n_embd"),
    "heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads", "multi_query_group_num", "num_kv_heads"),
    "ffn": ("intermediate_size", "ffn_hidden_size"),
    "vocab": ("padded_vocab_size", "vocab_size"),
    "max_position": ("max_position_embeddings", "seq_length", "model_max_length", "n_positions"),
}
REQUIRED = ("layers", "hidden", "heads")


def _config(config) -> dict:
    if not isinstance(config, dict):
        raise AnsibleFilterError(f"a model's config.json must be a JSON object, got {type(config).__name__}")
    # Multimodal wrappers keep the language model's shape under text_config.
    text = config.get("text_config")
    return config | text if isinstance(text, dict) else config


def model_shape(config) -> dict:
    """The shape values of a HuggingFace config.json (layers, hidden, heads, kv_heads, ffn, vocab,
    max_position), None where the config has none; kv_heads is the heads where the model has no
    grouped-query attention."""
    values = _config(config)
    shape = {}
    for name, keys in SHAPE_KEYS.items():
        found = next((values[key] for key in keys if values.get(key) not in (None, "")), None)
        if found is not None and (isinstance(found, bool) or not isinstance(found, int) or found < 1):
            raise AnsibleFilterError(
                f"config.json's {name} ({'/'.join(keys)}) must be a whole number from 1, got {found!r}"
            )
        shape[name] = found
    # ChatGLM names the kv groups even when multi-query attention is off.
    if values.get("multi_query_attention") is False and "multi_query_group_num" in values:
        shape["kv_heads"] = None
    if shape["kv_heads"] is None:
        shape["kv_heads"] = shape["heads"]
    missing = [name for name in REQUIRED if shape[name] is None]
    if missing:
        names = "; ".join(f"{name}: {' or '.join(SHAPE_KEYS[name])}" for name in missing)
        raise AnsibleFilterError(f"config.json lacks the model's {', '.join(missing)} ({names})")
    return shape


def megatron_conversion_problems(config, tp, pp, where: str = "config.json") -> list[str]:
    """Why convert_ckpt.py cannot split this model into TP x PP pieces, one message per problem:
    Megatron splits the attention heads (and the kv groups) over the TP ranks and the layers over
    the PP stages, so each must divide."""
    shape = model_shape(config)
    tp, pp = int(tp), int(pp)
    problems = []
    if tp < 1 or pp < 1:
        return [f"TP and PP must be at least 1, got TP={tp}, PP={pp}"]
    if shape["heads"] % tp:
        problems.append(
            f"the model's {shape['heads']} attention heads ({where}: num_attention_heads) do not divide by"
            f" TP={tp} (train_tp, or the manual's plan): set train_tp to a divisor of {shape['heads']}"
            f" ({', '.join(str(d) for d in _divisors(shape['heads']))})"
        )
    elif shape["kv_heads"] % tp:
        problems.append(
            f"the model's {shape['kv_heads']} key/value heads ({where}: num_key_value_heads) do not divide by"
            f" TP={tp} (train_tp, or the manual's plan): set train_tp to a divisor of {shape['kv_heads']}"
            f" ({', '.join(str(d) for d in _divisors(shape['kv_heads']))})"
        )
    if shape["layers"] % pp:
        problems.append(
            f"the model's {shape['layers']} layers ({where}: num_hidden_layers) do not divide by PP={pp}"
            f" (train_pp, or the manual's plan): set train_pp to a divisor of {shape['layers']}"
            f" ({', '.join(str(d) for d in _divisors(shape['layers']))})"
        )
    return problems


def _divisors(number: int) -> list[int]:
    return [d for d in range(1, number + 1) if number % d == 0]


def megatron_shape_args(config) -> list[list[str]]:
    """MindSpeed-LLM / Megatron's model-shape arguments for a HuggingFace config.json, one option and
    its value per item, as its example launch scripts give them (--group-query-attention only where
    there are fewer kv heads than heads)."""
    shape = model_shape(config)
    args = [
        ["--num-layers", str(shape["layers"])],
        ["--hidden-size", str(shape["hidden"])],
        ["--num-attention-heads", str(shape["heads"])],
    ]
    if shape["kv_heads"] < shape["heads"]:
        args += [["--group-query-attention"], ["--num-query-groups", str(shape["kv_heads"])]]
    if shape["ffn"] is not None:
        args.append(["--ffn-hidden-size", str(shape["ffn"])])
    if shape["vocab"] is not None:
        # The checkpoint's vocabulary as it is: Megatron would otherwise pad it to a multiple of 128.
        args += [["--make-vocab-size-divisible-by", "1"], ["--padded-vocab-size", str(shape["vocab"])]]
    if shape["max_position"] is not None:
        args.append(["--max-position-embeddings", str(shape["max_position"])])
    return args


def megatron_conversion_record(tp, pp, source: str, loader: str, saver: str) -> dict:
    """What the role writes next to converted weights, and compares with the plan before a launch."""
    return {"tp": int(tp), "pp": int(pp), "source": str(source), "loader": str(loader), "saver": str(saver)}


def megatron_record_mismatch(found, wanted: dict, where: str) -> list[str]:
    """How the record ``found`` at ``where`` (a dict, or None when there is none) differs from ``wanted``."""
    if not isinstance(found, dict):
        return [
            f"{where} has no conversion record (npufleet-conversion.json): the weights there were not"
            " converted by this role for this plan: run the stage without train_mindspeed_render_only to"
            " convert them"
        ]
    differences = [
        f"{key} {found.get(key)!r} (wanted {value!r})"
        for key, value in wanted.items()
        if found.get(key) != value
    ]
    if not differences:
        return []
    return [
        f"the weights in {where} were converted with {', '.join(differences)}: the launch would load a layout"
        " other than the plan's: run the stage again without train_mindspeed_render_only (it converts when"
        " the record differs), or set train_tp/train_pp to the record's"
    ]


def megatron_load_dir_problems(paths: dict) -> list[str]:
    """The conversion removes train_mindspeed_load_dir (and <it>.partial) before it writes the weights:
    ``paths`` maps train_mindspeed_load_dir and the variables whose folders must survive (the HF model,
    the tokenizer, the work dir, the code, the data) to their container paths."""
    given = str(paths.get("train_mindspeed_load_dir") or "")
    if not given.startswith("/") or not posixpath.normpath(given).strip("/"):
        return [
            f"train_mindspeed_load_dir {given!r} must be an absolute folder of its own in the container (the"
            " conversion replaces it), such as <train_work_dir>/model_weights/<train_name>"
        ]
    load = posixpath.normpath(given)
    problems = []
    for name, value in paths.items():
        if name == "train_mindspeed_load_dir" or not value or not str(value).startswith("/"):
            continue
        kept = posixpath.normpath(str(value))
        if kept == load or kept.startswith(load + "/"):
            problems.append(
                f"train_mindspeed_load_dir {given} holds {name} {value}, and the conversion replaces that"
                " folder: give the converted weights a folder of their own"
            )
    return problems


class FilterModule:
    def filters(self):
        return {
            "megatron_conversion_problems": megatron_conversion_problems,
            "megatron_shape_args": megatron_shape_args,
            "megatron_conversion_record": megatron_conversion_record,
            "megatron_record_mismatch": megatron_record_mismatch,
            "megatron_load_dir_problems": megatron_load_dir_problems,
        }
