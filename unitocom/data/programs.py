"""Run a CLEVR question's functional program on a scene: the exact reasoner of neural-symbolic VQA (NS-VQA, Yi et
al. 2018), for the functions the generator here writes (`data.questions`).

Given the scene the question was drawn from it gives the recorded answer (tests check every family); given a scene
read from the received tokens (`scripts/slots_reason.py`) it says what that perception answers when the reasoning
is exact. A program that cannot run on the scene (a `unique` that finds no object or several) raises
`ProgramFailed`: the reader made a mistake the question can see.
"""
from __future__ import annotations

from unitocom.data.scenes import relationships


class ProgramFailed(ValueError):
    """The program has no answer on this scene (a `unique` that finds 0 or 2+ objects)."""


def execute(program: list[dict], objects: list[dict], relations: dict[str, list[list[int]]] | None = None) -> str:
    """CLEVR v1.0 program nodes ({"function", "inputs", "value_inputs"}, in order; the last is the answer) on
    `objects` (each with size, color, shape, material and 3d_coords) -> the answer as the data set writes it
    ("yes"/"no", a count, an attribute value). relations: `scenes.relationships(objects)`, computed when None."""
    rel = relationships(objects) if relations is None else relations
    values: list = []
    for node in program:
        f, args, words = node["function"], [values[i] for i in node["inputs"]], node.get("value_inputs") or []
        if f == "scene":
            out = list(range(len(objects)))
        elif f.startswith("filter_"):
            attr = f[len("filter_"):]
            out = [i for i in args[0] if objects[i][attr] == words[0]]
        elif f == "unique":
            if len(args[0]) != 1:
                raise ProgramFailed(f"unique over {len(args[0])} objects")
            out = args[0][0]
        elif f == "relate":
            out = list(rel[words[0]][args[0]])
        elif f == "count":
            out = len(args[0])
        elif f == "exist":
            out = bool(args[0])
        elif f.startswith("query_"):
            out = objects[args[0]][f[len("query_"):]]
        elif f.startswith("equal_") or f == "greater_than":  # equal_<attribute>, equal_integer, greater_than
            out = args[0] > args[1] if f == "greater_than" else args[0] == args[1]
        else:
            raise ValueError(f"program function {f!r} is not one the generator writes")
        values.append(out)
    answer = values[-1]
    return ("yes" if answer else "no") if isinstance(answer, bool) else str(answer)
