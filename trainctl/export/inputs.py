"""What an exported model reads and returns, described for its README and manifest: tokens or
normalised tensors, and the test-time views a run evaluates with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainctl.data.augment import ViewAveraged
from trainctl.data.types import Task
from trainctl.export.base import input_name, text_inputs

if TYPE_CHECKING:
    from trainctl.compress.job import LoadedRun


def test_views(source: LoadedRun) -> ViewAveraged | None:
    """The run's model wrapped as `trainctl eval` scores it when the data set adds test-time views."""
    if source.data.test_time is None:
        return None
    evaluated = source.data.test_time(source.model)
    return evaluated if isinstance(evaluated, ViewAveraged) else None


def describe_inputs(source: LoadedRun) -> dict[str, Any]:
    """The manifest's `inputs` entry."""
    spec, data = source.data.spec, source.data
    if text_inputs(source):
        found: dict[str, Any] = {
            "name": input_name(source),
            "kind": "token ids",
            "dtype": "int64",
            "shape": ["batch", "sequence"],
            "max_length": int(source.cfg.data.max_length),
            "pad_token_id": spec.pad_token_id,
        }
    else:
        found = {"name": input_name(source), "dtype": "float32", "shape": ["batch", *spec.input_shape]}
        norm = data.normalisation
        if norm is not None:
            found["normalisation"] = {
                "raw": norm.raw,
                "divide_by": norm.divide_by,
                "mean": list(norm.mean),
                "std": list(norm.std),
            }
    views = test_views(source)
    if views is not None:
        found["test_time_views"] = {"offsets": [list(o) for o in views.offsets], "flip": views.flip}
    return found


def describe_outputs(source: LoadedRun) -> dict[str, Any]:
    """The manifest's `outputs` entry."""
    spec = source.data.spec
    if spec.task is Task.classification:
        names = source.data.class_names or [str(i) for i in range(spec.num_outputs)]
        return {"name": "logits", "shape": ["batch", spec.num_outputs], "classes": names}
    return {"name": "output", "shape": ["batch", spec.num_outputs], "task": spec.task.value}


def inputs_section(source: LoadedRun) -> str:
    """The README's "Inputs and outputs" section (markdown)."""
    inputs, outputs = describe_inputs(source), describe_outputs(source)
    lines = []
    if text_inputs(source):
        lines.append(
            f"`{inputs['name']}`: int64 token ids, shape (batch, sequence), at most {inputs['max_length']} "
            "tokens, made by the tokenizer saved in this folder (truncating as `trainctl predict` does):\n\n"
            "```python\nfrom transformers import AutoTokenizer\n\n"
            'tokenizer = AutoTokenizer.from_pretrained(".")  # this folder\n'
            'input_ids = tokenizer(texts, padding=True, truncation=True, return_tensors="np")["input_ids"]\n'
            "```\n\n"
            f"Padding (id {inputs['pad_token_id']}) is masked out, so a text gets the same result in "
            "batches of any length."
        )
    else:
        shape = ", ".join(str(s) for s in inputs["shape"])
        lines.append(f"`{inputs['name']}`: float32, shape ({shape}).")
        norm = inputs.get("normalisation")
        if norm is not None:
            lines.append(
                f"From raw inputs ({norm['raw']}): `x = (raw / {norm['divide_by']:g} - mean[c]) / std[c]` "
                f"per channel c, with mean = {rounded(norm['mean'])} and std = {rounded(norm['std'])} "
                "(the statistics the run trained with)."
            )
        else:
            lines.append(f"The data set `{source.cfg.data.name}` feeds them to the model unnormalised.")
    if "classes" in outputs:
        classes = ", ".join(f"{i} = {name}" for i, name in enumerate(outputs["classes"]))
        lines.append(
            f"Output `logits`: float32, shape (batch, {len(outputs['classes'])}); softmax over the last "
            f"dimension gives the class probabilities (classes: {classes})."
        )
    else:
        lines.append(f"Output: float32, shape (batch, {source.data.spec.num_outputs}) ({outputs['task']}).")
    views = inputs.get("test_time_views")
    if views is not None:
        lines.append(views_text(views))
    return "\n\n".join(lines)


def views_text(views: dict[str, Any]) -> str:
    """How `trainctl eval` scores an image from several views, and how to do the same with the export."""
    shifts = sorted({o[0] for o in views["offsets"]}, key=lambda d: (abs(d), -d))
    count = len(shifts) * (2 if views["flip"] else 1)
    mirror = (
        "views += [v[..., ::-1] for v in views]  # and the mirror image of each\n" if views["flip"] else ""
    )
    return (
        f"Test-time views: `trainctl eval` scores each image as the mean softmax over {count} views: "
        f"the image shifted diagonally by {', '.join(f'{d:+d}' for d in shifts)} pixels (the uncovered "
        f"border zero, in normalised units){' and the mirror image of each' if views['flip'] else ''}. "
        "The exported network scores one view; to reproduce eval's probabilities, run it on each view "
        "and average (checked at export as `test-time views`):\n\n"
        "```python\nimport numpy as np\n\n"
        "def shifted(x, d):  # x: (batch, C, H, W), normalised\n"
        "    p = abs(d)\n"
        "    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))\n"
        "    return padded[..., p - d : p - d + x.shape[-2], p - d : p - d + x.shape[-1]]\n\n"
        f"views = [shifted(x, d) for d in {shifts}]\n"
        f"{mirror}"
        "probabilities = np.mean([softmax(run(np.ascontiguousarray(v))) for v in views], axis=0)\n```"
    )


def rounded(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
